package proxy_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	eventsv1 "k8s.io/api/events/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/xds"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
)

// load runs the workload's load client in pod c against the service for d, in the background, with
// any more flags given; the returned function waits for it and gives its counts and which pods served.
func load(t *testing.T, c *localmesh.Pod, clusterIP, authority string, d time.Duration, flags ...string) func() (ok, failed int, servedBy string) {
	done := make(chan string, 1)
	go func() {
		args := append([]string{"-mode", "load", "-addr", clusterIP + ":80", "-host", authority, "-duration", d.String(), "-workers", "4"}, flags...)
		out, err := c.Run(0, args...)
		if err != nil {
			out += " " + err.Error()
		}
		done <- out
	}()
	return func() (int, int, string) {
		out := <-done
		var ok, failed int
		if _, err := fmt.Sscanf(out, "ok=%d failed=%d", &ok, &failed); err != nil {
			t.Fatalf("load said %q: %v", out, err)
		}
		if failed > 0 {
			t.Logf("load: %s", out)
		}
		_, by, _ := strings.Cut(out, "served-by ")
		by, _, _ = strings.Cut(by, "\n")
		return ok, failed, by
	}
}

// servedBy waits until a short burst of requests is served by exactly the pods named.
func servedBy(t *testing.T, c *localmesh.Pod, clusterIP, authority string, pods ...*localmesh.Pod) {
	t.Helper()
	var want []string
	for _, p := range pods {
		want = append(want, p.Name+"=")
	}
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, failed, by := load(t, c, clusterIP, authority, 500*time.Millisecond)()
		last = by
		if failed == 0 && strings.Count(by, "=") == len(want) && containsAll(by, want) {
			return
		}
	}
	t.Fatalf("requests were served by %q, want exactly %v", last, want)
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// endpointAcks is how many endpoint updates a proxy has applied, from its metrics.
func endpointAcks(p *localmesh.Pod) string {
	for _, l := range strings.Split(localmesh.Get(p.Admin+"/metrics"), "\n") {
		if strings.HasPrefix(l, "xds_updates_total{") && strings.Contains(l, `type="endpoint"`) && strings.Contains(l, `result="ack"`) {
			return l
		}
	}
	return ""
}

// TestServiceThroughXDS runs two control-plane replicas and meshed pods whose proxies learn a
// Service's endpoints over xDS, then scales the Service, removes an endpoint gracefully, and takes
// each replica, then both, away, all under load.
func TestServiceThroughXDS(t *testing.T) {
	m, fm := newMesh(t, true)
	gateway := m.Network.Gateway.String()
	second, err := framework.StartControlPlaneWith(fm.Config, framework.ControlPlaneOptions{
		IdentityAddr: net.JoinHostPort(gateway, "0"), XDSAddr: net.JoinHostPort(gateway, "0"),
	})
	if err != nil {
		t.Fatal(err)
	}
	replicas := []*framework.ControlPlane{fm.ControlPlane, second}
	t.Cleanup(func() { replicas[1].Stop() })
	m.XDSAddrs = []string{replicas[0].XDSAddr, replicas[1].XDSAddr}

	s1, s2, s3 := addPod(t, m, "web-1", "web"), addPod(t, m, "web-2", "web"), addPod(t, m, "web-3", "web")
	client := addPod(t, m, "client", "client")
	clusterIP, err := m.Serve("web", "shop", s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	const authority = "web.shop.svc.cluster.local:80"

	t.Log("a Service with endpoints in two pods is reached through the proxies")
	servedBy(t, client, clusterIP, authority, s1, s2)

	t.Log("scaling the Service up reaches the client's proxy")
	before := endpointAcks(client)
	start := time.Now()
	if err := m.SetEndpoints("web", "shop", []*localmesh.Pod{s1, s2, s3}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the client's proxy to apply the new endpoints", func() bool { return endpointAcks(client) != before })
	t.Logf("the EndpointSlice change reached the client's proxy %s after it was written", time.Since(start).Round(time.Millisecond))
	servedBy(t, client, clusterIP, authority, s1, s2, s3)

	t.Log("removing an endpoint gracefully under load fails no request")
	wait := load(t, client, clusterIP, authority, 6*time.Second)
	time.Sleep(time.Second)
	if err := m.SetEndpoints("web", "shop", []*localmesh.Pod{s1, s3}, []*localmesh.Pod{s2}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := m.SetEndpoints("web", "shop", []*localmesh.Pod{s1, s3}, nil); err != nil {
		t.Fatal(err)
	}
	if ok, failed, _ := wait(); failed != 0 || ok < 100 {
		t.Errorf("during the graceful removal %d requests succeeded and %d failed", ok, failed)
	}
	servedBy(t, client, clusterIP, authority, s1, s3)

	t.Log("a resource the proxies cannot apply is rejected and reported, and they keep working")
	// A Listener with no HTTP connection manager, as a newer control plane might send an older proxy.
	future := xds.Resources{resource.ListenerType: {"future.shop.svc.cluster.local:80": &listenerv3.Listener{Name: "future.shop.svc.cluster.local:80"}}}
	for _, r := range replicas {
		if err := r.XDS.Cache.Set("test/future", future); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "a ConfigRejected event on the client pod", func() bool {
		events := &eventsv1.EventList{}
		if err := fm.Client.List(context.Background(), events, ctrlclient.InNamespace("shop")); err != nil {
			return false
		}
		for _, e := range events.Items {
			if e.Regarding.Name == "client" && e.Reason == xds.ReasonConfigRejected && strings.Contains(e.Note, "future.shop.svc.cluster.local:80") {
				t.Logf("event: %s", e.Note)
				return true
			}
		}
		return false
	})
	servedBy(t, client, clusterIP, authority, s1, s3)
	for _, r := range replicas {
		if err := r.XDS.Cache.Set("test/future", nil); err != nil {
			t.Fatal(err)
		}
	}

	// Each replica in turn goes away under load; the proxies move to the other, which sends them
	// a change made meanwhile.
	changes := [][]*localmesh.Pod{{s1, s2, s3}, {s2, s3}}
	for i := range replicas {
		t.Logf("stopping control-plane replica %d under load", i+1)
		wait := load(t, client, clusterIP, authority, 4*time.Second)
		time.Sleep(500 * time.Millisecond)
		if err := replicas[i].Stop(); err != nil {
			t.Fatal(err)
		}
		if err := m.SetEndpoints("web", "shop", changes[i], nil); err != nil {
			t.Fatal(err)
		}
		if ok, failed, _ := wait(); failed != 0 || ok < 100 {
			t.Errorf("with replica %d stopped, %d requests succeeded and %d failed", i+1, ok, failed)
		}
		servedBy(t, client, clusterIP, authority, changes[i]...)
		restarted, err := framework.StartControlPlaneWith(fm.Config, framework.ControlPlaneOptions{
			IdentityAddr: replicas[i].IdentityAddr, XDSAddr: replicas[i].XDSAddr,
		})
		if err != nil {
			t.Fatal(err)
		}
		replicas[i] = restarted
		if i == 0 {
			fm.ControlPlane = restarted // so that the mesh's cleanup stops it
		}
	}

	t.Log("with the whole control plane away, requests on known routes keep succeeding")
	wait = load(t, client, clusterIP, authority, 3*time.Second)
	for _, r := range replicas {
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SetEndpoints("web", "shop", []*localmesh.Pod{s1}, nil); err != nil {
		t.Fatal(err)
	}
	if ok, failed, _ := wait(); failed != 0 || ok < 100 {
		t.Errorf("with no control plane, %d requests succeeded and %d failed", ok, failed)
	}
	t.Log("when it returns, the change made meanwhile reaches the proxies")
	for i, r := range replicas {
		restarted, err := framework.StartControlPlaneWith(fm.Config, framework.ControlPlaneOptions{IdentityAddr: r.IdentityAddr, XDSAddr: r.XDSAddr})
		if err != nil {
			t.Fatal(err)
		}
		replicas[i] = restarted
	}
	fm.ControlPlane = replicas[0]
	servedBy(t, client, clusterIP, authority, s1)
}
