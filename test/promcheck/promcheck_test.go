// Package promcheck checks Skein's figures in the real Prometheus: real proxies in network
// namespaces carry traffic whose rate, 5xx share and latencies are known exactly, through a
// TrafficSplit to two servers; Debian's Prometheus scrapes the same proxies as the control plane
// does, and `skein stat --prometheus-url` (internal/promql's queries) must give the truth back
// within the tolerances of issue #8, and agree with `skein stat` from the control plane's
// MeshStatuses within them too.
package promcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/promql"
	"github.com/skeinmesh/skein/internal/stat"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
	"github.com/skeinmesh/skein/test/prometheus"
)

// The traffic: 50 requests a second, every 20th answered 500, and latencies of 150 ms, 700 ms and
// 2.5 s for 70%, 27% and 3% of the requests (test/workload's -latencies and -fail-every), each of
// the two servers true to those shares over the requests it takes. A TrafficSplit sends 80% of
// them to api-v1's pod and 20% to api-v2's.
const (
	rate        = 50.0
	failEvery   = 20
	latencies   = "150ms:70,700ms:27,2500ms:3"
	wantSuccess = 95.0
	// The control plane's window, and the load: long enough that the window, read 15s before the
	// load ends, covers steady traffic only.
	window       = time.Minute
	loadDuration = window + 30*time.Second
	weightV1     = 80
)

// The buckets of the proxy's latency histogram (proxy/metrics) that hold the true quantiles: p50 is
// 150 ms, p95 700 ms (the 27% band covers 70% to 97% of the requests), p99 2.5 s. Each sits far
// enough below its bucket's top that a busy machine's delays, added to every latency, leave it in
// its bucket: with latencies at the bottom of small buckets, a few tens of milliseconds on a share
// of the requests moved p95 into the next bucket, in both sources alike.
var wantBuckets = map[string][2]float64{"p50": {100, 200}, "p95": {500, 1000}, "p99": {2000, 3000}}

func TestPromQLAgreesWithTheTrafficAndTheControlPlane(t *testing.T) {
	ctx := context.Background()
	m, fm := newMesh(t)
	// The control plane scrapes as often as Prometheus, over the default window.
	mc := &meshv1.MeshConfig{}
	if err := fm.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		t.Fatal(err)
	}
	before := mc.DeepCopy()
	mc.Spec.Telemetry.Window = &metav1.Duration{Duration: window}
	mc.Spec.Telemetry.ScrapeInterval = &metav1.Duration{Duration: time.Second}
	if err := fm.Client.Patch(ctx, mc, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}

	serve := []string{"-latencies", latencies, "-fail-every", strconv.Itoa(failEvery)}
	v1, err := m.AddPodServing("api-1", "shop", "api", nil, serve...)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := m.AddPodServing("api-2", "shop", "api", nil, serve...)
	if err != nil {
		t.Fatal(err)
	}
	clientPod, err := m.AddPod("client", "shop", "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	clusterIP, err := m.Serve("api", "shop", v1, v2)
	if err != nil {
		t.Fatal(err)
	}
	for name, pod := range map[string]*localmesh.Pod{"api-v1": v1, "api-v2": v2} {
		if _, err := m.Serve(name, "shop", pod); err != nil {
			t.Fatal(err)
		}
	}
	split := &meshv1.TrafficSplit{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"},
		Spec: meshv1.TrafficSplitSpec{Service: "api", Backends: []meshv1.TrafficSplitBackend{
			{Service: "api-v1", Weight: weightV1}, {Service: "api-v2", Weight: 100 - weightV1},
		}},
	}
	if err := fm.Client.Create(ctx, split); err != nil {
		t.Fatal(err)
	}
	const authority = "api.shop.svc.cluster.local:80"
	workload, skein := netns.Build(t, "github.com/skeinmesh/skein/test/workload"), netns.Build(t, "github.com/skeinmesh/skein/cmd/skein")

	var targets []prometheus.Target
	for _, pod := range []*localmesh.Pod{clientPod, v1, v2} {
		targets = append(targets, prometheus.Target{Addr: fmt.Sprintf("%s:4191", pod.IP), Labels: map[string]string{"namespace": "shop", "pod": pod.Name}})
	}
	p, err := prometheus.Start(t, time.Second, targets...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScraped(ctx, len(targets), time.Minute); err != nil {
		t.Fatal(err)
	}

	// The client's proxy has the split once both backends answer it; these requests come long
	// before the window.
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, _ := clientPod.Run(0, "-mode", "load", "-addr", clusterIP+":80", "-host", authority, "-duration", "1s", "-workers", "1")
		if strings.Contains(out, "api-1=") && strings.Contains(out, "api-2=") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests through the proxies did not reach both backends in 30s: %s", out)
		}
	}

	t.Logf("sending %.0f requests a second for %s", rate, loadDuration)
	start := time.Now()
	loadOut := make(chan string, 1)
	go func() {
		lctx, cancel := context.WithTimeout(ctx, loadDuration+time.Minute)
		defer cancel()
		out, err := clientPod.Command(lctx, workload, "-mode", "load", "-addr", clusterIP+":80", "-host", authority,
			"-rate", fmt.Sprint(rate), "-duration", loadDuration.String()).CombinedOutput()
		if err != nil {
			out = append(out, " "+err.Error()...)
		}
		loadOut <- string(out)
	}()

	time.Sleep(time.Until(start.Add(loadDuration - 15*time.Second)))
	skeinStat := func(args ...string) []stat.Row { return runStat(t, skein, fm.Kubeconfig, args...) }
	promURL := "--prometheus-url=" + p.URL
	fromProm := map[string][]stat.Row{
		"services":      skeinStat("services", "-n", "shop", promURL),
		"workloads":     skeinStat("workloads", "-n", "shop", promURL),
		"namespaces":    skeinStat("namespaces", promURL),
		"trafficsplits": skeinStat("trafficsplits", "-n", "shop", promURL),
	}
	fromMeshStatus := map[string][]stat.Row{
		"services":      skeinStat("services", "-n", "shop"),
		"workloads":     skeinStat("workloads", "-n", "shop"),
		"namespaces":    skeinStat("namespaces"),
		"trafficsplits": skeinStat("trafficsplits", "-n", "shop"),
	}
	// Routes have no skein stat kind: the dashboard shows them, from internal/promql's queries.
	routeProm, routeOurs := routeFromPrometheus(t, ctx, p, "api"), routeFromMeshStatus(t, ctx, fm, "api")
	t.Logf("skein stat --prometheus-url, %s after the load started:\n%s", time.Since(start).Round(time.Second), table(fromProm))
	t.Logf("skein stat from the control plane's MeshStatuses:\n%s", table(fromMeshStatus))

	out := <-loadOut
	var ok, failed int
	if _, err := fmt.Sscanf(out, "ok=%d failed=%d", &ok, &failed); err != nil {
		t.Fatalf("the load said %q: %v", out, err)
	}
	sent := float64(ok + failed)
	t.Logf("the load: %d ok, %d failed (%.2f%% ok), %.2f requests a second", ok, failed, 100*float64(ok)/sent, sent/loadDuration.Seconds())
	if math.Abs(sent/loadDuration.Seconds()-rate)/rate > 0.01 {
		t.Errorf("the load sent %.2f requests a second, not %.0f: the truth is off", sent/loadDuration.Seconds(), rate)
	}
	if share := 100 * float64(ok) / sent; math.Abs(share-wantSuccess) > 0.1 {
		t.Errorf("the client saw %.2f%% succeed, not the %.0f%% the server was told: %s", share, wantSuccess, out)
	}

	// Rows whose rate is the whole load's are held to it; the servers' and the backends' shares of it
	// are chance, so those are held to the other source only.
	for _, c := range []struct {
		kind, name, backend, what string
		wholeLoad                 bool
	}{
		{"services", "api", "", "service api (its client's outbound)", true},
		{"namespaces", "shop", "", "namespace shop (its pods' inbound)", true},
		{"workloads", "pod/api-1", "", "workload pod/api-1 (its inbound)", false},
		{"workloads", "pod/api-2", "", "workload pod/api-2 (its inbound)", false},
		{"trafficsplits", "api", "api-v1", "TrafficSplit api, backend api-v1", false},
		{"trafficsplits", "api", "api-v2", "TrafficSplit api, backend api-v2", false},
	} {
		prom, ours := find(fromProm[c.kind], c.name, c.backend), find(fromMeshStatus[c.kind], c.name, c.backend)
		if prom == nil || ours == nil {
			t.Errorf("%s: a row from Prometheus %v, from the MeshStatuses %v", c.what, prom != nil, ours != nil)
			continue
		}
		wantRPS := 0.0
		if c.wholeLoad {
			wantRPS = rate
		}
		checkTruth(t, "Prometheus: "+c.what, prom, wantRPS)
		checkTruth(t, "MeshStatus: "+c.what, ours, wantRPS)
		checkAgree(t, c.what, prom, ours)
	}
	var routes strings.Builder
	stat.Print(&routes, []stat.Row{*routeProm, *routeOurs}, stat.Table)
	t.Logf("route default of service api, from Prometheus then from MeshStatus:\n%s", routes.String())
	checkTruth(t, "Prometheus: route default of service api", routeProm, rate)
	checkTruth(t, "MeshStatus: route default of service api", routeOurs, rate)
	checkAgree(t, "route default of service api", routeProm, routeOurs)
	var rpsV1, rpsV2 float64
	for _, b := range []struct {
		name   string
		weight int32
		rps    *float64
	}{{"api-v1", weightV1, &rpsV1}, {"api-v2", 100 - weightV1, &rpsV2}} {
		r := find(fromProm["trafficsplits"], "api", b.name)
		if r == nil || r.Weight == nil || r.Observed == nil || r.RPS == nil {
			t.Errorf("TrafficSplit api, backend %s from Prometheus: no weight, share or RPS: %+v", b.name, r)
			continue
		}
		*b.rps = *r.RPS
		// Each request picks a backend at random: over the window's 3,000 requests a share is
		// within 5 points of its weight but for chance of less than one in a million.
		if *r.Weight != b.weight || math.Abs(*r.Observed-float64(b.weight)) > 5 {
			t.Errorf("TrafficSplit api, backend %s from Prometheus: weight %d, observed %.2f%%; want weight %d and a share near it", b.name, *r.Weight, *r.Observed, b.weight)
		}
		// A share is a ratio of rates: the sources agree on it within the RPS tolerance, 5%.
		if ours := find(fromMeshStatus["trafficsplits"], "api", b.name); ours == nil || ours.Observed == nil || math.Abs(*r.Observed-*ours.Observed) / *ours.Observed > 0.05 {
			t.Errorf("TrafficSplit api, backend %s: observed %.2f%% from Prometheus, %+v from the control plane", b.name, *r.Observed, ours)
		}
	}
	if math.Abs(rpsV1+rpsV2-rate)/rate > 0.05 {
		t.Errorf("TrafficSplit api: its backends took %.2f + %.2f requests a second, want %.0f ± 5%% together", rpsV1, rpsV2, rate)
	}
	// A Prometheus that is not there is named as such.
	if out, err := exec.Command(skein, "stat", "services", "-n", "shop", "--kubeconfig", fm.Kubeconfig,
		"--prometheus-url", "http://127.0.0.1:1").CombinedOutput(); err == nil || !strings.Contains(string(out), "prometheus at http://127.0.0.1:1 is unreachable") {
		t.Errorf("skein stat with no Prometheus at its URL: %v: %s", err, out)
	}
	if r := find(fromProm["services"], "api", ""); r != nil && r.Meshed != "2/2" {
		t.Errorf("service api from Prometheus: MESHED %q, want its two endpoints, meshed: 2/2", r.Meshed)
	}
	if r := find(fromProm["services"], "api", ""); r != nil && (r.TCPConnections == nil || *r.TCPConnections < 1) {
		t.Errorf("service api from Prometheus: TCP_CONN %v, want the load's connections", deref(r.TCPConnections))
	}
	if r := find(fromProm["workloads"], "pod/api-1", ""); r != nil {
		if r.Meshed != "1/1" {
			t.Errorf("workload pod/api-1 from Prometheus: MESHED %q, want 1/1", r.Meshed)
		}
		if r.MTLS == nil || *r.MTLS != 100 {
			t.Errorf("workload pod/api-1 from Prometheus: mTLS %v%%, want 100%%", deref(r.MTLS))
		}
	}
}

// checkTruth holds a row's figures to the truth: success rate within 0.5 points, RPS within 5% of
// wantRPS (unless 0, when only some is wanted), and each latency quantile within the histogram
// bucket that holds the true one.
func checkTruth(t *testing.T, what string, r *stat.Row, wantRPS float64) {
	t.Helper()
	if r.SuccessRate == nil || math.Abs(*r.SuccessRate-wantSuccess) > 0.5 {
		t.Errorf("%s: success rate %v%%, want %.1f%% ± 0.5", what, deref(r.SuccessRate), wantSuccess)
	}
	if r.RPS == nil || *r.RPS <= 0 || wantRPS > 0 && math.Abs(*r.RPS-wantRPS)/wantRPS > 0.05 {
		t.Errorf("%s: RPS %v, want %.0f ± 5%%", what, deref(r.RPS), wantRPS)
	}
	for name, got := range quantiles(r) {
		b := wantBuckets[name]
		if got == nil || *got < b[0] || *got > b[1] {
			t.Errorf("%s: latency %s %v ms, want within the bucket %v-%v ms", what, name, deref(got), b[0], b[1])
		}
	}
}

// checkAgree holds the two sources to each other within the same tolerances; the quantiles'
// buckets were checked against the truth already.
func checkAgree(t *testing.T, what string, prom, ours *stat.Row) {
	t.Helper()
	if prom.SuccessRate != nil && ours.SuccessRate != nil && math.Abs(*prom.SuccessRate-*ours.SuccessRate) > 0.5 {
		t.Errorf("%s: success rate %.2f%% from Prometheus, %.2f%% from the control plane", what, *prom.SuccessRate, *ours.SuccessRate)
	}
	if prom.RPS != nil && ours.RPS != nil && math.Abs(*prom.RPS-*ours.RPS) / *ours.RPS > 0.05 {
		t.Errorf("%s: RPS %.2f from Prometheus, %.2f from the control plane", what, *prom.RPS, *ours.RPS)
	}
	if prom.Meshed != ours.Meshed {
		t.Errorf("%s: MESHED %q from Prometheus's source, %q from the control plane", what, prom.Meshed, ours.Meshed)
	}
}

func quantiles(r *stat.Row) map[string]*float64 {
	return map[string]*float64{"p50": r.LatencyP50, "p95": r.LatencyP95, "p99": r.LatencyP99}
}

// routeFromPrometheus asks Prometheus for the figures of a shop Service's catch-all route, with
// internal/promql's queries, now.
func routeFromPrometheus(t *testing.T, ctx context.Context, p *prometheus.Server, service string) *stat.Row {
	t.Helper()
	route, w := promql.Route("shop", service), promql.Over(window)
	figures := []struct {
		query string
		into  **float64
		scale float64
	}{{route.SuccessRate(w), new(*float64), 100}, {route.RPS(w), new(*float64), 1},
		{route.Quantile(0.5, w), new(*float64), 1}, {route.Quantile(0.95, w), new(*float64), 1}, {route.Quantile(0.99, w), new(*float64), 1}}
	for _, f := range figures {
		samples, err := p.Client.Query(ctx, f.query, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			if s.Labels["route"] == "default" {
				v := s.Value * f.scale
				*f.into = &v
			}
		}
	}
	return &stat.Row{Name: "default", SuccessRate: *figures[0].into, RPS: *figures[1].into,
		LatencyP50: *figures[2].into, LatencyP95: *figures[3].into, LatencyP99: *figures[4].into}
}

// routeFromMeshStatus reads the control plane's figures of a shop Service's catch-all route.
func routeFromMeshStatus(t *testing.T, ctx context.Context, fm *framework.Mesh, service string) *stat.Row {
	t.Helper()
	ms := &meshv1.MeshStatus{}
	if err := fm.Client.Get(ctx, client.ObjectKey{Name: "shop"}, ms); err != nil {
		t.Fatal(err)
	}
	for _, svc := range ms.Status.Services {
		for _, r := range svc.Routes {
			if svc.Name == service && r.Name == "default" {
				g := r.GoldenMetrics
				return &stat.Row{Name: "default", SuccessRate: number(g.SuccessRate, "%"), RPS: number(g.RPS, ""),
					LatencyP50: number(g.LatencyP50, "ms"), LatencyP95: number(g.LatencyP95, "ms"), LatencyP99: number(g.LatencyP99, "ms")}
			}
		}
	}
	t.Fatalf("MeshStatus shop has no route default for service %s: %+v", service, ms.Status.Services)
	return nil
}

// number reads a MeshStatus figure ("95.00%", "50.00", "172ms"), nil when it is not one.
func number(s, unit string) *float64 {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, unit), 64)
	if err != nil {
		return nil
	}
	return &v
}

// runStat runs the built skein stat with -o json.
func runStat(t *testing.T, skein, kubeconfig string, args ...string) []stat.Row {
	t.Helper()
	out, err := exec.Command(skein, append([]string{"stat", "--kubeconfig", kubeconfig, "-o", "json"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("skein stat %v: %v: %s", args, err, out)
	}
	var rows []stat.Row
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("skein stat %v printed %s: %v", args, out, err)
	}
	return rows
}

func table(byKind map[string][]stat.Row) string {
	var b strings.Builder
	for _, kind := range []string{"services", "workloads", "namespaces", "trafficsplits"} {
		stat.Print(&b, byKind[kind], stat.Wide)
	}
	return b.String()
}

// find is the row of a name and, for TrafficSplits, a backend.
func find(rows []stat.Row, name, backend string) *stat.Row {
	for i := range rows {
		if rows[i].Name == name && rows[i].Backend == backend {
			return &rows[i]
		}
	}
	return nil
}

func deref[T any](p *T) any {
	if p == nil {
		return "none"
	}
	return *p
}

// newMesh starts the API server, cert-manager and a control plane whose xDS configures the proxies
// of pods in a new network, and whose telemetry component scrapes them.
func newMesh(t *testing.T) (*localmesh.Mesh, *framework.Mesh) {
	// The control plane runs in this process; what it says shows in its figures, which the test
	// reads, and the logger it looks for must be set, or controller-runtime complains.
	logf.SetLogger(logr.Discard())
	m, fm, err := framework.StartLocalMesh(context.Background(), t, "prom", true)
	if err != nil {
		t.Fatal(err)
	}
	return m, fm
}
