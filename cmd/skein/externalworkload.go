package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/expansion"
)

func newExternalWorkloadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "external-workload",
		Aliases: []string{"ew"},
		Short:   "Bring hosts outside Kubernetes into the mesh (mesh expansion)",
	}
	cmd.AddCommand(newBootstrapCommand())
	return cmd
}

func newBootstrapCommand() *cobra.Command {
	var kubeconfig, out string
	o := expansion.Options{}
	cmd := &cobra.Command{
		Use:   "bootstrap NAME --out DIR --identity-addr HOST:PORT --xds-addr HOST:PORT",
		Short: "Write what a host needs to run skein-proxy as an ExternalWorkload",
		Long: `Writes, into --out, the files a host needs to join the mesh as the ExternalWorkload NAME:
the proxy's environment, a token for the workload's ServiceAccount (bound to the workload: deleting
the ExternalWorkload revokes it), the trust bundle, proxy-init's iptables set-up and a systemd unit.
Copy them to --config-dir on the host.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out is required: the directory to write the host's files into")
			}
			cfg, err := loadKubeconfig(kubeconfig).ClientConfig()
			if err != nil {
				return fmt.Errorf("loading the kubeconfig: %w", err)
			}
			c, err := kubeClient(cfg)
			if err != nil {
				return err
			}
			o.Name = args[0]
			b, err := expansion.Bootstrap(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			if err := b.Write(out); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Wrote the files for ExternalWorkload %s/%s into %s.\n\n", o.Namespace, o.Name, out)
			fmt.Fprintf(w, "On the host:\n")
			fmt.Fprintf(w, "  1. copy %s/* to %s, the token readable by uid %d only\n", out, o.ConfigDir, expansion.ProxyUID)
			fmt.Fprintf(w, "  2. install skein-proxy and proxy-init in /usr/local/bin\n")
			fmt.Fprintf(w, "  3. systemctl enable --now %s   (it runs %s, then the proxy)\n",
				filepath.Join(o.ConfigDir, expansion.UnitFile), filepath.Join(o.ConfigDir, expansion.IPTablesFile))
			fmt.Fprintf(w, "\nThe token expires in %s; run this command again before then and replace %s.\n", o.TokenTTL, filepath.Join(o.ConfigDir, expansion.TokenFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "the kubeconfig file; $KUBECONFIG or ~/.kube/config when empty")
	f.StringVarP(&o.Namespace, "namespace", "n", "default", "the ExternalWorkload's namespace")
	f.StringVar(&out, "out", "", "directory to write the host's files into")
	f.StringVar(&o.ControlPlaneNamespace, "control-plane-namespace", "skein-system", "the control plane's namespace")
	f.StringVar(&o.IdentityAddr, "identity-addr", "", "host:port where the host reaches the identity service")
	f.StringVar(&o.XDSAddr, "xds-addr", "", "host:port where the host reaches the xDS service")
	f.StringVar(&o.ConfigDir, "config-dir", "/etc/skein", "where the files will be on the host")
	f.DurationVar(&o.TokenTTL, "token-ttl", 7*24*time.Hour, "how long the token is valid")
	return cmd
}
