package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/scheme"
	"github.com/skeinmesh/skein/internal/stat"
)

// statOptions are skein stat's flags.
type statOptions struct {
	kubeconfig, namespace, output string
	allNamespaces                 bool
}

func newStatCommand() *cobra.Command {
	var o statOptions
	cmd := &cobra.Command{
		Use:   "stat [services|workloads|namespaces|trafficsplits]",
		Short: "Show the golden metrics of services, workloads, namespaces or TrafficSplits",
		Long: `Shows, over the telemetry window, the success rate, requests per second, latency percentiles
and open TCP connections that the control plane computed from the proxies' metrics and wrote in
the MeshStatus objects. Namespaces are shown when no kind is given.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := stat.Namespaces
			if len(args) == 1 {
				k, err := stat.ParseKind(args[0])
				if err != nil {
					return err
				}
				kind = k
			}
			format, err := stat.ParseFormat(o.output)
			if err != nil {
				return err
			}
			source, namespace, err := o.source()
			if err != nil {
				return err
			}
			if kind == stat.Namespaces && !cmd.Flags().Changed("namespace") {
				namespace = ""
			}
			rows, err := source.Rows(cmd.Context(), kind, namespace)
			if err != nil {
				return err
			}
			return stat.Print(cmd.OutOrStdout(), rows, format)
		},
	}
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "Path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", "Namespace to show (default: the kubeconfig's)")
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Show every namespace")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: wide or json (default: a table)")
	return cmd
}

// source connects to the cluster and says which namespace to show ("" for all). A second
// source (PromQL over Prometheus) plugs in here.
func (o *statOptions) source() (stat.Source, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	namespace := o.namespace
	switch {
	case o.allNamespaces:
		if o.namespace != "" {
			return nil, "", fmt.Errorf("-n %s and -A: choose one", o.namespace)
		}
		namespace = ""
	case namespace == "":
		if namespace, _, err = cc.Namespace(); err != nil {
			return nil, "", fmt.Errorf("reading the kubeconfig's namespace: %w", err)
		}
	}
	return stat.MeshStatuses{Client: c}, namespace, nil
}
