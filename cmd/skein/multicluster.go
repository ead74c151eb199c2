package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/multicluster"
)

func newMulticlusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "multicluster",
		Aliases: []string{"mc"},
		Short:   "Link clusters, so that one reaches the other's exported Services through its gateway",
	}
	cmd.AddCommand(newLinkCommand())
	return cmd
}

func newLinkCommand() *cobra.Command {
	var kubeconfig string
	o := multicluster.LinkOptions{}
	cmd := &cobra.Command{
		Use:   "link --cluster-name NAME",
		Short: "Print the Link and credentials with which another cluster links to this one",
		Long: `Run against the cluster to be linked to (B). It sets up there a ServiceAccount that may only
get, list and watch Services and EndpointSlices, requests a token for it, and prints YAML to apply in
the linking cluster (A): a Secret cluster-credentials-NAME holding a kubeconfig for B, and a Link NAME
naming B's gateway and its identity. In A, B's Services labelled mesh.skein.dev/exported=true then
appear as <service>-NAME.

  skein multicluster link --cluster-name east --kubeconfig east.yaml | kubectl --kubeconfig west.yaml apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadKubeconfig(kubeconfig).ClientConfig()
			if err != nil {
				return fmt.Errorf("loading the kubeconfig: %w", err)
			}
			if o.Namespace == "" {
				o.Namespace = o.ControlPlaneNamespace
			}
			if o.TokenTTL < 10*time.Minute {
				return fmt.Errorf("--token-ttl %s is too short: the API server issues tokens for 10m or more", o.TokenTTL)
			}
			c, err := kubeClient(cfg)
			if err != nil {
				return err
			}
			res, err := multicluster.Link(cmd.Context(), c, cfg, o)
			if err != nil {
				return err
			}
			if _, err := cmd.OutOrStdout().Write(res.Manifest); err != nil {
				return err
			}
			granted := time.Until(res.TokenExpiry).Round(time.Minute)
			if granted < o.TokenTTL-time.Minute {
				fmt.Fprintf(cmd.ErrOrStderr(), "Note: the API server shortened the token to %s (asked: %s); run this again before %s.\n",
					granted, o.TokenTTL, res.TokenExpiry.UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "the kubeconfig of the cluster linked to; $KUBECONFIG or ~/.kube/config when empty")
	f.StringVar(&o.ClusterName, "cluster-name", "", "this cluster's name in the linking cluster (required)")
	f.StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the Link and Secret in the linking cluster; the control plane's when empty")
	f.StringVar(&o.ControlPlaneNamespace, "control-plane-namespace", "skein-system", "the control plane's namespace, in both clusters")
	f.StringVar(&o.APIServerAddress, "api-server-address", "", "this cluster's API server URL as the linking cluster reaches it; the kubeconfig's when empty")
	f.StringVar(&o.GatewayAddress, "gateway-address", "", "the gateway's address as the linking cluster reaches it; the skein-gateway Service's LoadBalancer address when empty")
	f.DurationVar(&o.TokenTTL, "token-ttl", 8760*time.Hour, "how long the credentials are valid; the API server may grant less, which is then printed on stderr")
	return cmd
}
