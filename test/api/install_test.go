package api_test

import (
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	})
})
