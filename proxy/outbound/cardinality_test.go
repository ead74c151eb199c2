package outbound_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestDistinctHostsDoNotGrowTheMetrics sends 100,000 requests, each with a Host of its own, through
// a client and a server proxy, and counts the series their /metrics output holds: the authorities
// beyond the bound (100 in pairFull) all fold into "other".
func TestDistinctHostsDoNotGrowTheMetrics(t *testing.T) {
	out, _, reg := pairWithMetrics(t, echoApp(t))
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", out)
	}}}
	const requests = 100_000
	for i := range requests {
		// One connection carries them all: the URL names one host, the Host header another each time.
		req, _ := http.NewRequest("GET", "http://server.shop.svc.cluster.local/", nil)
		req.Host = fmt.Sprintf("host-%d.example", i)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}

	w := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	series := map[string]int{}
	for _, l := range strings.Split(w.Body.String(), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, _, _ := strings.Cut(l, "{")
		series[name]++
	}
	// Per direction: 100 authorities and "other", each with one identity, status and class.
	const bound = 2 * (100 + 1)
	for _, name := range []string{"request_total", "response_total", "response_latency_ms_count"} {
		if series[name] == 0 || series[name] > bound {
			t.Errorf("%s has %d series after %d distinct hosts, want 1 to %d", name, series[name], requests, bound)
		}
	}
	if !strings.Contains(w.Body.String(), `request_total{authority="other",`) {
		t.Error(`no request was counted under authority="other"`)
	}
	t.Logf("series: request_total %d, response_total %d, response_latency_ms_bucket %d", series["request_total"], series["response_total"], series["response_latency_ms_bucket"])
}
