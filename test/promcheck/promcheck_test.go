// Package promcheck checks Skein's figures in the real Prometheus: real proxies in network
// namespaces carry traffic whose rate, 5xx share and latencies are known exactly, Debian's
// Prometheus scrapes the same proxies as the control plane does, and `skein stat
// --prometheus-url` (internal/promql's queries) must give the truth back within the tolerances of
// issue #8, and agree with `skein stat` from the control plane's MeshStatuses within them too.
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
	"github.com/skeinmesh/skein/internal/stat"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
	"github.com/skeinmesh/skein/test/prometheus"
)

// The traffic: 50 requests a second, every 20th answered 500, and latencies of 150 ms, 700 ms and
// 2.5 s for 70%, 27% and 3% of the requests (test/workload's -latencies and -fail-every).
const (
	rate        = 50.0
	failEvery   = 20
	latencies   = "150ms:70,700ms:27,2500ms:3"
	wantSuccess = 95.0
	// The control plane's window, and the load: long enough that the window, read 15s before the
	// load ends, covers steady traffic only.
	window       = time.Minute
	loadDuration = window + 30*time.Second
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

	server, err := m.AddPodServing("api-1", "shop", "api", nil, "-latencies", latencies, "-fail-every", strconv.Itoa(failEvery))
	if err != nil {
		t.Fatal(err)
	}
	clientPod, err := m.AddPod("client", "shop", "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	clusterIP, err := m.Serve("api", "shop", server)
	if err != nil {
		t.Fatal(err)
	}
	const authority = "api.shop.svc.cluster.local:80"
	workload, skein := netns.Build(t, "github.com/skeinmesh/skein/test/workload"), netns.Build(t, "github.com/skeinmesh/skein/cmd/skein")

	p, err := prometheus.Start(t, time.Second,
		prometheus.Target{Addr: fmt.Sprintf("%s:4191", clientPod.IP), Labels: map[string]string{"namespace": "shop", "pod": clientPod.Name}},
		prometheus.Target{Addr: fmt.Sprintf("%s:4191", server.IP), Labels: map[string]string{"namespace": "shop", "pod": server.Name}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScraped(ctx, 2, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The client's proxy knows the service once a request reaches the server through it; these
	// requests come long before the window.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, _ := clientPod.Run(0, "-mode", "http1", "-addr", clusterIP+":80")
		if strings.HasPrefix(out, "200") || strings.HasPrefix(out, "500") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request went through the proxies in 30s: %s", out)
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
		"services":   skeinStat("services", "-n", "shop", promURL),
		"workloads":  skeinStat("workloads", "-n", "shop", promURL),
		"namespaces": skeinStat("namespaces", promURL),
	}
	fromMeshStatus := map[string][]stat.Row{
		"services":   skeinStat("services", "-n", "shop"),
		"workloads":  skeinStat("workloads", "-n", "shop"),
		"namespaces": skeinStat("namespaces"),
	}
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

	for _, c := range []struct{ kind, name, what string }{
		{"services", "api", "service api (its client's outbound)"},
		{"workloads", "pod/api-1", "workload pod/api-1 (its inbound)"},
		{"namespaces", "shop", "namespace shop (its pods' inbound)"},
	} {
		prom, ours := find(fromProm[c.kind], c.name), find(fromMeshStatus[c.kind], c.name)
		if prom == nil || ours == nil {
			t.Errorf("%s: a row from Prometheus %v, from the MeshStatuses %v", c.what, prom != nil, ours != nil)
			continue
		}
		checkTruth(t, "Prometheus: "+c.what, prom)
		checkTruth(t, "MeshStatus: "+c.what, ours)
		checkAgree(t, c.what, prom, ours)
	}
	// A Prometheus that is not there is named as such.
	if out, err := exec.Command(skein, "stat", "services", "-n", "shop", "--kubeconfig", fm.Kubeconfig,
		"--prometheus-url", "http://127.0.0.1:1").CombinedOutput(); err == nil || !strings.Contains(string(out), "prometheus at http://127.0.0.1:1 is unreachable") {
		t.Errorf("skein stat with no Prometheus at its URL: %v: %s", err, out)
	}
	if r := find(fromProm["services"], "api"); r != nil && r.Meshed != "1/1" {
		t.Errorf("service api from Prometheus: MESHED %q, want its one endpoint, meshed: 1/1", r.Meshed)
	}
	if r := find(fromProm["services"], "api"); r != nil && (r.TCPConnections == nil || *r.TCPConnections < 1) {
		t.Errorf("service api from Prometheus: TCP_CONN %v, want the load's connections", deref(r.TCPConnections))
	}
	if r := find(fromProm["workloads"], "pod/api-1"); r != nil {
		if r.Meshed != "1/1" {
			t.Errorf("workload pod/api-1 from Prometheus: MESHED %q, want 1/1", r.Meshed)
		}
		if r.MTLS == nil || *r.MTLS != 100 {
			t.Errorf("workload pod/api-1 from Prometheus: mTLS %v%%, want 100%%", deref(r.MTLS))
		}
	}
}

// checkTruth holds a row's figures to the truth: success rate within 0.5 points, RPS within 5%,
// and each latency quantile within the histogram bucket that holds the true one.
func checkTruth(t *testing.T, what string, r *stat.Row) {
	t.Helper()
	if r.SuccessRate == nil || math.Abs(*r.SuccessRate-wantSuccess) > 0.5 {
		t.Errorf("%s: success rate %v%%, want %.1f%% ± 0.5", what, deref(r.SuccessRate), wantSuccess)
	}
	if r.RPS == nil || math.Abs(*r.RPS-rate)/rate > 0.05 {
		t.Errorf("%s: RPS %v, want %.0f ± 5%%", what, deref(r.RPS), rate)
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
	for _, kind := range []string{"services", "workloads", "namespaces"} {
		stat.Print(&b, byKind[kind], stat.Wide)
	}
	return b.String()
}

func find(rows []stat.Row, name string) *stat.Row {
	for i := range rows {
		if rows[i].Name == name {
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
