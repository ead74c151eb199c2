// Package proxy_test runs meshed pods for real (see test/localmesh): network namespaces with
// proxy-init's iptables rules, the workload and skein-proxy, certified by the control plane's
// identity service over the real API server and cert-manager.
package proxy_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
)

// newMesh starts a control plane whose services the pods of a new network reach. With xds, their
// proxies take their destinations from its xDS service rather than from files.
func newMesh(t *testing.T, xds bool) (*localmesh.Mesh, *framework.Mesh) {
	m, fm, err := framework.StartLocalMesh(context.Background(), t, "mesh", xds)
	if err != nil {
		t.Fatal(err)
	}
	return m, fm
}

func addPod(t *testing.T, m *localmesh.Mesh, name, serviceAccount string, dests ...destinations.Service) *localmesh.Pod {
	p, err := m.AddPod(name, "shop", serviceAccount, dests)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func endpoint(p *localmesh.Pod, port uint16) destinations.Endpoint {
	addr, _ := netip.AddrFromSlice(p.IP.To4())
	return destinations.Endpoint{Addr: netip.AddrPortFrom(addr, port), Identity: p.ID.String()}
}

func TestMeshedPodsTalkOverMTLS(t *testing.T) {
	m, _ := newMesh(t, false)
	capture := startCapture(t, m.Network.Bridge)
	server := addPod(t, m, "server", "server")
	b := server.IP.String()
	client := addPod(t, m, "client", "client", destinations.Service{
		Authority: "server.shop.svc.cluster.local:8080",
		Endpoints: []destinations.Endpoint{endpoint(server, 8080), endpoint(server, 9000)},
	})

	const marker = "skein-plaintext-marker-7f3a"
	tests := []struct {
		mode, addr, want string
	}{
		{"http1", b + ":8080", fmt.Sprintf("200 HTTP/1.1 /http1 %s %s", client.ID, marker)},
		{"h2", b + ":8080", fmt.Sprintf("200 HTTP/2.0 /h2 %s %s", client.ID, marker)},
		{"grpc", b + ":8080", fmt.Sprintf("200 grpc-status=0 %q", marker)},
		{"tcp", b + ":9000", "echo: " + marker},
	}
	for _, tt := range tests {
		got, err := client.Run(0, "-mode", tt.mode, "-addr", tt.addr, "-body", marker)
		if err != nil || got != tt.want {
			t.Errorf("%s client in pod A: %q, %v; want %q", tt.mode, got, err, tt.want)
		}
	}

	t.Run("the server's proxy saw the client's identity over mTLS", func(t *testing.T) {
		metrics := localmesh.Get(server.Admin + "/metrics")
		for _, want := range []string{
			`request_total{authority="` + b + `:8080",client_id="` + client.ID.String() + `",direction="inbound",dst_backend="",dst_service="",route="",server_id="",tls="true"} 3`,
			// The three HTTP requests (HTTP/1, HTTP/2, gRPC) share one multiplexed HTTP/2
			// connection between the proxies; the TCP stream has its own.
			`tcp_open_total{direction="inbound",dst_service="",tls="true"} 2`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("the server proxy's metrics lack %s:\n%s", want, grepLines(metrics, "tcp_open_total", "request_total"))
			}
		}
	})

	t.Run("a plain client is refused by the server's inbound port", func(t *testing.T) {
		// As the proxy's user, the client's own proxy lets the call go out unproxied.
		got, err := client.Run(localmesh.ProxyUID, "-mode", "http1", "-addr", b+":8080", "-body", "plain")
		if err == nil || strings.HasPrefix(got, "200") {
			t.Errorf("a plain client got %q", got)
		}
	})

	t.Run("the bytes between the pods are TLS", func(t *testing.T) {
		if capture.count() == 0 {
			t.Fatal("nothing was captured on the bridge")
		}
		if capture.seen([]byte(marker)) {
			t.Error("the marker crossed the network in plain text")
		}
		// The capture does see plain text when there is some: the admin port is not meshed.
		localmesh.Get(server.Admin + "/live?" + marker + "-control")
		waitFor(t, 5*time.Second, "the control marker to be captured", func() bool { return capture.seen([]byte(marker + "-control")) })
	})
}

// TestRollingRestartUnderLoadLosesNothing restarts, one after the other, the two pods behind a
// service while a client sends requests to it without pause.
func TestRollingRestartUnderLoadLosesNothing(t *testing.T) {
	m, _ := newMesh(t, false)
	s1 := addPod(t, m, "server-1", "server")
	s2 := addPod(t, m, "server-2", "server")
	const authority = "server.shop.svc.cluster.local:8080"
	client := addPod(t, m, "client", "client", destinations.Service{
		Authority: authority, Endpoints: []destinations.Endpoint{endpoint(s1, 8080), endpoint(s2, 8080)},
	})

	done := make(chan string, 1)
	loadEnds := time.Now().Add(12 * time.Second)
	go func() {
		out, err := client.Run(0, "-mode", "load", "-addr", s1.IP.String()+":8080", "-host", authority, "-duration", "12s", "-workers", "4")
		if err != nil {
			out += " " + err.Error()
		}
		done <- out
	}()
	time.Sleep(2 * time.Second)
	for _, s := range []*localmesh.Pod{s1, s2} {
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	if time.Now().After(loadEnds) {
		t.Fatal("the restarts outlasted the load, which then proves nothing")
	}
	out := <-done
	var ok, failed int
	if _, err := fmt.Sscanf(out, "ok=%d failed=%d", &ok, &failed); err != nil {
		t.Fatalf("load said %q: %v", out, err)
	}
	t.Logf("during the rolling restart: %d requests succeeded, %d failed", ok, failed)
	if failed != 0 || ok < 100 {
		t.Errorf("load: %s", out)
	}
}

func grepLines(text string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
