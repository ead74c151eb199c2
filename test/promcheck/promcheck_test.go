// Package promcheck checks Skein's figures in the real Prometheus: real proxies in network
// namespaces carry traffic whose rate, 5xx share and latencies are known exactly, Prometheus
// (Debian's) scrapes the proxies, and internal/promql's queries, as `skein stat --prometheus-url`
// runs them, must give those figures back within the tolerances of issue #8.
package promcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/promql"
	"github.com/skeinmesh/skein/internal/stat"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
	"github.com/skeinmesh/skein/test/prometheus"
)

// The traffic: a fixed rate, every 20th response a 503, and latencies of 14, 70 and 240 ms for
// 70%, 27% and 3% of the requests. Each latency sits inside one of the proxy's histogram buckets
// (10-20, 50-100, 200-300 ms) with room for the proxies' own few milliseconds.
const (
	rps          = 50.0
	conns        = 8
	failEvery    = 20
	latencies    = "14ms:70,70ms:27,240ms:3"
	wantSuccess  = 95.0
	shapedPort   = 8081
	window       = time.Minute
	loadDuration = window + 25*time.Second
)

// The buckets of the proxy's latency histogram (proxy/metrics) that hold the true quantiles: p50 is
// 14 ms, p95 70 ms (the 27% band covers 70% to 97%), p99 240 ms.
var wantBuckets = map[string][2]float64{"p50": {10, 20}, "p95": {50, 100}, "p99": {200, 300}}

func TestPromQLAgreesWithTheTraffic(t *testing.T) {
	ctx := context.Background()
	m, fm := newMesh(t)
	server, err := m.AddPod("api-1", "shop", "api", nil)
	if err != nil {
		t.Fatal(err)
	}
	clientPod, err := m.AddPod("client", "shop", "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	shaped := netns.Build(t, "github.com/skeinmesh/skein/test/promcheck/shaped")
	startShapedServer(t, ctx, server, shaped)
	clusterIP := serveShaped(t, m, fm.Client, server)
	const authority = "api.shop.svc.cluster.local:80"
	url := fmt.Sprintf("http://%s:80/shaped", clusterIP)

	p, err := prometheus.Start(t, time.Second,
		prometheus.Target{Addr: fmt.Sprintf("%s:4191", clientPod.IP), Labels: map[string]string{"namespace": "shop", "pod": clientPod.Name}},
		prometheus.Target{Addr: fmt.Sprintf("%s:4191", server.IP), Labels: map[string]string{"namespace": "shop", "pod": server.Name}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScraped(ctx, 2, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The client's proxy learns the Service over xDS; a short burst shows the path works before
	// the measured load, whose window starts well after it.
	waitFor(t, 30*time.Second, "a request through the proxies", func() bool {
		r, err := runLoad(ctx, clientPod, shaped, url, authority, 10, 1, time.Second)
		return err == nil && r.Errors == 0 && r.Sent > 0
	})

	t.Logf("sending %.0f requests per second over %d connections for %s", rps, conns, loadDuration)
	start := time.Now()
	type loadDone struct {
		r   result
		err error
	}
	done := make(chan loadDone, 1)
	go func() {
		r, err := runLoad(ctx, clientPod, shaped, url, authority, rps, conns, loadDuration)
		done <- loadDone{r, err}
	}()
	// The window ends while the load still runs and starts after its first seconds, so that it
	// covers steady traffic; the queries run once Prometheus has scraped past its end.
	at := start.Add(loadDuration - 10*time.Second)
	time.Sleep(time.Until(at.Add(3 * time.Second)))
	source := &promql.Source{Client: p.Client, Window: window, At: at, Cluster: cluster{server.Name}}
	services, err := source.Rows(ctx, stat.Services, "shop")
	if err != nil {
		t.Fatal(err)
	}
	workloads, err := source.Rows(ctx, stat.Workloads, "shop")
	if err != nil {
		t.Fatal(err)
	}
	namespaces, err := source.Rows(ctx, stat.Namespaces, "shop")
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	stat.Print(&table, append(append(services, workloads...), namespaces...), stat.Wide)
	t.Logf("skein stat from Prometheus, the window ending %s after the load started:\n%s", at.Sub(start).Round(time.Second), table.String())

	ld := <-done
	if ld.err != nil {
		t.Fatal(ld.err)
	}
	l := ld.r
	sentRPS := float64(l.Sent) / l.Seconds
	t.Logf("the load sent %d requests in %.1fs (%.2f per second): %d ok, %d 5xx, %d without a response", l.Sent, l.Seconds, sentRPS, l.OK, l.Status5, l.Errors)
	if l.Errors != 0 {
		t.Errorf("%d requests got no response, the first: %s", l.Errors, l.FirstError)
	}
	if math.Abs(sentRPS-rps)/rps > 0.01 {
		t.Errorf("the load sent %.2f requests per second, not the %.0f asked for: the truth is off", sentRPS, rps)
	}
	if share := 100 * float64(l.OK) / float64(l.Sent); math.Abs(share-wantSuccess) > 0.1 {
		t.Errorf("the client saw %.2f%% succeed, not the %.0f%% the server was told", share, wantSuccess)
	}

	checkRow(t, "service api (the client's outbound)", find(services, "api"), true)
	checkRow(t, "workload deployment/api (the server's inbound)", find(workloads, "deployment/api"), true)
	checkRow(t, "namespace shop (inbound at its pods)", find(namespaces, "shop"), false)
	if r := find(services, "api"); r != nil && (r.TCPConnections == nil || *r.TCPConnections != conns) {
		t.Errorf("service api: TCP_CONN %v, want the load's %d connections", deref(r.TCPConnections), conns)
	}
	if r := find(workloads, "deployment/api"); r != nil {
		if r.MTLS == nil || *r.MTLS != 100 {
			t.Errorf("workload deployment/api: mTLS %v%%, want 100%%", deref(r.MTLS))
		}
		// The client's proxy carries the requests to it over its own connections, at least one.
		if r.TCPConnections == nil || *r.TCPConnections < 1 {
			t.Errorf("workload deployment/api: TCP_CONN %v, want the client proxy's connections", deref(r.TCPConnections))
		}
	}
}

// checkRow holds a row's figures to the truth: success rate within 0.5 points, RPS within 5%, and
// each latency quantile within the histogram bucket that holds the true one.
func checkRow(t *testing.T, what string, r *stat.Row, latency bool) {
	t.Helper()
	if r == nil {
		t.Errorf("%s: no row", what)
		return
	}
	if r.SuccessRate == nil || math.Abs(*r.SuccessRate-wantSuccess) > 0.5 {
		t.Errorf("%s: success rate %v%%, want %.1f%% ± 0.5", what, deref(r.SuccessRate), wantSuccess)
	}
	if r.RPS == nil || math.Abs(*r.RPS-rps)/rps > 0.05 {
		t.Errorf("%s: RPS %v, want %.0f ± 5%%", what, deref(r.RPS), rps)
	}
	if !latency {
		return
	}
	for name, got := range map[string]*float64{"p50": r.LatencyP50, "p95": r.LatencyP95, "p99": r.LatencyP99} {
		b := wantBuckets[name]
		if got == nil || *got < b[0] || *got > b[1] {
			t.Errorf("%s: latency %s %v ms, want within the bucket %v-%v ms", what, name, deref(got), b[0], b[1])
		}
	}
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

// cluster is what the CLI would read from the API server: the server pod is Deployment api's.
type cluster struct{ serverPod string }

func (c cluster) Workloads(context.Context, string) ([]promql.WorkloadPods, error) {
	return []promql.WorkloadPods{{Namespace: "shop", Name: "deployment/api", Pods: []string{c.serverPod}, Meshed: "1/1"}}, nil
}

func (cluster) TrafficSplits(context.Context, string) ([]promql.TrafficSplit, error) { return nil, nil }

// result is what `shaped load` prints.
type result struct {
	Sent       int64   `json:"sent"`
	OK         int64   `json:"ok"`
	Status5    int64   `json:"status5xx"`
	Errors     int64   `json:"errors"`
	Seconds    float64 `json:"seconds"`
	FirstError string  `json:"firstError"`
}

func runLoad(ctx context.Context, p *localmesh.Pod, shaped, url, authority string, rps float64, conns int, d time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := p.Command(ctx, shaped, "load", "-url", url, "-host", authority, "-rps", fmt.Sprint(rps),
		"-conns", fmt.Sprint(conns), "-duration", d.String()).Output()
	var r result
	if err != nil {
		return r, fmt.Errorf("shaped load: %w: %s", err, out)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("shaped load printed %q: %w", out, err)
	}
	return r, nil
}

// startShapedServer runs the shaped server in the pod beside its workload, on shapedPort.
func startShapedServer(t *testing.T, ctx context.Context, p *localmesh.Pod, shaped string) {
	cmd := p.Command(ctx, shaped, "serve", "-addr", fmt.Sprintf(":%d", shapedPort), "-latency", latencies, "-fail-every", fmt.Sprint(failEvery))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// serveShaped makes Service api over the pod with localmesh, then points its HTTP port at the
// shaped server, as a Service whose targetPort is the application's.
func serveShaped(t *testing.T, m *localmesh.Mesh, c client.Client, pod *localmesh.Pod) string {
	ctx := context.Background()
	clusterIP, err := m.Serve("api", "shop", pod)
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "api"}, svc); err != nil {
		t.Fatal(err)
	}
	svc.Spec.Ports[0].TargetPort = intstr.FromInt32(shapedPort)
	if err := c.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "api"}, slice); err != nil {
		t.Fatal(err)
	}
	port := int32(shapedPort)
	slice.Ports[0].Port = &port
	if err := c.Update(ctx, slice); err != nil {
		t.Fatal(err)
	}
	return clusterIP
}

// newMesh starts the API server, cert-manager and a control plane whose xDS configures the proxies
// of pods in a new network.
func newMesh(t *testing.T) (*localmesh.Mesh, *framework.Mesh) {
	if err := netns.Supported(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	network, err := netns.NewNetwork(t, "prom")
	if err != nil {
		t.Fatal(err)
	}
	fm, err := framework.StartMesh(ctx, network.Gateway.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fm.Stop() })
	m, err := localmesh.New(ctx, t, localmesh.Options{
		Client: fm.Client, Network: network, IdentityAddr: fm.ControlPlane.IdentityAddr, IdentityServerName: framework.IdentityServerName,
		TrustAnchors: string(fm.Anchors), XDSAddrs: []string{fm.ControlPlane.XDSAddr}, XDSServerName: framework.XDSServerName,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, fm
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
