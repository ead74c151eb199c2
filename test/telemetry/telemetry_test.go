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
	"github.com/skeinmesh/skein/test/localmesh"
)

// The truth the server is told to serve, and the load the client sends.
const (
	// Every 20th request fails: 95% succeed.
	failEvery   = 20
	wantSuccess = 95.0
	// 90% wait 70ms, 8% 130ms, 2% 600ms: the median is 70ms, in the proxy's (50, 100] bucket;
	// the 95th percentile 130ms, in (100, 200]; the 99th 600ms, in (500, 1000]. Each quantile's
	// rank falls well inside its bucket's share, and each delay is tens of milliseconds below its
	// bucket's bound, so that requests delayed by a busy machine (the proxies time what the
	// application takes and their own work) do not move a quantile to the next bucket.
	latencies = "70ms:90,130ms:8,600ms:2"
	rate      = 50.0

	window         = 15 * time.Second
	scrapeInterval = 2 * time.Second
)

// bucket is the histogram bucket, in milliseconds, that holds each quantile's true value.
var buckets = map[string][2]float64{"p50": {50, 100}, "p95": {100, 200}, "p99": {500, 1000}}

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

		By("the soonest certificate expiry is the server's workload certificate's, not the issuer's")
		Eventually(func(g Gomega) {
			var want float64
			for _, l := range strings.Split(localmesh.Get(server.Admin+"/metrics"), "\n") {
				if v, ok := strings.CutPrefix(l, "identity_cert_expiration_timestamp_seconds "); ok {
					want, _ = strconv.ParseFloat(v, 64)
				}
			}
			g.Expect(want).NotTo(BeZero())
			ms := meshStatus(g, "shop")
			g.Expect(ms.Status.CertificateExpiry).NotTo(BeNil())
			g.Expect(ms.Status.CertificateExpiry.Unix()).To(BeEquivalentTo(int64(want)))
		}).WithTimeout(20 * time.Second).WithPolling(time.Second).Should(Succeed())

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

	It("show a TrafficSplit's weights in force beside the shares its backends took", func() {
		stable, err := mesh.AddPod("web-2", "shop", "web", nil)
		Expect(err).NotTo(HaveOccurred())
		canary, err := mesh.AddPod("web-canary-1", "shop", "web", nil)
		Expect(err).NotTo(HaveOccurred())
		webIP, err := mesh.Serve("web-split", "shop", stable, canary)
		Expect(err).NotTo(HaveOccurred())
		for name, pod := range map[string]*localmesh.Pod{"web-stable": stable, "web-canary": canary} {
			_, err := mesh.Serve(name, "shop", pod)
			Expect(err).NotTo(HaveOccurred())
		}
		split := &meshv1.TrafficSplit{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-split"},
			Spec: meshv1.TrafficSplitSpec{Service: "web-split", Backends: []meshv1.TrafficSplitBackend{
				{Service: "web-stable", Weight: 75}, {Service: "web-canary", Weight: 25},
			}},
		}
		Expect(fm.Client.Create(ctx, split)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(fm.Client.Get(ctx, client.ObjectKeyFromObject(split), split)).To(Succeed())
			g.Expect(split.Status.Backends).To(HaveLen(2))
		}).WithTimeout(20 * time.Second).Should(Succeed())

		caller, err := mesh.AddPod("client-2", "front", "client", nil)
		Expect(err).NotTo(HaveOccurred())
		const authority = "web-split.shop.svc.cluster.local:80"
		// Once the canary answers, the client's proxy has the split.
		Eventually(func() string {
			out, _ := caller.Run(0, "-mode", "load", "-addr", webIP+":80", "-host", authority, "-duration", "1s", "-workers", "1")
			return out
		}).WithTimeout(30 * time.Second).Should(ContainSubstring("web-canary-1="))
		go func() {
			defer GinkgoRecover()
			_, _ = caller.Run(0, "-mode", "load", "-addr", webIP+":80", "-host", authority, "-rate", "40", "-duration", "45s")
		}()

		// Each request picks a backend at random: over a window of about 600 requests a share is
		// within 6 points of its weight but for chance of less than one in a thousand.
		near := func(g Gomega, share string, want float64) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(share, "%"), 64)
			g.Expect(err).NotTo(HaveOccurred(), "observed share %q", share)
			g.Expect(math.Abs(v-want)).To(BeNumerically("<=", 6), "observed share %v%%, weight %v", v, want)
		}
		Eventually(func(g Gomega) {
			ms := meshStatus(g, "shop")
			var found bool
			for _, ts := range ms.Status.TrafficSplits {
				if ts.Name != "web-split" {
					continue
				}
				found = true
				g.Expect(ts.Apex).To(Equal("web-split"))
				g.Expect(ts.Backends).To(HaveLen(2))
				for _, b := range ts.Backends {
					want := map[string]float64{"web-stable": 75, "web-canary": 25}[b.Service]
					g.Expect(b.Weight).To(BeEquivalentTo(want))
					near(g, b.ObservedShare, want)
					g.Expect(b.SuccessRate).To(Equal("100.00%"))
				}
			}
			g.Expect(found).To(BeTrue(), "no figures for the split in %+v", ms.Status.TrafficSplits)

			rows := runStat(g, "trafficsplits", "-n", "shop")
			g.Expect(rows).To(HaveLen(2))
			for _, r := range rows {
				g.Expect(r.Name).To(Equal("web-split"))
				g.Expect(r.Apex).To(Equal("web-split"))
				g.Expect(r.Weight).NotTo(BeNil())
				g.Expect(r.Observed).NotTo(BeNil())
				g.Expect(math.Abs(*r.Observed - float64(*r.Weight))).To(BeNumerically("<=", 6))
			}
		}).WithTimeout(40 * time.Second).WithPolling(time.Second).Should(Succeed())
		table, err := exec.Command(skein, "stat", "ts", "-n", "shop", "--kubeconfig", fm.Kubeconfig).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(table))
		GinkgoWriter.Printf("skein stat ts -n shop:\n%s", table)
		Expect(strings.Fields(strings.SplitN(string(table), "\n", 2)[0])).To(HaveExactElements(
			"NAMESPACE", "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN", "APEX", "BACKEND", "WEIGHT", "OBSERVED"))
	})

	It("stay bounded: 100,000 distinct Host headers do not grow the proxies' metrics beyond the bound", func() {
		server, err := mesh.AddPod("web-many", "shop", "web", nil)
		Expect(err).NotTo(HaveOccurred())
		ip, err := mesh.Serve("web-many", "shop", server)
		Expect(err).NotTo(HaveOccurred())
		caller, err := mesh.AddPod("client-many", "front", "client", nil)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() string {
			out, _ := caller.Run(0, "-mode", "http1", "-addr", ip+":80")
			return out
		}).WithTimeout(30 * time.Second).Should(HavePrefix("200"))

		// Two runs of 50,000, each well inside the minute a run may take, with hosts of their own
		// ("r<n>.a.web-many..." and "r<n>.b.web-many...").
		const requests = 100_000
		for _, run := range []string{"a", "b"} {
			out, err := caller.Run(0, "-mode", "load", "-addr", ip+":80", "-host", run+".web-many.shop.svc.cluster.local:80",
				"-distinct-hosts", "-requests", strconv.Itoa(requests/2), "-workers", "8", "-duration", "55s")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(HavePrefix("ok=%d failed=0", requests/2))
		}

		// The proxies' default bound is 100 authorities; the others are "other". Each proxy saw one
		// peer identity, one status and one route here (and the first request's own authority).
		const bound = 100 + 1 + 1
		for _, p := range []*localmesh.Pod{caller, server} {
			series := map[string]int{}
			metrics := localmesh.Get(p.Admin + "/metrics")
			for _, l := range strings.Split(metrics, "\n") {
				if name, _, ok := strings.Cut(l, "{"); ok && !strings.HasPrefix(l, "#") {
					series[name]++
				}
			}
			GinkgoWriter.Printf("%s's proxy after %d distinct hosts: request_total %d series, response_total %d, response_latency_ms_bucket %d\n",
				p.Name, requests, series["request_total"], series["response_total"], series["response_latency_ms_bucket"])
			for _, name := range []string{"request_total", "response_total", "response_latency_ms_count"} {
				Expect(series[name]).To(And(BeNumerically(">", 0), BeNumerically("<=", bound)), "%s's %s", p.Name, name)
			}
			Expect(metrics).To(ContainSubstring(`authority="other"`))
		}
	})
})
