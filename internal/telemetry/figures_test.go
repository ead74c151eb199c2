package telemetry

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// scrapeText is what a proxy's /metrics says after n ten-second intervals of steady traffic: the
// server answers 10 requests a second (1 failing), 60% within 10ms, 90% within 20ms, all within
// 100ms, and holds 3 connections open; the client sent them all to web.shop, 20% through the
// "match-0" route to the web-v2 backend.
func scrapeText(direction string, n int) string {
	var b strings.Builder
	out := direction == "outbound"
	labels := func(route, backend string) string {
		if !out {
			return `direction="inbound",authority="web.shop:80",tls="true",dst_service="",dst_backend="",route="",server_id="",client_id="spiffe://cluster.local/ns/shop/sa/client"`
		}
		return fmt.Sprintf(`direction="outbound",authority="web.shop:80",tls="true",dst_service="web.shop",dst_backend=%q,route=%q,server_id="spiffe://cluster.local/ns/shop/sa/web",client_id=""`, backend, route)
	}
	parts := []struct {
		route, backend string
		share          float64
	}{{"", "", 1}}
	if out {
		parts = []struct {
			route, backend string
			share          float64
		}{{"default", "web.shop", 0.8}, {"match-0", "web-v2.shop", 0.2}}
	}
	b.WriteString("# TYPE request_total counter\n# TYPE response_total counter\n# TYPE response_latency_ms histogram\n")
	b.WriteString("# TYPE tcp_open_total counter\n# TYPE tcp_close_total counter\n")
	for _, p := range parts {
		l := labels(p.route, p.backend)
		k := float64(n) * 10 * p.share // responses per 10s interval: 100 * share
		fmt.Fprintf(&b, "request_total{%s} %g\n", l, 10*k)
		fmt.Fprintf(&b, "response_total{%s,status_code=\"200\",classification=\"success\"} %g\n", l, 9*k)
		fmt.Fprintf(&b, "response_total{%s,status_code=\"503\",classification=\"failure\"} %g\n", l, 1*k)
		for _, bk := range []struct {
			le    string
			share float64
		}{{"5", 0}, {"10", 0.6}, {"20", 0.9}, {"100", 1}} {
			fmt.Fprintf(&b, "response_latency_ms_bucket{%s,classification=\"success\",le=%q} %g\n", l, bk.le, 10*k*bk.share)
		}
		fmt.Fprintf(&b, "response_latency_ms_bucket{%s,classification=\"success\",le=\"+Inf\"} %g\n", l, 10*k)
		fmt.Fprintf(&b, "response_latency_ms_sum{%s,classification=\"success\"} 0\n", l)
		fmt.Fprintf(&b, "response_latency_ms_count{%s,classification=\"success\"} %g\n", l, 10*k)
	}
	if out {
		fmt.Fprintf(&b, "tcp_open_total{direction=\"outbound\",tls=\"false\",dst_service=\"web.shop\"} %d\n", 5+n)
		fmt.Fprintf(&b, "tcp_close_total{direction=\"outbound\",tls=\"false\",dst_service=\"web.shop\"} %d\n", 4+n)
	} else {
		fmt.Fprintf(&b, "tcp_open_total{direction=\"inbound\",tls=\"true\",dst_service=\"\"} %d\n", 3+n)
		fmt.Fprintf(&b, "tcp_close_total{direction=\"inbound\",tls=\"true\",dst_service=\"\"} %d\n", n)
	}
	return b.String()
}

func mustParse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing:\n%s\n%v", text, err)
	}
	return f
}

func near(t *testing.T, what string, got *float64, want float64) {
	t.Helper()
	if got == nil || math.Abs(*got-want) > 1e-9 {
		g := "nil"
		if got != nil {
			g = fmt.Sprint(*got)
		}
		t.Errorf("%s = %s, want %v", what, g, want)
	}
}

func TestCompute(t *testing.T) {
	s := NewStore()
	server := Proxy{Namespace: "shop", Pod: "web-1", Workload: "deployment/web"}
	client := Proxy{Namespace: "front", Pod: "client", Workload: "pod/client"}
	// Scrapes every 10s from 5s to 55s; the window is the minute that ends at 60s.
	for i := 0; i <= 5; i++ {
		at := t0.Add(time.Duration(5+10*i) * time.Second)
		s.Add(server, at, mustParse(t, scrapeText("inbound", 10+i)))
		s.Add(client, at, mustParse(t, scrapeText("outbound", 10+i)))
	}
	f := s.Compute(t0.Add(time.Minute), time.Minute)

	// 100 responses every 10s, extrapolated over the minute: 600, or 10 a second.
	check := func(scope string, g *Golden, rps float64) {
		t.Helper()
		near(t, scope+" rps", &g.RPS, rps)
		near(t, scope+" success", g.SuccessRate, 0.9)
		// p50: rank 0.5 of 0.6 in (5, 10]; p95 halfway through (20, 100]; p99 at 0.9 of it.
		near(t, scope+" p50", g.P50, 5+5*0.5/0.6)
		near(t, scope+" p95", g.P95, 20+80*0.5)
		near(t, scope+" p99", g.P99, 20+80*0.9)
		near(t, scope+" mtls", g.MTLS, 1)
	}
	check("mesh", f.Mesh, 10)
	check("namespace shop", f.Namespaces["shop"], 10)
	check("workload", f.Workloads[WorkloadKey{"shop", "deployment/web"}], 10)
	web := ServiceKey{"shop", "web"}
	check("service", f.Services[web], 10)
	check("route default", f.Routes[web]["default"], 8)
	check("route match-0", f.Routes[web]["match-0"], 2)
	check("backend web", f.Backends[web][web], 8)
	check("backend web-v2", f.Backends[web][ServiceKey{"shop", "web-v2"}], 2)
	if f.Namespaces["front"] != nil {
		t.Error("the client's namespace served nothing, yet has figures")
	}
	if got := f.Mesh.TCPConnections; got != 3 {
		t.Errorf("mesh connections = %d, want 3", got)
	}
	if got := f.Services[web].TCPConnections; got != 1 {
		t.Errorf("web.shop connections = %d, want 1", got)
	}
	if f.Proxies[""] != 2 || f.Proxies["shop"] != 1 {
		t.Errorf("proxies = %v", f.Proxies)
	}

	// The server's proxy goes: its connections at once, its requests once the window has passed.
	s.Down("shop", "web-1")
	f = s.Compute(t0.Add(time.Minute), time.Minute)
	if f.Mesh.TCPConnections != 0 || f.Proxies["shop"] != 0 {
		t.Errorf("a proxy that is down still counts: %d connections, proxies %v", f.Mesh.TCPConnections, f.Proxies)
	}
	later := t0.Add(2 * time.Minute)
	s.Prune(later.Add(-time.Minute))
	f = s.Compute(later, time.Minute)
	if f.Mesh.RPS != 0 || f.Mesh.SuccessRate != nil || len(f.Workloads) != 0 {
		t.Errorf("a window after the proxy went: rps %v, success %v, workloads %v", f.Mesh.RPS, f.Mesh.SuccessRate, f.Workloads)
	}
}

func TestWorkloadOf(t *testing.T) {
	owned := func(kind, name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: kind, Name: name, Controller: ptr.To(true)}}}}
	}
	deployment := func(string) *metav1.OwnerReference {
		return &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Controller: ptr.To(true)}
	}
	none := func(string) *metav1.OwnerReference { return nil }
	tests := []struct {
		pod  *corev1.Pod
		rs   func(string) *metav1.OwnerReference
		want string
	}{
		{owned("ReplicaSet", "web-5d8f"), deployment, "deployment/web"},
		{owned("ReplicaSet", "web-5d8f"), none, "replicaset/web-5d8f"},
		{owned("StatefulSet", "db"), none, "statefulset/db"},
		{&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "lonely"}}, none, "pod/lonely"},
	}
	for _, tt := range tests {
		if got := WorkloadOf(tt.pod, tt.rs); got != tt.want {
			t.Errorf("WorkloadOf(%v) = %q, want %q", tt.pod.OwnerReferences, got, tt.want)
		}
	}
}

func TestSoonestCertExpiry(t *testing.T) {
	s := NewStore()
	expiring := func(unix int64) map[string]*dto.MetricFamily {
		return mustParse(t, fmt.Sprintf("# TYPE identity_cert_expiration_timestamp_seconds gauge\nidentity_cert_expiration_timestamp_seconds %d\n", unix))
	}
	s.Add(Proxy{Namespace: "shop", Pod: "a"}, t0, expiring(2000))
	s.Add(Proxy{Namespace: "shop", Pod: "b"}, t0, expiring(1000))
	s.Add(Proxy{Namespace: "front", Pod: "c"}, t0, expiring(500))
	s.Add(Proxy{Namespace: "front", Pod: "d"}, t0, expiring(0)) // no certificate yet
	tests := []struct {
		namespace string
		want      int64
		ok        bool
	}{{"shop", 1000, true}, {"front", 500, true}, {"", 500, true}, {"empty", 0, false}}
	for _, tt := range tests {
		got, ok := s.SoonestCertExpiry(tt.namespace)
		if ok != tt.ok || ok && got.Unix() != tt.want {
			t.Errorf("SoonestCertExpiry(%q) = %v, %v; want %v, %v", tt.namespace, got.Unix(), ok, tt.want, tt.ok)
		}
	}
	s.Prune(t0.Add(time.Hour))
	if f := s.Compute(t0.Add(time.Hour), time.Minute); f.Proxies[""] != 4 {
		t.Errorf("proxies without traffic are not counted as connected: %v", f.Proxies)
	}
	s.Down("front", "c")
	if got, _ := s.SoonestCertExpiry(""); got.Unix() != 1000 {
		t.Errorf("a proxy that is down still counts: %v", got.Unix())
	}
	s.Prune(t0.Add(time.Hour))
	if f := s.Compute(t0.Add(time.Hour), time.Minute); f.Proxies[""] != 3 {
		t.Errorf("a proxy that is down is counted as connected: %v", f.Proxies)
	}
}
