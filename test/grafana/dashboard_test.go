// Package grafana_test runs every query of Skein's Grafana dashboard in the real Prometheus, over
// series with the labels skein-proxy gives its metrics, and checks each one answers with figures.
package grafana_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/grafana"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/test/prometheus"
)

// fakeProxy serves metrics in the shape of skein-proxy's (proxy/metrics), for a client of web.shop
// and a server of it, growing at every scrape as under steady traffic.
type fakeProxy struct {
	mu      sync.Mutex
	scrapes int
}

func (f *fakeProxy) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	f.scrapes++
	n := f.scrapes
	f.mu.Unlock()
	out := `direction="outbound",authority="web.shop.svc.cluster.local:80",tls="true",dst_service="web.shop",dst_backend="web.shop",route="default",server_id="spiffe://cluster.local/ns/shop/sa/web"`
	in := `direction="inbound",authority="web.shop.svc.cluster.local:80",tls="true",client_id="spiffe://cluster.local/ns/shop/sa/client"`
	for _, labels := range []string{out, in} {
		fmt.Fprintf(w, "request_total{%s} %d\n", labels, 10*n)
		fmt.Fprintf(w, "response_total{%s,status_code=\"200\",classification=\"success\"} %d\n", labels, 9*n)
		fmt.Fprintf(w, "response_total{%s,status_code=\"503\",classification=\"failure\"} %d\n", labels, n)
		for _, b := range []struct {
			le    string
			count int
		}{{"5", 2}, {"10", 5}, {"50", 8}, {"100", 9}, {"+Inf", 9}} {
			fmt.Fprintf(w, "response_latency_ms_bucket{%s,classification=\"success\",le=%q} %d\n", labels, b.le, b.count*n)
		}
	}
	fmt.Fprintf(w, "tcp_open_total{direction=\"outbound\",tls=\"true\",dst_service=\"web.shop\"} %d\n", 3*n)
	fmt.Fprintf(w, "tcp_close_total{direction=\"outbound\",tls=\"true\",dst_service=\"web.shop\"} %d\n", 3*n-2)
	fmt.Fprintf(w, "tcp_open_total{direction=\"inbound\",tls=\"true\"} %d\n", 3*n)
	fmt.Fprintf(w, "tcp_close_total{direction=\"inbound\",tls=\"true\"} %d\n", 3*n-1)
}

type dashboard struct {
	Templating struct {
		List []struct {
			Name  string
			Query any
		}
	}
	Panels []struct {
		Title   string
		Targets []struct{ Expr string }
	}
}

func TestDashboardQueriesAnswerInPrometheus(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, grafana.Path))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", grafana.Path, err)
	}

	target := httptest.NewServer(&fakeProxy{})
	defer target.Close()
	p, err := prometheus.Start(t, time.Second, prometheus.Target{Addr: strings.TrimPrefix(target.URL, "http://"),
		Labels: map[string]string{"namespace": "shop", "pod": "web-1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.WaitScraped(ctx, 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// What the fake proxy's series make of each figure that does not depend on how long it has run:
	// the latency quantiles are interpolated in its buckets (p50: 5 + (4.5-2)/(5-2) * 5 ms).
	want := map[string][]float64{
		"Success rate": {0.9}, "Success rate per route": {0.9}, "Inbound success rate": {0.9},
		"Latency": {9.1667, 77.5, 95.5}, "Latency per route": {9.1667, 77.5, 95.5}, "Latency per backend (TrafficSplit)": {9.1667, 77.5, 95.5},
		"Success rate per backend (TrafficSplit)": {0.9},
		"Open TCP connections":                    {2}, "Inbound open TCP connections": {1}, "mTLS coverage of inbound requests": {1},
	}

	// The variables as Grafana fills them in for namespace shop and service web.shop.
	vars := strings.NewReplacer("$namespace", "shop", "$service", "web.shop", "$window", "1m")
	leftover := regexp.MustCompile(`\$\w+`)
	queries := 0
	for _, panel := range d.Panels {
		for i, target := range panel.Targets {
			queries++
			expr := vars.Replace(target.Expr)
			if v := leftover.FindString(expr); v != "" {
				t.Errorf("panel %q: variable %s is not one of the dashboard's: %s", panel.Title, v, target.Expr)
				continue
			}
			// rate() wants two samples in the window; until then a query may have no answer yet.
			var last string
			deadline := time.Now().Add(30 * time.Second)
			for {
				samples, err := p.Client.Query(ctx, expr, time.Time{})
				if err != nil {
					t.Errorf("panel %q: %v", panel.Title, err)
					break
				}
				if len(samples) > 0 && !math.IsNaN(samples[0].Value) && !math.IsInf(samples[0].Value, 0) {
					got := samples[0].Value
					t.Logf("%s: %v = %.4f", panel.Title, samples[0].Labels, got)
					if w, ok := want[panel.Title]; ok && math.Abs(got-w[i]) > 0.001 {
						t.Errorf("panel %q, query %d: %.4f, want %.4f", panel.Title, i, got, w[i])
					}
					if len(samples) != 1 {
						t.Errorf("panel %q: %d series, want the one of web.shop: %v", panel.Title, len(samples), samples)
					}
					break
				}
				last = fmt.Sprint(samples)
				if time.Now().After(deadline) {
					t.Errorf("panel %q: no figure from %s after 30s: %s", panel.Title, expr, last)
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	if queries < 10 {
		t.Errorf("the dashboard has %d queries", queries)
	}

	// Grafana's label_values(selector, label) lists the label's values on the selector's series.
	labelValues := regexp.MustCompile(`^label_values\((.*), (\w+)\)$`)
	for _, v := range d.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue
		}
		m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
		if m == nil {
			t.Errorf("variable %s: query %v is not label_values(selector, label)", v.Name, q["query"])
			continue
		}
		samples, err := p.Client.Query(ctx, vars.Replace(m[1]), time.Time{})
		if err != nil || len(samples) == 0 || samples[0].Labels[m[2]] == "" {
			t.Errorf("variable %s: %s has no series with %s: %v, %v", v.Name, m[1], m[2], samples, err)
		}
	}
}
