package promql

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/skeinmesh/skein/internal/stat"
)

// fakePrometheus answers each query whose text starts with a key of answers with that vector, and
// every other query with an empty one.
func fakePrometheus(t *testing.T, answers map[string]string) *Client {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.FormValue("query")
		result := ""
		for prefix, a := range answers {
			if strings.HasPrefix(q, prefix) {
				result = a
			}
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, result)
	}))
	t.Cleanup(s.Close)
	c, err := NewClient(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sample(labels, value string) string {
	return fmt.Sprintf(`{"metric":{%s},"value":[1,%q]}`, labels, value)
}

type cluster struct{}

func (cluster) Services(context.Context, string) ([]ServiceEndpoints, error) {
	return []ServiceEndpoints{{Namespace: "shop", Name: "web", Meshed: "2/2"}, {Namespace: "shop", Name: "idle"}}, nil
}

func (cluster) Workloads(context.Context, string) ([]WorkloadPods, error) {
	return []WorkloadPods{{Namespace: "shop", Name: "deployment/web", Pods: []string{"web-1"}, Meshed: "1/1"},
		{Namespace: "shop", Name: "deployment/idle", Meshed: "0/0"}}, nil
}

func (cluster) TrafficSplits(context.Context, string) ([]TrafficSplit, error) {
	return []TrafficSplit{{Namespace: "shop", Name: "web", Apex: "web", Backends: []Backend{{"web-stable", 90}, {"web-canary", 10}}}}, nil
}

func TestSourceServices(t *testing.T) {
	g := NewWithT(t)
	web, api := `"dst_service":"web.shop"`, `"dst_service":"api.shop"`
	c := fakePrometheus(t, map[string]string{
		"(sum by (dst_service)":                        sample(web, "0.995") + "," + sample(api, "NaN"),
		"sum by (dst_service) (rate":                   sample(web, "50") + "," + sample(api, "0"),
		"histogram_quantile(0.5,":                      sample(web, "4.5"),
		"histogram_quantile(0.95,":                     sample(web, "18"),
		"histogram_quantile(0.99,":                     sample(web, "+Inf"),
		"sum by (dst_service) (tcp_open_total":         sample(web, "2.9999"),
		"(sum by (namespace) (increase(request_total{": sample(`"namespace":"shop"`, "1"),
	})
	rows, err := (&Source{Client: c}).Rows(context.Background(), stat.Services, "shop")
	g.Expect(err).NotTo(HaveOccurred())
	webRow := stat.Row{Namespace: "shop", Name: "web", SuccessRate: ptr(99.5), RPS: ptr(50.0), LatencyP50: ptr(4.5), LatencyP95: ptr(18.0), TCPConnections: ptr(int64(3))}
	g.Expect(rows).To(Equal([]stat.Row{{Namespace: "shop", Name: "api", RPS: ptr(0.0)}, webRow}))

	// With the cluster, every Service has a row with its meshed endpoints, and traffic to a
	// Service the cluster no longer has keeps its own.
	rows, err = (&Source{Client: c, Cluster: cluster{}}).Rows(context.Background(), stat.Services, "shop")
	g.Expect(err).NotTo(HaveOccurred())
	webRow.Meshed = "2/2"
	g.Expect(rows).To(Equal([]stat.Row{{Namespace: "shop", Name: "api", RPS: ptr(0.0)}, {Namespace: "shop", Name: "idle"}, webRow}))
}

func TestSourceNamespaces(t *testing.T) {
	g := NewWithT(t)
	c := fakePrometheus(t, map[string]string{"sum by (namespace) (rate": sample(`"namespace":"shop"`, "5") + "," + sample(`"namespace":"gone"`, "1")})
	rows, err := (&Source{Client: c, Cluster: cluster{}}).Rows(context.Background(), stat.Namespaces, "")
	g.Expect(err).NotTo(HaveOccurred())
	// shop has 1 meshed pod of 1 (web) and none of idle's.
	g.Expect(rows).To(Equal([]stat.Row{{Name: "gone", RPS: ptr(1.0)}, {Name: "shop", Meshed: "1/1", RPS: ptr(5.0)}}))
}

func TestSourceWorkloads(t *testing.T) {
	g := NewWithT(t)
	c := fakePrometheus(t, map[string]string{
		"(sum(increase(response_total{":                                              sample("", "1"),
		`sum(rate(response_total{direction="inbound",namespace="shop",pod=~"web-1"}`: sample("", "5"),
		"(sum(increase(request_total{":                                               sample("", "0.5"),
	})
	rows, err := (&Source{Client: c, Cluster: cluster{}}).Rows(context.Background(), stat.Workloads, "shop")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rows).To(Equal([]stat.Row{
		{Namespace: "shop", Name: "deployment/web", Meshed: "1/1", SuccessRate: ptr(100.0), RPS: ptr(5.0), MTLS: ptr(50.0)},
		{Namespace: "shop", Name: "deployment/idle", Meshed: "0/0"},
	}))
}

func TestSourcePodsWithoutCluster(t *testing.T) {
	g := NewWithT(t)
	c := fakePrometheus(t, map[string]string{"sum by (namespace, pod) (rate": sample(`"namespace":"shop","pod":"web-1"`, "5")})
	rows, err := (&Source{Client: c}).Rows(context.Background(), stat.Workloads, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rows).To(Equal([]stat.Row{{Namespace: "shop", Name: "pod/web-1", RPS: ptr(5.0)}}))
}

func TestSourceTrafficSplits(t *testing.T) {
	g := NewWithT(t)
	c := fakePrometheus(t, map[string]string{
		"sum by (dst_backend) (rate": sample(`"dst_backend":"web-stable.shop"`, "45") + "," + sample(`"dst_backend":"web-canary.shop"`, "5"),
	})
	rows, err := (&Source{Client: c, Cluster: cluster{}}).Rows(context.Background(), stat.TrafficSplits, "shop")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rows).To(Equal([]stat.Row{
		{Namespace: "shop", Name: "web", Apex: "web", Backend: "web-stable", Weight: ptr(int32(90)), RPS: ptr(45.0), Observed: ptr(90.0)},
		{Namespace: "shop", Name: "web", Apex: "web", Backend: "web-canary", Weight: ptr(int32(10)), RPS: ptr(5.0), Observed: ptr(10.0)},
	}))

	_, err = (&Source{Client: c}).Rows(context.Background(), stat.TrafficSplits, "shop")
	g.Expect(err).To(MatchError(ContainSubstring("need the cluster's TrafficSplits")))
}

func TestSourceErrors(t *testing.T) {
	g := NewWithT(t)
	s := &Source{Client: fakePrometheus(t, nil), Window: 10}
	_, err := s.Rows(context.Background(), stat.Services, "")
	g.Expect(err).To(MatchError(ContainSubstring("window 10ns")))
	s.Window = 0
	_, err = s.Rows(context.Background(), "pods", "")
	g.Expect(err).To(MatchError(ContainSubstring(`unknown kind "pods"`)))
}
