// Command bundle writes Skein's OLM bundle from config/ (see internal/bundle): `make bundle`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/skeinmesh/skein/internal/bundle"
)

func main() {
	o := bundle.Options{}
	flag.StringVar(&o.Root, "root", ".", "Skein's source tree.")
	flag.StringVar(&o.Kubectl, "kubectl", "kubectl", "The kubectl that renders config/default.")
	flag.StringVar(&o.Out, "out", "bundle", "Where the bundle is written.")
	flag.Parse()
	if err := bundle.Generate(o); err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		os.Exit(1)
	}
}
