// Command dashboard writes Skein's Grafana dashboard (internal/grafana) to the file named, or to
// standard output; `make generate` runs it.
package main

import (
	"fmt"
	"os"

	"github.com/skeinmesh/skein/internal/grafana"
)

func main() {
	b, err := grafana.Dashboard()
	if err == nil {
		if len(os.Args) > 1 {
			err = os.WriteFile(os.Args[1], b, 0o644)
		} else {
			_, err = os.Stdout.Write(b)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}
