package controllers_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/test/framework"
)

func parseCerts(bundle string) []*x509.Certificate {
	certs, err := identity.ParseCertificates([]byte(bundle))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return certs
}

func parseCert(pemBytes []byte) *x509.Certificate {
	certs, err := identity.ParseCertificates(pemBytes)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return certs[0]
}

// selfSignedCA makes a CA such as a user would bring.
func selfSignedCA(cn string) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalECPrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

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

	It("has cert-manager issue the trust anchor and the issuer, and publishes the trust bundle", func() {
		mc := &meshv1.MeshConfig{}
		Expect(k8s.Get(ctx, key, mc)).To(Succeed())

		anchorSecret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustAnchorName}, anchorSecret)).To(Succeed())
		anchor := parseCert(anchorSecret.Data["tls.crt"])
		Expect(anchor.IsCA).To(BeTrue())
		Expect(anchor.Subject.CommonName).To(Equal("root.cluster.local"))

		issuerSecret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.IssuerName}, issuerSecret)).To(Succeed())
		issuer := parseCert(issuerSecret.Data["tls.crt"])
		Expect(issuer.IsCA).To(BeTrue())
		Expect(issuer.CheckSignatureFrom(anchor)).To(Succeed(), "the issuer is signed by the anchor")
		Expect(issuer.NotAfter.Sub(issuer.NotBefore)).To(BeNumerically("~", 48*time.Hour, time.Minute))

		bundle := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle)).To(Succeed())
		Expect(parseCerts(bundle.Data[meshv1.TrustBundleKey])).To(Equal([]*x509.Certificate{anchor}))

		Expect(mc.Status.Issuer.Fingerprint).To(Equal(identity.Fingerprint(issuer)))
		Expect(mc.Status.Issuer.NotAfter.Time).To(BeTemporally("==", issuer.NotAfter))
		Expect(mc.Status.TrustAnchors).To(HaveLen(1))
		Expect(mc.Status.TrustAnchors[0].Fingerprint).To(Equal(identity.Fingerprint(anchor)))
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
		Expect(k8s.Create(ctx, pod("meshed", "app", meshv1.ProxyContainerName))).To(Succeed())

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

	It("reports a trust anchor Secret that does not exist, and keeps the issuer in force", func() {
		mc := &meshv1.MeshConfig{}
		Expect(k8s.Get(ctx, key, mc)).To(Succeed())
		issuerBefore := mc.Status.Issuer.Fingerprint
		mc.Spec.Identity.TrustAnchor.SecretName = "my-anchor"
		Expect(k8s.Update(ctx, mc)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, key, mc)).To(Succeed())
			ready := meta.FindStatusCondition(mc.Status.Conditions, meshv1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.ObservedGeneration).To(Equal(mc.Generation))
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Message).To(ContainSubstring("my-anchor"))
		}, timeout, interval).Should(Succeed())
		Expect(mc.Status.Issuer.Fingerprint).To(Equal(issuerBefore))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.IssuerName}, &corev1.Secret{})).To(Succeed())
	})

	It("rotates to a trust anchor the user brings, keeping the old one in the bundle meanwhile", func() {
		bundle := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle)).To(Succeed())
		oldAnchors := parseCerts(bundle.Data[meshv1.TrustBundleKey])
		Expect(oldAnchors).To(HaveLen(1))

		certPEM, keyPEM := selfSignedCA("my anchor")
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: framework.SystemNamespace, Name: "my-anchor"},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM},
		})).To(Succeed())
		mine := parseCert(certPEM)

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle)).To(Succeed())
			g.Expect(parseCerts(bundle.Data[meshv1.TrustBundleKey])).To(Equal([]*x509.Certificate{mine, oldAnchors[0]}))
			issuerSecret := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.IssuerName}, issuerSecret)).To(Succeed())
			g.Expect(parseCert(issuerSecret.Data["tls.crt"]).CheckSignatureFrom(mine)).To(Succeed(), "the issuer is re-issued from the new anchor")
			g.Expect(conditionsAt(g, 3)).To(HaveKeyWithValue(meshv1.ConditionReady, metav1.ConditionTrue))
		}, timeout, interval).Should(Succeed())
	})

	It("deploys the multicluster gateway while spec.multicluster is enabled, and removes it when not", func() {
		gwKey := client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.GatewayName}
		setMulticluster := func(enabled bool) {
			Eventually(func(g Gomega) {
				mc := &meshv1.MeshConfig{}
				g.Expect(k8s.Get(ctx, key, mc)).To(Succeed())
				mc.Spec.Multicluster = meshv1.MulticlusterSpec{Enabled: enabled, GatewayPort: 4200}
				mc.Spec.Proxy.Image = "example.com/skein-proxy:test"
				g.Expect(k8s.Update(ctx, mc)).To(Succeed())
			}, timeout, interval).Should(Succeed())
		}
		setMulticluster(true)
		Eventually(func(g Gomega) {
			mc := &meshv1.MeshConfig{}
			g.Expect(k8s.Get(ctx, key, mc)).To(Succeed())
			owned := And(HaveLen(1), ContainElement(HaveField("UID", mc.UID)))

			sa := &corev1.ServiceAccount{}
			g.Expect(k8s.Get(ctx, gwKey, sa)).To(Succeed())
			g.Expect(sa.OwnerReferences).To(owned)

			deploy := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx, gwKey, deploy)).To(Succeed())
			g.Expect(deploy.OwnerReferences).To(owned)
			pod := deploy.Spec.Template.Spec
			g.Expect(pod.ServiceAccountName).To(Equal(meshv1.GatewayName))
			g.Expect(pod.Containers).To(HaveLen(1))
			proxy := pod.Containers[0]
			g.Expect(proxy.Image).To(Equal("example.com/skein-proxy:test"))
			g.Expect(proxy.Args).To(Equal([]string{"--mode=gateway", "--gateway-port", "4200"}))
			env := map[string]string{}
			for _, e := range proxy.Env {
				env[e.Name] = e.Value
				if e.ValueFrom != nil {
					env[e.Name] = e.ValueFrom.FieldRef.FieldPath
				}
			}
			g.Expect(env).To(HaveKeyWithValue("SKEIN_PROXY_MODE", "gateway"))
			g.Expect(env).To(HaveKeyWithValue("SKEIN_GATEWAY_PORT", "4200"))
			g.Expect(env).To(HaveKeyWithValue("POD_NAME", "metadata.name"))
			g.Expect(env).To(HaveKeyWithValue("POD_NAMESPACE", "metadata.namespace"))
			g.Expect(env).To(HaveKeyWithValue("SKEIN_IDENTITY_ADDR", "skein-identity.skein-system.svc:8086"))
			g.Expect(env).To(HaveKeyWithValue("SKEIN_XDS_ADDR", "skein-xds.skein-system.svc:8087"))
			g.Expect(env["SKEIN_TRUST_ANCHORS"]).To(ContainSubstring("BEGIN CERTIFICATE"))
			g.Expect(pod.Volumes).To(ContainElement(HaveField("VolumeSource.Projected.Sources",
				ContainElement(HaveField("ServiceAccountToken.Audience", "identity.mesh.skein.dev")))))

			svc := &corev1.Service{}
			g.Expect(k8s.Get(ctx, gwKey, svc)).To(Succeed())
			g.Expect(svc.OwnerReferences).To(owned)
			g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeLoadBalancer))
			g.Expect(svc.Spec.Selector).To(Equal(deploy.Spec.Selector.MatchLabels))
			g.Expect(deploy.Spec.Template.Labels).To(HaveKeyWithValue("app.kubernetes.io/name", meshv1.GatewayName))
			g.Expect(svc.Spec.Ports).To(HaveLen(2))
			g.Expect(svc.Spec.Ports[0]).To(And(HaveField("Name", "mc-gateway"), HaveField("Port", int32(4200))))
			g.Expect(svc.Spec.Ports[1]).To(And(HaveField("Name", "mc-probe"), HaveField("Port", int32(4191))))
		}, timeout, interval).Should(Succeed())

		setMulticluster(false)
		Eventually(func(g Gomega) {
			for _, obj := range []client.Object{&corev1.ServiceAccount{}, &appsv1.Deployment{}, &corev1.Service{}} {
				err := k8s.Get(ctx, gwKey, obj)
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T still there: %v", obj, err)
			}
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
