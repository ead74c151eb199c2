package telemetry

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/scheme"
)

// TestRoundScrapesMeshedPods runs scrape rounds against a proxy's /metrics served on loopback (a
// fake client lists the pods): the meshed pod is scraped, the others are not, and a proxy that stops
// answering is no longer counted as connected.
func TestRoundScrapesMeshedPods(t *testing.T) {
	var round atomic.Int32
	var up atomic.Bool
	up.Store(true)
	var scraped atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() || r.URL.Path != "/metrics" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		scraped.Add(1)
		w.Write([]byte(scrapeText("inbound", 10+int(round.Load()))))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	adminPort, _ := strconv.Atoi(port)

	pod := func(name string, meshed bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1"}}
		if meshed {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: meshv1.ProxyContainerName})
		}
		return p
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(pod("web-1", true), pod("plain", false)).Build()
	var last *Figures
	comp := &Component{Client: c, Store: NewStore(), HTTP: srv.Client(), Publish: func(_ context.Context, f *Figures, _ Settings) error {
		last = f
		return nil
	}}
	s := Settings{Window: time.Minute, ScrapeInterval: time.Second, AdminPort: int32(adminPort)}
	ctx := context.Background()
	for i := range 3 {
		round.Store(int32(i))
		if err := comp.Round(ctx, s); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // samples at distinct times
	}
	if scraped.Load() != 3 {
		t.Errorf("%d scrapes in 3 rounds of one meshed pod", scraped.Load())
	}
	if last.Proxies["shop"] != 1 || last.Workloads[WorkloadKey{"shop", "pod/web-1"}] == nil {
		t.Fatalf("after 3 rounds: proxies %v, workloads %v", last.Proxies, last.Workloads)
	}
	if g := last.Mesh; g.SuccessRate == nil || *g.SuccessRate != 0.9 || g.TCPConnections != 3 {
		t.Errorf("mesh figures: %+v", g)
	}

	up.Store(false)
	if err := comp.Round(ctx, s); err != nil {
		t.Fatal(err)
	}
	if last.Proxies["shop"] != 0 || last.Mesh.TCPConnections != 0 {
		t.Errorf("a proxy that stopped answering: proxies %v, connections %d", last.Proxies, last.Mesh.TCPConnections)
	}
}
