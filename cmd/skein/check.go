package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/check"
)

// errCheckFailed makes skein exit non-zero once the results are printed.
var errCheckFailed = errors.New("some checks failed")

func newCheckCommand() *cobra.Command {
	var (
		kubeconfig, namespace, output string
		identityAddr, xdsAddr         string
		pre                           bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that Skein is installed and working, or with --pre that a cluster is ready for it",
		Long: `check runs a list of checks against the cluster of the current kubeconfig, one line each
(✔ ok, ‼ warning, × error), with a hint under each problem, and exits non-zero when any check fails.

After installing: the CRDs, the control plane (its Deployment, the MeshConfig, the identity and xDS
services), the admission webhooks, cert-manager and the mesh's certificates, and the proxies.
With --pre, before installing: the API server, its version, your rights to install, cert-manager.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: the output is table or json", output)
			}
			cfg, err := loadKubeconfig(kubeconfig).ClientConfig()
			if err != nil {
				return fmt.Errorf("loading the kubeconfig: %w", err)
			}
			env, err := check.NewEnv(cfg, namespace)
			if err != nil {
				return err
			}
			env.IdentityAddr, env.XDSAddr = identityAddr, xdsAddr
			checks := check.Installed()
			if pre {
				checks = check.Pre()
			}
			results := check.Run(cmd.Context(), env, checks)
			if output == "json" {
				err = check.PrintJSON(cmd.OutOrStdout(), results)
			} else {
				err = check.Print(cmd.OutOrStdout(), results)
			}
			if err != nil {
				return err
			}
			if check.Failed(results) {
				return errCheckFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "Path of the kubeconfig; KUBECONFIG or ~/.kube/config when empty.")
	f.StringVar(&namespace, "namespace", "skein-system", "The control plane's namespace.")
	f.StringVarP(&output, "output", "o", "table", "table or json.")
	f.BoolVar(&pre, "pre", false, "Check a cluster before installing Skein instead.")
	f.StringVar(&identityAddr, "identity-addr", "", "host:port of a control plane running outside the cluster (the demo's): its identity service is dialled there.")
	f.StringVar(&xdsAddr, "xds-addr", "", "host:port of the xDS service of a control plane running outside the cluster.")
	return cmd
}
