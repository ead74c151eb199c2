package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/promql"
	"github.com/skeinmesh/skein/internal/stat"
	"github.com/skeinmesh/skein/internal/telemetry"
)

// statOptions are skein stat's flags.
type statOptions struct {
	kubeconfig, namespace, output string
	allNamespaces                 bool
	// prometheusURL, when set, is the Prometheus to ask instead of the MeshStatuses.
	prometheusURL string
}

func newStatCommand() *cobra.Command {
	var o statOptions
	cmd := &cobra.Command{
		Use:   "stat [services|workloads|namespaces|trafficsplits]",
		Short: "Show the golden metrics of services, workloads, namespaces or TrafficSplits",
		Long: `Shows, over the telemetry window, the success rate, requests per second, latency percentiles
and open TCP connections that the control plane computed from the proxies' metrics and wrote in
the MeshStatus objects. Namespaces are shown when no kind is given.

With --prometheus-url, the same figures come from a Prometheus that scrapes the proxies, by the
same definitions in PromQL (internal/promql), over the MeshConfig's telemetry window.`,
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
			source, namespace, err := o.source(cmd.Context())
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
	cmd.Flags().StringVar(&o.prometheusURL, "prometheus-url", "", "Ask this Prometheus (as http://prometheus.monitoring:9090) rather than the control plane")
	return cmd
}

// source connects to the cluster and says which namespace to show ("" for all): the MeshStatuses,
// or Prometheus with --prometheus-url. Bad flags are refused before the kubeconfig is read.
func (o *statOptions) source(ctx context.Context) (stat.Source, string, error) {
	if o.allNamespaces && o.namespace != "" {
		return nil, "", fmt.Errorf("-n %s and -A: choose one", o.namespace)
	}
	var prom *promql.Client
	if o.prometheusURL != "" {
		var err error
		if prom, err = promql.NewClient(o.prometheusURL); err != nil {
			return nil, "", fmt.Errorf("--prometheus-url: %w", err)
		}
	}
	cc := loadKubeconfig(o.kubeconfig)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	c, err := kubeClient(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	namespace := o.namespace
	switch {
	case o.allNamespaces:
		namespace = ""
	case namespace == "":
		if namespace, _, err = cc.Namespace(); err != nil {
			return nil, "", fmt.Errorf("reading the kubeconfig's namespace: %w", err)
		}
	}
	if prom != nil {
		source, err := prometheusSource(ctx, c, prom)
		return source, namespace, err
	}
	return stat.MeshStatuses{Client: c}, namespace, nil
}

// prometheusSource asks Prometheus over the window the control plane uses, so that both sources
// give the same figures.
func prometheusSource(ctx context.Context, c client.Client, prom *promql.Client) (stat.Source, error) {
	mc := &meshv1.MeshConfig{}
	if err := c.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the MeshConfig's telemetry window: %w", err)
		}
		mc = nil
	}
	return &promql.Source{Client: prom, Window: telemetry.SettingsFrom(mc).Window, Cluster: promql.KubeCluster{Client: c}}, nil
}
