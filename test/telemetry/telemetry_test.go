package telemetry_test

import (
	"encoding/json"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/stat"
)

// The truth the server is told to serve, and the load the client sends.
const (
	// Every 20th request fails: 95% succeed.
	failEvery   = 20
	wantSuccess = 95.0
	// 60% wait 7ms, 37% 25ms, 3% 150ms: the median is 7ms, in the proxy's (5, 10] bucket; the
	// 95th percentile 25ms, in (20, 30]; the 99th 150ms, in (100, 200].
	latencies = "7ms:60,25ms:37,150ms:3"
	rate      = 50.0

	window         = 15 * time.Second
	scrapeInterval = 2 * time.Second
)

// bucket is the histogram bucket, in milliseconds, that holds each quantile's true value.
var buckets = map[string][2]float64{"p50": {5, 10}, "p95": {20, 30}, "p99": {100, 200}}

// expectTruth checks figures against the truth: success rate within 0.5 points, RPS within 5%,
// each quantile within the bucket of its true value.
func expectTruth(g Gomega, what string, success, rps float64, quantiles map[string]float64) {
	g.Expect(math.Abs(success-wantSuccess)).To(BeNumerically("<=", 0.5), "%s success rate %v%%, want %v%%", what, success, wantSuccess)
	g.Expect(math.Abs(rps-rate)/rate).To(BeNumerically("<=", 0.05), "%s RPS %v, want %v", what, rps, rate)
	for q, b := range buckets {
		g.Expect(quantiles[q]).To(BeNumerically(">=", b[0]), "%s %s %vms, want within (%v, %v]", what, q, quantiles[q], b[0], b[1])
		g.Expect(quantiles[q]).To(BeNumerically("<=", b[1]), "%s %s %vms, want within (%v, %v]", what, q, quantiles[q], b[0], b[1])
	}
}

// figures reads the API's decimal strings.
func figures(g Gomega, gm meshv1.GoldenMetrics) (success, rps float64, quantiles map[string]float64) {
	num := func(s, suffix string) float64 {
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, suffix), 64)
		g.Expect(err).NotTo(HaveOccurred(), "figure %q", s)
		return v
	}
	return num(gm.SuccessRate, "%"), num(gm.RPS, ""), map[string]float64{
		"p50": num(gm.LatencyP50, "ms"), "p95": num(gm.LatencyP95, "ms"), "p99": num(gm.LatencyP99, "ms"),
	}
}

func meshStatus(g Gomega, name string) *meshv1.MeshStatus {
	ms := &meshv1.MeshStatus{}
	g.Expect(fm.Client.Get(ctx, client.ObjectKey{Name: name}, ms)).To(Succeed())
	return ms
}

// runStat runs the built skein stat and parses its JSON.
func runStat(g Gomega, args ...string) []stat.Row {
	out, err := exec.Command(skein, append([]string{"stat", "--kubeconfig", fm.Kubeconfig, "-o", "json"}, args...)...).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "skein stat %v: %s", args, out)
	var rows []stat.Row
	g.Expect(json.Unmarshal(out, &rows)).To(Succeed(), "skein stat %v: %s", args, out)
	return rows
}

func rowNamed(g Gomega, rows []stat.Row, name string) stat.Row {
	for _, r := range rows {
		if r.Name == name {
			return r
		}
	}
	g.Expect(rows).To(ContainElement(HaveField("Name", name)))
	return stat.Row{}
}

func expectRow(g Gomega, what string, r stat.Row) {
	g.Expect(r.SuccessRate).NotTo(BeNil(), "%s has no success rate", what)
	g.Expect(r.RPS).NotTo(BeNil(), "%s has no RPS", what)
	g.Expect(r.LatencyP50).NotTo(BeNil())
	g.Expect(r.LatencyP95).NotTo(BeNil())
	g.Expect(r.LatencyP99).NotTo(BeNil())
	expectTruth(g, what, *r.SuccessRate, *r.RPS, map[string]float64{"p50": *r.LatencyP50, "p95": *r.LatencyP95, "p99": *r.LatencyP99})
}

var _ = Describe("Golden metrics", Ordered, func() {
	It("are computed over a short window", func() {
		mc := &meshv1.MeshConfig{}
		Expect(fm.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc)).To(Succeed())
		before := mc.DeepCopy()
		mc.Spec.Telemetry.Window = &metav1.Duration{Duration: window}
		mc.Spec.Telemetry.ScrapeInterval = &metav1.Duration{Duration: scrapeInterval}
		Expect(fm.Client.Patch(ctx, mc, client.MergeFrom(before))).To(Succeed())
	})

	It("match the truth of a known load, in MeshStatus, kubectl and skein stat; and go within a window of the proxy", func() {
		server, err := mesh.AddPodServing("web-1", "shop", "web", nil, "-latencies", latencies, "-fail-every", strconv.Itoa(failEvery))
		Expect(err).NotTo(HaveOccurred())
		webIP, err := mesh.Serve("web", "shop", server)
		Expect(err).NotTo(HaveOccurred())
		client, err := mesh.AddPod("client", "front", "client", nil)
		Expect(err).NotTo(HaveOccurred())
		const authority = "web.shop.svc.cluster.local:80"
		// The client's proxy knows the service once a request reaches the server through it.
		Eventually(func() string {
			out, _ := client.Run(0, "-mode", "http1", "-addr", webIP+":80")
			return out
		}).WithTimeout(30 * time.Second).Should(HavePrefix("200"))

		loadDone := make(chan string, 1)
		go func() {
			defer GinkgoRecover()
			out, err := client.Run(0, "-mode", "load", "-addr", webIP+":80", "-host", authority, "-rate", strconv.Itoa(int(rate)), "-duration", "50s")
			if err != nil {
				out += " " + err.Error()
			}
			loadDone <- out
		}()

		By("the namespace's MeshStatus: the server's workload and namespace, and the service as its client saw it")
		Eventually(func(g Gomega) {
			ms := meshStatus(g, "shop")
			g.Expect(ms.Spec.Namespace).To(Equal("shop"))
			s, rps, q := figures(g, ms.Status.GoldenMetrics)
			expectTruth(g, "namespace shop", s, rps, q)
			g.Expect(ms.Status.MTLSCoverage).To(Equal("100.00%"))
			g.Expect(ms.Status.Services).To(ContainElement(HaveField("Name", "web")))
			for _, svc := range ms.Status.Services {
				if svc.Name == "web" {
					s, rps, q := figures(g, svc.GoldenMetrics)
					expectTruth(g, "service web", s, rps, q)
					g.Expect(svc.Meshed).To(Equal("1/1"))
					g.Expect(svc.Routes).To(ContainElement(HaveField("Name", "default")))
				}
			}
			g.Expect(ms.Status.Workloads).To(ContainElement(HaveField("Name", "pod/web-1")))
			for _, w := range ms.Status.Workloads {
				if w.Name == "pod/web-1" {
					s, rps, q := figures(g, w.GoldenMetrics)
					expectTruth(g, "workload pod/web-1", s, rps, q)
				}
			}
		}).WithTimeout(40 * time.Second).WithPolling(time.Second).Should(Succeed())

		By("the cluster-wide MeshStatus")
		Eventually(func(g Gomega) {
			ms := meshStatus(g, meshv1.MeshStatusName)
			s, rps, q := figures(g, ms.Status.GoldenMetrics)
			expectTruth(g, "mesh", s, rps, q)
			g.Expect(ms.Status.ConnectedProxies).To(BeEquivalentTo(2))
			g.Expect(ms.Status.Namespaces).To(ContainElements(HaveField("Name", "shop"), HaveField("Name", "front")))
			g.Expect(ms.Status.LastUpdateTime).NotTo(BeNil())
		}).WithTimeout(20 * time.Second).WithPolling(time.Second).Should(Succeed())

		By("skein stat, from the MeshStatuses")
		Eventually(func(g Gomega) {
			expectRow(g, "skein stat services web", rowNamed(g, runStat(g, "services", "-n", "shop"), "web"))
			expectRow(g, "skein stat workloads pod/web-1", rowNamed(g, runStat(g, "workloads", "-n", "shop"), "pod/web-1"))
			expectRow(g, "skein stat namespaces shop", rowNamed(g, runStat(g, "namespaces"), "shop"))
		}).WithTimeout(20 * time.Second).WithPolling(time.Second).Should(Succeed())
		table, err := exec.Command(skein, "stat", "services", "-n", "shop", "--kubeconfig", fm.Kubeconfig).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(table))
		Expect(strings.Fields(strings.SplitN(string(table), "\n", 2)[0])).To(Equal(
			[]string{"NAMESPACE", "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"}))
		GinkgoWriter.Printf("skein stat services -n shop:\n%s", table)

		By("kubectl get meshstatus")
		out, err := fm.Kubectl(ctx, nil, "get", "meshstatus")
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("kubectl get meshstatus:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "HEALTH", "MESHED", "MTLS", "SUCCESS", "RPS", "P99", "AGE"}))
		var shop []string
		for _, l := range lines[1:] {
			if f := strings.Fields(l); f[0] == "shop" {
				shop = f
			}
		}
		Expect(shop).To(HaveLen(8), "kubectl shows no full row for shop:\n%s", out)
		Expect(shop[3]).To(Equal("100.00%"))
		Expect(shop[4]).To(HaveSuffix("%"))

		By("the client's proxy vanishes: its figures go within one window")
		Expect(client.StopProxy()).To(Succeed())
		stopped := time.Now()
		var goneAt time.Time
		Eventually(func(g Gomega) {
			ms := meshStatus(g, "shop")
			for _, svc := range ms.Status.Services {
				if svc.Name == "web" {
					g.Expect(svc.RPS).To(BeEmpty(), "the service still has figures")
				}
			}
			g.Expect(ms.Status.LastUpdateTime).NotTo(BeNil())
			goneAt = ms.Status.LastUpdateTime.Time
			front := meshStatus(g, "front")
			g.Expect(front.Status.ConnectedProxies).To(BeZero())
		}).WithTimeout(2 * window).WithPolling(200 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("the service's figures went %s after the client's proxy\n", goneAt.Sub(stopped).Round(time.Millisecond))
		// The control plane computed them gone no later than a window and a scrape round after.
		Expect(goneAt.Sub(stopped)).To(BeNumerically("<=", window+scrapeInterval+time.Second))
		Eventually(loadDone).WithTimeout(time.Minute).Should(Receive())
	})
})
