package api_test

import (
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// fields splits kubectl's table output into rows of columns.
func fields(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1))
	}
	return rows
}

var _ = Describe("kubectl", func() {
	It("shows a MeshStatus's health and golden metrics at a glance", func() {
		ms := &meshv1.MeshStatus{ObjectMeta: metav1.ObjectMeta{Name: "kubectl-columns"}}
		Expect(cluster.Client.Create(ctx, ms)).To(Succeed())
		ms.Status = meshv1.MeshStatusStatus{
			Health: meshv1.HealthHealthy, Meshed: "3/4", MeshedPods: 3, TotalPods: 4, MTLSCoverage: "100%",
			ConnectedProxies: 3,
			GoldenMetrics: meshv1.GoldenMetrics{
				SuccessRate: "99.50%", RPS: "12.5", LatencyP50: "2ms", LatencyP95: "6ms", LatencyP99: "9ms",
			},
		}
		Expect(cluster.Client.Status().Update(ctx, ms)).To(Succeed())

		out, err := cluster.Kubectl(ctx, nil, "get", "meshstatus", "kubectl-columns")
		Expect(err).NotTo(HaveOccurred())
		rows := fields(out)
		Expect(rows).To(HaveLen(2))
		Expect(rows[0]).To(Equal([]string{"NAME", "HEALTH", "MESHED", "MTLS", "SUCCESS", "RPS", "P99", "AGE"}))
		Expect(rows[1][:7]).To(Equal([]string{"kubectl-columns", "Healthy", "3/4", "100%", "99.50%", "12.5", "9ms"}))

		out, err = cluster.Kubectl(ctx, nil, "get", "ms", "kubectl-columns", "-o", "wide")
		Expect(err).NotTo(HaveOccurred())
		rows = fields(out)
		Expect(rows[0]).To(Equal([]string{"NAME", "HEALTH", "MESHED", "MTLS", "SUCCESS", "RPS", "P99", "AGE", "P50", "P95", "PROXIES", "CERT EXPIRY"}))
		Expect(rows[1][8:11]).To(Equal([]string{"2ms", "6ms", "3"}))
	})

	It("explains the TrafficSplit's fields from their doc comments", func() {
		out, err := cluster.Kubectl(ctx, nil, "explain", "trafficsplit.spec")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("KIND:       TrafficSplit"))
		Expect(out).To(MatchRegexp(`backends\s+<\[\]Object> -required-`))
		Expect(out).To(ContainSubstring("service is the apex Service"))
		Expect(out).To(ContainSubstring("matches send requests that match to one backend"))

		out, err = cluster.Kubectl(ctx, nil, "explain", "trafficsplit.spec.backends.weight")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("weight is the backend's share"))
	})

	It("lists every kind under the skein category and its short names", func() {
		out, err := cluster.Kubectl(ctx, nil, "api-resources", "--categories=skein", "-o", "wide")
		Expect(err).NotTo(HaveOccurred())
		for _, want := range []string{"meshconfigs +mc ", "trafficsplits +ts ", "links +lnk ", "externalworkloads +ew ", "meshstatuses +ms "} {
			Expect(out).To(MatchRegexp(want), "api-resources:\n%s", out)
		}
	})
})
