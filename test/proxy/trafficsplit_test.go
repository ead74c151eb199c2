package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/test/localmesh"
)

// shares reads "served-by a=N b=M" into each pod's share of the requests.
func shares(servedBy string) map[string]float64 {
	counts, total := map[string]float64{}, 0.0
	for _, f := range strings.Fields(servedBy) {
		var n float64
		name, count, _ := strings.Cut(f, "=")
		fmt.Sscan(count, &n)
		counts[name] += n
		total += n
	}
	for name := range counts {
		counts[name] /= total
	}
	return counts
}

// routeAcks is how many route updates a proxy has applied, from its metrics.
func routeAcks(p *localmesh.Pod) string {
	for _, l := range strings.Split(localmesh.Get(p.Admin+"/metrics"), "\n") {
		if strings.HasPrefix(l, `xds_updates_total{result="ack",type="route"}`) {
			return l
		}
	}
	return ""
}

// TestTrafficSplit shares a service between a stable and a canary backend through a TrafficSplit,
// with real proxies: exact shares, weight changes and a backend losing its endpoints under load, a
// header match, and the split's removal.
func TestTrafficSplit(t *testing.T) {
	m, fm := newMesh(t, true)
	ctx := context.Background()
	stable, canary := addPod(t, m, "web-stable-1", "web"), addPod(t, m, "web-canary-1", "web")
	client := addPod(t, m, "client", "client")
	webIP, err := m.Serve("web", "shop", stable, canary)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name string
		pod  *localmesh.Pod
	}{{"web-stable", stable}, {"web-canary", canary}} {
		if _, err := m.Serve(s.name, "shop", s.pod); err != nil {
			t.Fatal(err)
		}
	}
	const authority = "web.shop.svc.cluster.local:80"
	servedBy(t, client, webIP, authority, stable, canary)

	split := &meshv1.TrafficSplit{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: meshv1.TrafficSplitSpec{Service: "web", Backends: []meshv1.TrafficSplitBackend{
			{Service: "web-stable", Weight: 90}, {Service: "web-canary", Weight: 10},
		}},
	}
	// apply writes the split and waits for the client's proxy to apply the new route.
	apply := func(what string, write func() error) {
		t.Helper()
		before, start := routeAcks(client), time.Now()
		if err := write(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the client's proxy to apply "+what, func() bool { return routeAcks(client) != before })
		t.Logf("%s reached the client's proxy %s after it was written", what, time.Since(start).Round(time.Millisecond))
	}
	// patch changes the split's spec as kubectl patch would, whatever its controller wrote to status.
	patch := func(change func()) error {
		before := split.DeepCopy()
		change()
		return fm.Client.Patch(ctx, split, ctrlclient.MergeFrom(before))
	}
	setWeights := func(s, c int32) {
		t.Helper()
		apply(fmt.Sprintf("weights %d/%d", s, c), func() error {
			return patch(func() { split.Spec.Backends[0].Weight, split.Spec.Backends[1].Weight = s, c })
		})
	}
	// share measures the canary's share over a second of requests, with any more load flags.
	share := func(flags ...string) (float64, int) {
		t.Helper()
		ok, failed, by := load(t, client, webIP, authority, time.Second, flags...)()
		if failed != 0 {
			t.Errorf("%d of %d requests failed", failed, ok+failed)
		}
		return shares(by)[canary.Name], ok
	}

	t.Log("with weights 90/10, the requests land within 3 points of 90/10")
	apply("the TrafficSplit", func() error { return fm.Client.Create(ctx, split) })
	ok, failed, by := load(t, client, webIP, authority, 3*time.Second)()
	got := shares(by)[canary.Name]
	t.Logf("90/10: %d requests, %.1f%% to the canary (%s)", ok, 100*got, by)
	if failed != 0 || ok < 2000 || got < 0.07 || got > 0.13 {
		t.Errorf("90/10 split: %d requests, %d failed, canary share %.3f", ok, failed, got)
	}

	t.Log("changing the weights under load fails no request, and the new shares hold at once")
	wait := load(t, client, webIP, authority, 8*time.Second)
	for _, w := range []struct {
		stable, canary int32
		lo, hi         float64
	}{{0, 100, 1, 1}, {50, 50, 0.4, 0.6}, {100, 0, 0, 0}} {
		setWeights(w.stable, w.canary)
		if got, n := share(); got < w.lo || got > w.hi {
			t.Errorf("weights %d/%d: the canary took %.3f of %d requests, want [%.2f, %.2f]", w.stable, w.canary, got, n, w.lo, w.hi)
		}
	}
	if ok, failed, _ := wait(); failed != 0 || ok < 100 {
		t.Errorf("while the weights changed, %d requests succeeded and %d failed", ok, failed)
	}

	t.Log("a header match sends every matching request to the canary and none of the others")
	apply("a header match", func() error {
		return patch(func() {
			split.Spec.Matches = []meshv1.HTTPMatch{{Headers: []meshv1.HeaderMatch{{Name: "x-canary", Value: "always"}}, Backend: "web-canary"}}
		})
	})
	if got, n := share("-header", "x-canary: always"); got != 1 {
		t.Errorf("with the header, the canary took %.3f of %d requests", got, n)
	}
	if got, n := share(); got != 0 {
		t.Errorf("without the header, the canary took %.3f of %d requests", got, n)
	}

	t.Log("a backend that loses its endpoints loses its share, and no request fails")
	setWeights(50, 50)
	wait = load(t, client, webIP, authority, 4*time.Second)
	time.Sleep(500 * time.Millisecond)
	apply("the canary's empty EndpointSlice", func() error { return m.SetEndpoints("web-canary", "shop", nil, nil) })
	if got, n := share(); got != 0 {
		t.Errorf("with no canary endpoints, the canary took %.3f of %d requests", got, n)
	}
	if ok, failed, _ := wait(); failed != 0 || ok < 100 {
		t.Errorf("while the canary lost its endpoints, %d requests succeeded and %d failed", ok, failed)
	}

	t.Log("deleting the TrafficSplit under load gives the apex its own endpoints back")
	wait = load(t, client, webIP, authority, 3*time.Second)
	time.Sleep(500 * time.Millisecond)
	apply("the TrafficSplit's deletion", func() error { return fm.Client.Delete(ctx, split) })
	if ok, failed, _ := wait(); failed != 0 || ok < 100 {
		t.Errorf("while the split was deleted, %d requests succeeded and %d failed", ok, failed)
	}
	servedBy(t, client, webIP, authority, stable, canary)
}
