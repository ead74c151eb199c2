package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/controllers"
)

var _ = Describe("MeshConfig controller", Ordered, func() {
	const timeout, interval = 20 * time.Second, 100 * time.Millisecond
	key := client.ObjectKey{Name: meshv1.MeshConfigName}

	conditionsAt := func(g Gomega, generation int64) map[string]metav1.ConditionStatus {
		mc := &meshv1.MeshConfig{}
		g.Expect(k8s.Get(ctx, key, mc)).To(Succeed())
		got := map[string]metav1.ConditionStatus{}
		for _, c := range mc.Status.Conditions {
			g.Expect(c.ObservedGeneration).To(Equal(generation), "condition %s", c.Type)
			got[c.Type] = c.Status
		}
		g.Expect(mc.Status.ObservedGeneration).To(Equal(generation))
		return got
	}

	It("adds its finalizer, creates the MeshStatus and reports Ready", func() {
		Expect(k8s.Create(ctx, &meshv1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName}})).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(conditionsAt(g, 1)).To(Equal(map[string]metav1.ConditionStatus{
				meshv1.ConditionReady:       metav1.ConditionTrue,
				meshv1.ConditionAvailable:   metav1.ConditionTrue,
				meshv1.ConditionProgressing: metav1.ConditionFalse,
				meshv1.ConditionDegraded:    metav1.ConditionFalse,
			}))
			mc := &meshv1.MeshConfig{}
			g.Expect(k8s.Get(ctx, key, mc)).To(Succeed())
			g.Expect(mc.Finalizers).To(ContainElement(meshv1.MeshConfigFinalizer))
		}, timeout, interval).Should(Succeed())

		ms := &meshv1.MeshStatus{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshStatusName}, ms)).To(Succeed())
		Expect(metav1.GetControllerOf(ms)).NotTo(BeNil())
		Expect(metav1.GetControllerOf(ms).Kind).To(Equal("MeshConfig"))
	})

	It("records an event when the mesh becomes configured", func() {
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(k8s.List(ctx, events)).To(Succeed())
			var reasons []string
			for _, e := range events.Items {
				if e.Regarding.Kind == "MeshConfig" && e.Regarding.Name == meshv1.MeshConfigName {
					reasons = append(reasons, e.Reason)
				}
			}
			g.Expect(reasons).To(ContainElement(meshv1.ReasonReconciled))
		}, timeout, interval).Should(Succeed())
	})

	It("fills the MeshStatus with the control plane's health and the meshed pods", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "meshed-"}}
		Expect(k8s.Create(ctx, ns)).To(Succeed())
		pod := func(name string, containers ...string) *corev1.Pod {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name}}
			for _, c := range containers {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "example/" + c})
			}
			return p
		}
		Expect(k8s.Create(ctx, pod("plain", "app"))).To(Succeed())
		Expect(k8s.Create(ctx, pod("meshed", "app", controllers.ProxyContainerName))).To(Succeed())

		Eventually(func(g Gomega) {
			ms := &meshv1.MeshStatus{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: meshv1.MeshStatusName}, ms)).To(Succeed())
			g.Expect(ms.Status.Health).To(Equal(meshv1.HealthHealthy))
			g.Expect(ms.Status.Meshed).To(Equal("1/2"))
			g.Expect(ms.Status.Window).To(Equal("1m0s"))
			g.Expect(meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1.ConditionReady)).To(BeTrue())
		}, timeout, interval).Should(Succeed())
	})

	It("brings back a MeshStatus deleted by hand", func() {
		ms := &meshv1.MeshStatus{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshStatusName}}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ms), ms)).To(Succeed())
		uid := ms.UID
		Expect(k8s.Delete(ctx, ms)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ms), ms)).To(Succeed())
			g.Expect(ms.UID).NotTo(Equal(uid))
		}, timeout, interval).Should(Succeed())
	})

	It("reports conditions for the generation it observed", func() {
		mc := &meshv1.MeshConfig{}
		Expect(k8s.Get(ctx, key, mc)).To(Succeed())
		mc.Spec.Proxy.LogLevel = "debug"
		Expect(k8s.Update(ctx, mc)).To(Succeed())
		Expect(mc.Generation).To(BeEquivalentTo(2))
		Eventually(func(g Gomega) {
			g.Expect(conditionsAt(g, 2)).To(HaveKeyWithValue(meshv1.ConditionReady, metav1.ConditionTrue))
		}, timeout, interval).Should(Succeed())
	})

	It("removes the MeshStatus, then itself, when deleted", func() {
		Expect(k8s.Delete(ctx, &meshv1.MeshConfig{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshConfigName}})).To(Succeed())
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx, key, &meshv1.MeshConfig{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "MeshConfig still there: %v", err)
			list := &meshv1.MeshStatusList{}
			g.Expect(k8s.List(ctx, list)).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
		}, timeout, interval).Should(Succeed())
	})
})
