package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/demo"
)

func newDemoCommand() *cobra.Command {
	o := demo.Options{Once: os.Getenv("DEMO_ONCE") == "1"}
	var assets string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a real local mesh from a source checkout and show what it does",
		Long: `Runs a local Kubernetes API server (built by 'make test-bins'), the Skein control plane and
the samples, and shows them with kubectl. Its kubeconfig stays in --dir until Ctrl-C.
With --once (or DEMO_ONCE=1) it stops by itself after showing everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if assets != "" {
				if err := os.Setenv("KUBEBUILDER_ASSETS", assets); err != nil {
					return err
				}
			}
			o.Out = cmd.OutOrStdout()
			return demo.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&assets, "assets-dir", "", "Directory with kube-apiserver, etcd and kubectl (default: bin/k8s/<version>)")
	cmd.Flags().StringVar(&o.Controller, "controller", "bin/skein-controller", "The skein-controller binary to run")
	cmd.Flags().StringVar(&o.Dir, "dir", "bin/demo", "Where the demo keeps its kubeconfig and logs")
	cmd.Flags().BoolVar(&o.Once, "once", o.Once, "Stop after showing everything (also DEMO_ONCE=1)")
	return cmd
}
