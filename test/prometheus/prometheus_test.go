package prometheus_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/skeinmesh/skein/test/prometheus"
)

// TestScrapes starts the real Prometheus on a target whose counter the test sets, and reads it back
// with the target's labels through the query client.
func TestScrapes(t *testing.T) {
	g := NewWithT(t)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "# TYPE request_total counter")
		fmt.Fprintln(w, `request_total{direction="inbound"} 42`)
	}))
	defer target.Close()
	addr := strings.TrimPrefix(target.URL, "http://")
	p, err := prometheus.Start(t, time.Second, prometheus.Target{Addr: addr, Labels: map[string]string{"namespace": "shop", "pod": "web-1"}})
	g.Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()
	g.Expect(p.WaitScraped(ctx, 1, 30*time.Second)).To(Succeed())

	samples, err := p.Client.Query(ctx, `request_total`, time.Time{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(samples).To(HaveLen(1))
	g.Expect(samples[0].Value).To(Equal(42.0))
	g.Expect(samples[0].Labels).To(Equal(map[string]string{"__name__": "request_total", "direction": "inbound",
		"namespace": "shop", "pod": "web-1", "instance": addr, "job": prometheus.Job}))

	_, err = p.Client.Query(ctx, `sum(`, time.Time{})
	g.Expect(err).To(MatchError(ContainSubstring("bad_data")))

	g.Expect(p.Stop()).To(Succeed())
	_, err = p.Client.Query(ctx, `up`, time.Time{})
	g.Expect(err).To(MatchError(ContainSubstring("unreachable")))
}

func TestBadInterval(t *testing.T) {
	_, err := prometheus.Start(t, 100*time.Millisecond)
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("at least 1s")))
}
