// Command skein is Skein's command line: it runs the demo, checks an installation, meshes
// manifests, shows the golden metrics, and bootstraps hosts outside the cluster.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "skein",
		Short:         "Skein is a service mesh for Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDemoCommand())
	root.AddCommand(newInjectCommand())
	root.AddCommand(newExternalWorkloadCommand())
	root.AddCommand(newStatCommand())
	root.AddCommand(newCheckCommand())
	root.AddCommand(newMulticlusterCommand())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "skein:", err)
		os.Exit(1)
	}
}
