// Command images builds Skein's container images as OCI archives without a Docker daemon (see
// internal/images): `make images`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/skeinmesh/skein/internal/images"
)

func main() {
	root := flag.String("root", ".", "Skein's source tree.")
	out := flag.String("out", "bin/images", "Where the archives go.")
	flag.Parse()
	for _, img := range images.Images {
		path, err := images.Build(*root, *out, img)
		if err != nil {
			fmt.Fprintln(os.Stderr, "images:", err)
			os.Exit(1)
		}
		fmt.Println(path)
	}
}
