package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxyStaysSmall fails when skein-proxy comes to import Kubernetes client machinery: the proxy
// runs in every pod, and what it links it pays for in memory and start-up everywhere.
func TestProxyStaysSmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/cert-manager/", "github.com/skeinmesh/skein/internal/identity"} {
			if strings.HasPrefix(pkg, banned) && pkg != "github.com/skeinmesh/skein/internal/identity/identitypb" && !strings.HasPrefix(pkg, "github.com/skeinmesh/skein/internal/identityclient") {
				t.Errorf("skein-proxy imports %s", pkg)
			}
		}
	}
}
