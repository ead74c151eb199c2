package api_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// What CEL cannot judge, because it needs the other TrafficSplits, the admission webhook refuses with
// a message that names the field; the stored splits stay as they were.
var _ = Describe("The TrafficSplit webhook", func() {
	var ns string
	split := func(name, apex string, backends ...string) *meshv1.TrafficSplit {
		ts := &meshv1.TrafficSplit{}
		ts.Name, ts.Namespace, ts.Spec.Service = name, ns, apex
		for _, b := range backends {
			ts.Spec.Backends = append(ts.Spec.Backends, meshv1.TrafficSplitBackend{Service: b, Weight: 50})
		}
		return ts
	}
	create := func(ts *meshv1.TrafficSplit) {
		GinkgoHelper()
		Expect(cluster.Client.Create(ctx, ts)).To(Succeed())
		DeferCleanup(cluster.Client.Delete, ctx, ts)
	}
	expectRefused := func(err error, says ...string) {
		GinkgoHelper()
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
		for _, s := range says {
			Expect(err.Error()).To(ContainSubstring(s))
		}
	}
	var n int
	BeforeEach(func() {
		n++
		ns = fmt.Sprintf("webhook-%d", n)
		Expect(cluster.Client.Create(ctx, namespace(ns))).To(Succeed())
	})

	It("refuses a backend in another namespace, and a namespace-qualified name of its own", func() {
		expectRefused(cluster.Client.Create(ctx, split("a", "web", "web-v1.other", "web-v2")),
			"spec.backends[0].service", "names Service web-v1 in namespace other", "the TrafficSplit's namespace "+ns)
		expectRefused(cluster.Client.Create(ctx, split("a", "web", "web-v1", "web-v2."+ns+".svc.cluster.local")),
			"spec.backends[1].service", `give the Service's name alone, "web-v2"`)
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, &meshv1.TrafficSplit{})).NotTo(Succeed())
	})

	It("refuses a second split of an apex, on create and on update, and lets the first be changed", func() {
		first := split("first", "web", "web-v1", "web-v2")
		create(first)
		expectRefused(cluster.Client.Create(ctx, split("second", "web", "web-v3", "web-v4")),
			"spec.service", `service "web" is already split by TrafficSplit first`)

		other := split("other", "api", "api-v1", "api-v2")
		create(other)
		stored := other.DeepCopy()
		other.Spec.Service = "web"
		expectRefused(cluster.Client.Update(ctx, other), "spec.service", "already split by TrafficSplit first")
		Expect(cluster.Client.Get(ctx, client.ObjectKeyFromObject(other), other)).To(Succeed())
		Expect(other.Spec).To(Equal(stored.Spec), "the refused update changed nothing")

		first.Spec.Backends[0].Weight = 0
		Expect(cluster.Client.Update(ctx, first)).To(Succeed(), "changing the split in force is allowed")

		By("judging each namespace apart")
		Expect(cluster.Client.Create(ctx, namespace(ns+"-b"))).To(Succeed())
		elsewhere := split("first", "web", "web-v1", "web-v2")
		elsewhere.Namespace = ns + "-b"
		create(elsewhere)
	})

	It("refuses a loop of splits and names the splits that form it", func() {
		create(split("web", "web", "web-v1", "web-v2"))
		expectRefused(cluster.Client.Create(ctx, split("back", "web-v1", "web-v3", "web")),
			"spec.backends[1].service", "sends the traffic of service web-v1 round in a loop",
			"web-v1 → web (this TrafficSplit)", "web → web-v1 (TrafficSplit web)")

		By("through a chain of three")
		create(split("v2", "web-v2", "web-v3", "web-v4"))
		out, err := cluster.Kubectl(ctx, []byte(`
apiVersion: mesh.skein.dev/v1alpha1
kind: TrafficSplit
metadata: {name: v4, namespace: `+ns+`}
spec:
  service: web-v4
  backends: [{service: web, weight: 1}]
`), "apply", "-f", "-")
		Expect(err).To(HaveOccurred(), out)
		Expect(err.Error()).To(ContainSubstring(`spec.backends[0].service: Invalid value: "web"`))
		Expect(err.Error()).To(ContainSubstring("web-v4 → web (this TrafficSplit), web → web-v2 (TrafficSplit web), web-v2 → web-v4 (TrafficSplit v2)"))

		By("allowing a chain that does not close")
		create(split("v4", "web-v4", "web-v5", "web-v6"))
	})
})

func namespace(name string) *corev1.Namespace {
	ns := &corev1.Namespace{}
	ns.Name = name
	return ns
}
