package controllers_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

var _ = Describe("TrafficSplit controller", func() {
	const timeout, interval = 20 * time.Second, 100 * time.Millisecond
	var ns string

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "split-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
	})

	service := func(name string) {
		ExpectWithOffset(1, k8s.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		})).To(Succeed())
	}
	// endpoints makes an EndpointSlice for service with one endpoint per readiness given; nil is
	// unset, which counts as ready.
	endpoints := func(service string, ready ...*bool) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: service + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		}
		for i, r := range ready {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{fmt.Sprintf("10.0.0.%d", i+1)}, Conditions: discoveryv1.EndpointConditions{Ready: r},
			})
		}
		ExpectWithOffset(1, k8s.Create(ctx, s)).To(Succeed())
		return s
	}
	split := func(name, apex string, weights ...any) *meshv1.TrafficSplit {
		ts := &meshv1.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: meshv1.TrafficSplitSpec{Service: apex}}
		for i := 0; i < len(weights); i += 2 {
			ts.Spec.Backends = append(ts.Spec.Backends, meshv1.TrafficSplitBackend{Service: weights[i].(string), Weight: int32(weights[i+1].(int))})
		}
		ExpectWithOffset(1, k8s.Create(ctx, ts)).To(Succeed())
		return ts
	}
	// observed is the split's status once it describes the split's generation.
	observed := func(g Gomega, name string) meshv1.TrafficSplitStatus {
		ts := &meshv1.TrafficSplit{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ts)).To(Succeed())
		g.Expect(ts.Status.ObservedGeneration).To(Equal(ts.Generation))
		return ts.Status
	}
	ready := func(g Gomega, st meshv1.TrafficSplitStatus) metav1.Condition {
		c := meta.FindStatusCondition(st.Conditions, meshv1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return *c
	}
	type backends = []meshv1.TrafficSplitBackendStatus
	// expectStatus waits for the split's Ready condition to have reason (its status follows: True
	// only when Reconciled) and a message holding every part given, and for status.backends to be want.
	expectStatus := func(name, reason string, want backends, message ...string) {
		status := metav1.ConditionFalse
		if reason == meshv1.ReasonReconciled {
			status = metav1.ConditionTrue
		}
		EventuallyWithOffset(1, func(g Gomega) {
			st := observed(g, name)
			c := ready(g, st)
			g.Expect(c.Status).To(Equal(status), c.Message)
			g.Expect(c.Reason).To(Equal(reason), c.Message)
			for _, part := range message {
				g.Expect(c.Message).To(ContainSubstring(part))
			}
			g.Expect(st.Backends).To(Equal(want))
		}, timeout, interval).Should(Succeed())
	}
	// events are the split's events as "Type Reason: note".
	events := func(g Gomega, name string) []string {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "TrafficSplit" && e.Regarding.Name == name {
				out = append(out, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Note))
			}
		}
		return out
	}

	It("puts a 90/10 split whose backends both serve in force", func() {
		service("web")
		service("web-stable")
		service("web-canary")
		endpoints("web-stable", nil, ptr.To(true), ptr.To(false))
		endpoints("web-canary", ptr.To(true))
		split("web", "web", "web-stable", 90, "web-canary", 10)

		expectStatus("web", meshv1.ReasonReconciled, backends{
			{Service: "web-stable", Weight: 90, Endpoints: 2},
			{Service: "web-canary", Weight: 10, Endpoints: 1},
		}, "web-stable 90, web-canary 10")
		Eventually(func(g Gomega) {
			g.Expect(meta.IsStatusConditionFalse(observed(g, "web").Conditions, meshv1.ConditionDegraded)).To(BeTrue())
			g.Expect(events(g, "web")).To(ConsistOf("Normal WeightsChanged: web-stable 90, web-canary 10"))
		}, timeout, interval).Should(Succeed())
	})

	It("gives a backend without ready endpoints weight 0 and names it, until endpoints appear", func() {
		service("web")
		service("web-stable")
		service("web-canary")
		endpoints("web-stable", ptr.To(true))
		canary := endpoints("web-canary", ptr.To(false))
		split("web", "web", "web-stable", 90, "web-canary", 10)

		expectStatus("web", meshv1.ReasonBackendUnavailable, backends{
			{Service: "web-stable", Weight: 90, Endpoints: 1},
			{Service: "web-canary", Weight: 0, Endpoints: 0},
		}, "web-canary (no ready endpoints)")
		Eventually(func(g Gomega) {
			st := observed(g, "web")
			g.Expect(ready(g, st).Message).NotTo(ContainSubstring("web-stable ("))
			g.Expect(meta.IsStatusConditionTrue(st.Conditions, meshv1.ConditionDegraded)).To(BeTrue())
			g.Expect(events(g, "web")).To(ContainElements(
				"Warning BackendUnavailable: Backend web-canary cannot serve: no ready endpoints",
				"Normal WeightsChanged: web-stable 90, web-canary 0",
			))
		}, timeout, interval).Should(Succeed())

		By("the canary's endpoint becoming ready")
		canary.Endpoints[0].Conditions.Ready = ptr.To(true)
		Expect(k8s.Update(ctx, canary)).To(Succeed())
		expectStatus("web", meshv1.ReasonReconciled, backends{
			{Service: "web-stable", Weight: 90, Endpoints: 1},
			{Service: "web-canary", Weight: 10, Endpoints: 1},
		})
		Eventually(func(g Gomega) {
			g.Expect(events(g, "web")).To(ContainElements(
				"Normal WeightsChanged: web-stable 90, web-canary 10",
				"Normal BackendAvailable: Backend web-canary serves again with 1 ready endpoints",
			))
		}, timeout, interval).Should(Succeed())
	})

	It("names a backend whose Service is missing, and says when no backend can serve", func() {
		service("web")
		service("web-stable")
		stable := endpoints("web-stable", ptr.To(true))
		split("web", "web", "web-stable", 50, "web-missing", 50)
		expectStatus("web", meshv1.ReasonBackendUnavailable, backends{
			{Service: "web-stable", Weight: 50, Endpoints: 1},
			{Service: "web-missing", Weight: 0},
		}, "web-missing (Service does not exist)")

		By("the last serving backend losing its endpoints: the apex serves")
		stable.Endpoints = nil
		Expect(k8s.Update(ctx, stable)).To(Succeed())
		expectStatus("web", meshv1.ReasonNoBackendAvailable, backends{
			{Service: "web-stable", Weight: 0},
			{Service: "web-missing", Weight: 0},
		}, "web-stable (no ready endpoints)", "web-missing (Service does not exist)", "apex web's own endpoints")

		By("the missing Service appearing, with an endpoint")
		service("web-missing")
		endpoints("web-missing", nil)
		expectStatus("web", meshv1.ReasonBackendUnavailable, backends{
			{Service: "web-stable", Weight: 0},
			{Service: "web-missing", Weight: 50, Endpoints: 1},
		}, "web-stable (no ready endpoints)")
	})

	It("reports an apex Service that does not exist, until it does", func() {
		service("web-stable")
		endpoints("web-stable", ptr.To(true))
		split("web", "web", "web-stable", 1)
		expectStatus("web", meshv1.ReasonApexMissing, nil, "apex Service web does not exist")

		service("web")
		expectStatus("web", meshv1.ReasonReconciled, backends{{Service: "web-stable", Weight: 1, Endpoints: 1}})
	})

	It("marks the newer of two splits of one apex Superseded, and puts it in force when the older goes", func() {
		service("web")
		service("web-stable")
		endpoints("web-stable", ptr.To(true))
		inForce := backends{{Service: "web-stable", Weight: 1, Endpoints: 1}}
		// The older is named after the newer so that only the creation times can order them right.
		older := split("z-older", "web", "web-stable", 1)
		expectStatus("z-older", meshv1.ReasonReconciled, inForce)
		time.Sleep(1100 * time.Millisecond) // creation timestamps have a one-second resolution
		// The webhook refuses a second split of an apex; one can still exist if it was made while
		// the webhook did not cover its namespace, which this test arranges.
		vwc := &admissionv1.ValidatingWebhookConfiguration{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "validating-webhook-configuration"}, vwc)).To(Succeed())
		covered := vwc.DeepCopy()
		for i := range vwc.Webhooks {
			vwc.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{ns}},
			}}
		}
		Expect(k8s.Update(ctx, vwc)).To(Succeed())
		newer := &meshv1.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a-newer"}, Spec: meshv1.TrafficSplitSpec{
			Service: "web", Backends: []meshv1.TrafficSplitBackend{{Service: "web-stable", Weight: 1}}}}
		// The API server takes the new selector into account once its informer sees it.
		Eventually(func() error { return k8s.Create(ctx, newer) }, timeout, interval).Should(Succeed())
		covered.ResourceVersion = vwc.ResourceVersion
		Expect(k8s.Update(ctx, covered)).To(Succeed())

		expectStatus("a-newer", meshv1.ReasonSuperseded, nil, "TrafficSplit z-older")
		Consistently(func(g Gomega) {
			g.Expect(ready(g, observed(g, "z-older")).Status).To(Equal(metav1.ConditionTrue))
		}, time.Second, interval).Should(Succeed())

		Expect(k8s.Delete(ctx, older)).To(Succeed())
		expectStatus("a-newer", meshv1.ReasonReconciled, inForce)
	})
})
