package api_test

import (
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/localcluster"
)

var _ = Describe("config/default", func() {
	It("installs the control plane with kubectl apply -k", func() {
		root, err := localcluster.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		out, err := cluster.Kubectl(ctx, nil, "apply", "--server-side", "-k", filepath.Join(root, "config", "default"))
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("deployment.apps/skein-controller serverside-applied"))

		deploy := &appsv1.Deployment{}
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Namespace: "skein-system", Name: "skein-controller"}, deploy)).To(Succeed())
		Expect(deploy.Spec.Template.Spec.ServiceAccountName).To(Equal("skein-controller"))

		svc := &corev1.Service{}
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Namespace: "skein-system", Name: "skein-identity"}, svc)).To(Succeed())
		Expect(labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploy.Spec.Template.Labels))).To(BeTrue(), "the identity Service selects the control plane's pods")
		Expect(svc.Spec.Ports[0].TargetPort.StrVal).To(Equal("identity"))

		binding := &rbacv1.ClusterRoleBinding{}
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Name: "skein-manager-rolebinding"}, binding)).To(Succeed())
		Expect(binding.RoleRef.Name).To(Equal("skein-manager-role"))
		role := &rbacv1.ClusterRole{}
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Name: "skein-manager-role"}, role)).To(Succeed())
		Expect(role.Rules).NotTo(BeEmpty())

		By("registering the webhooks at the webhook Service, with cert-manager's serving certificate")
		vwc := &admissionv1.ValidatingWebhookConfiguration{}
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Name: "skein-validating-webhook-configuration"}, vwc)).To(Succeed())
		// This suite's own webhook server is registered by envtest; the installed configuration
		// points at a Service with no pods here, so it must not outlive this check.
		DeferCleanup(cluster.Client.Delete, ctx, vwc)
		Expect(vwc.Annotations).To(HaveKeyWithValue("cert-manager.io/inject-ca-from", "skein-system/skein-webhook-serving-cert"))
		for _, w := range vwc.Webhooks {
			Expect(w.ClientConfig.Service).NotTo(BeNil())
			Expect(w.ClientConfig.Service.Namespace + "/" + w.ClientConfig.Service.Name).To(Equal("skein-system/skein-webhook-service"))
		}
		By("registering the pod injector failing open, and never for the control plane's namespace")
		mwc := &admissionv1.MutatingWebhookConfiguration{}
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Name: "skein-mutating-webhook-configuration"}, mwc)).To(Succeed())
		DeferCleanup(cluster.Client.Delete, ctx, mwc)
		Expect(mwc.Annotations).To(HaveKeyWithValue("cert-manager.io/inject-ca-from", "skein-system/skein-webhook-serving-cert"))
		Expect(mwc.Webhooks).To(HaveLen(1))
		injector := mwc.Webhooks[0]
		Expect(injector.ClientConfig.Service.Namespace + "/" + injector.ClientConfig.Service.Name).To(Equal("skein-system/skein-webhook-service"))
		Expect(*injector.FailurePolicy).To(Equal(admissionv1.Ignore))
		Expect(injector.NamespaceSelector.MatchExpressions).To(ConsistOf(metav1.LabelSelectorRequirement{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"skein-system", "kube-system"},
		}))
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Namespace: "skein-system", Name: "skein-webhook-service"}, svc)).To(Succeed())
		Expect(labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploy.Spec.Template.Labels))).To(BeTrue(), "the webhook Service selects the control plane's pods")
		cert := &unstructured.Unstructured{}
		cert.SetGroupVersionKind(schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"})
		Expect(cluster.Client.Get(ctx, client.ObjectKey{Namespace: "skein-system", Name: "skein-webhook-serving-cert"}, cert)).To(Succeed())
		dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		Expect(dnsNames).To(ContainElement("skein-webhook-service.skein-system.svc"))
		issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
		Expect(issuer).To(Equal("skein-webhook-selfsigned"), "the Certificate names the Issuer by its prefixed name")
		secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		Expect(deploy.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("Secret.SecretName", secret)), "the control plane mounts the serving certificate's Secret")
	})
})
