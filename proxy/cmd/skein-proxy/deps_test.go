package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxyStaysSmall fails when skein-proxy comes to import Kubernetes client machinery or the
// control plane: the proxy runs in every pod, and what it links it pays for in memory and start-up
// everywhere.
func TestProxyStaysSmall(t *testing.T) {
	// As the image is built (internal/images).
	out, err := exec.Command("go", "list", "-tags=grpcnotrace", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if banned(pkg) {
			t.Errorf("skein-proxy imports %s", pkg)
		}
	}
}

// banned tells whether skein-proxy must not link pkg. The contracts it shares with the control plane
// (the identity service's protocol and client, xdsnames, spiffe) are allowed.
func banned(pkg string) bool {
	const skein = "github.com/skeinmesh/skein/"
	if pkg == skein+"internal/identity/identitypb" || under(pkg, skein+"internal/identityclient") {
		return false
	}
	for _, p := range []string{"k8s.io", "sigs.k8s.io", "github.com/cert-manager", skein + "internal/identity", skein + "internal/xds",
		// go-control-plane, server side and protos alike: its types register thousands of
		// descriptors at start-up, several MB resident in every proxy; xdsclient reads and writes
		// the few fields it needs on the wire instead.
		"github.com/envoyproxy/go-control-plane",
		// grpc's request tracing and the templates it renders with, left out by grpcnotrace.
		"golang.org/x/net/trace", "html/template", "text/template"} {
		if under(pkg, p) {
			return true
		}
	}
	return false
}

// under tells whether pkg is the package p or below it.
func under(pkg, p string) bool { return pkg == p || strings.HasPrefix(pkg, p+"/") }

func TestBanned(t *testing.T) {
	tests := []struct {
		pkg  string
		want bool
	}{
		{"k8s.io/client-go/kubernetes", true},
		{"sigs.k8s.io/controller-runtime", true},
		{"github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1", true},
		{"github.com/skeinmesh/skein/internal/identity", true},
		{"github.com/skeinmesh/skein/internal/identity/identitypb", false},
		{"github.com/skeinmesh/skein/internal/identityclient", false},
		{"github.com/skeinmesh/skein/internal/xds", true},
		{"github.com/skeinmesh/skein/internal/xds/compile", true},
		{"github.com/skeinmesh/skein/internal/xdsnames", false},
		{"github.com/skeinmesh/skein/internal/spiffe", false},
		{"github.com/envoyproxy/go-control-plane/pkg/cache/v3", true},
		{"github.com/envoyproxy/go-control-plane/envoy/config/listener/v3", true},
		{"github.com/skeinmesh/skein/proxy/xdsclient", false},
		{"golang.org/x/net/trace", true},
		{"golang.org/x/net/http2", false},
	}
	for _, tt := range tests {
		if got := banned(tt.pkg); got != tt.want {
			t.Errorf("banned(%q) = %v, want %v", tt.pkg, got, tt.want)
		}
	}
}
