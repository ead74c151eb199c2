package inject_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/netns"
)

// proxies counts the proxy containers of a pod.
func proxies(pod *corev1.Pod) int {
	n := 0
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == meshv1.ProxyContainerName {
			n++
		}
	}
	return n
}

// TestWebhook checks what the pod injector does to pods the real API server admits, that
// `skein inject` output applied comes out the same, and that with the injector down pods start
// unmeshed, the control plane's own included.
func TestWebhook(t *testing.T) {
	e := newEnv(t)
	e.namespace(t, "shop", map[string]string{meshv1.InjectAnnotation: inject.Enabled}, "web")
	e.namespace(t, "plain", nil, "web")
	enabled := map[string]string{meshv1.InjectAnnotation: inject.Enabled}

	t.Run("which pods are injected", func(t *testing.T) {
		hostNetwork := workloadPod("shop", "host", "web", nil)
		hostNetwork.Spec.HostNetwork = true
		tests := []struct {
			name string
			pod  *corev1.Pod
			want bool
		}{
			{"in a namespace that asks", workloadPod("shop", "web-a", "web", nil), true},
			{"opted out in a namespace that asks", workloadPod("shop", "optout", "web", map[string]string{meshv1.InjectAnnotation: inject.Disabled}), false},
			{"a pod that asks, in a namespace that does not", workloadPod("plain", "asks", "web", enabled), true},
			{"in a namespace that does not ask", workloadPod("plain", "web-b", "web", nil), false},
			{"on the host's network", hostNetwork, false},
			{"in the control plane's namespace, even asking", workloadPod(framework.SystemNamespace, "cp", "default", enabled), false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := e.create(t, tt.pod)
				if meshv1.IsMeshed(got) != tt.want {
					t.Errorf("meshed = %v, want %v: init containers %v, containers %v", meshv1.IsMeshed(got), tt.want, got.Spec.InitContainers, got.Spec.Containers)
				}
				if tt.want && got.Annotations["prometheus.io/port"] != "4191" {
					t.Errorf("annotations %v lack Prometheus's scrape settings", got.Annotations)
				}
			})
		}
	})

	t.Run("re-submitting an injected pod does not inject it twice", func(t *testing.T) {
		g := NewWithT(t)
		first := e.create(t, workloadPod("shop", "first", "web", nil))
		g.Expect(proxies(first)).To(Equal(1))
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "again", Labels: first.Labels, Annotations: first.Annotations},
			Spec: *first.Spec.DeepCopy()}
		again = e.create(t, again)
		g.Expect(proxies(again)).To(Equal(1))
		g.Expect(again.Spec.InitContainers).To(Equal(first.Spec.InitContainers))
		g.Expect(again.Spec.Volumes).To(Equal(first.Spec.Volumes))
		g.Expect(again.Annotations).To(Equal(first.Annotations))
	})

	t.Run("a bad override annotation is refused, naming it", func(t *testing.T) {
		g := NewWithT(t)
		for annotation, value := range map[string]string{
			inject.ProxyMemoryLimitAnnotation: "lots",
			inject.SkipInboundPortsAnnotation: "80,99999",
			inject.ConfigPrefix + "proxy-cpu": "1",
			meshv1.InjectAnnotation:           "yes",
		} {
			pod := workloadPod("shop", "bad", "web", map[string]string{annotation: value})
			err := e.Client.Create(e.ctx, pod)
			g.Expect(err).To(MatchError(ContainSubstring(annotation)), "annotation %s: %s", annotation, value)
		}
	})

	t.Run("skein inject output, applied, is what the webhook makes of the same input", func(t *testing.T) {
		g := NewWithT(t)
		skein := netns.Build(t, "github.com/skeinmesh/skein/cmd/skein")
		tmpl := workloadPod("shop", "cli", "web", nil)
		input := "apiVersion: v1\nkind: Pod\n" + toYAML(t, map[string]any{"metadata": tmpl.ObjectMeta, "spec": tmpl.Spec}) +
			"---\napiVersion: apps/v1\nkind: Deployment\n" + toYAML(t, map[string]any{
			"metadata": map[string]any{"name": "cli", "namespace": "shop"},
			"spec": map[string]any{"selector": map[string]any{"matchLabels": tmpl.Labels},
				"template": map[string]any{"metadata": map[string]any{"labels": tmpl.Labels}, "spec": tmpl.Spec}},
		})
		file := filepath.Join(t.TempDir(), "in.yaml")
		g.Expect(os.WriteFile(file, []byte(input), 0o644)).To(Succeed())
		cmd := exec.Command(skein, "inject", "--kubeconfig", e.Kubeconfig, "-f", file)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		g.Expect(err).NotTo(HaveOccurred(), stderr.String())
		g.Expect(stderr.String()).To(ContainSubstring("pod/cli injected"))
		g.Expect(stderr.String()).To(ContainSubstring("deployment/cli injected"))
		_, err = e.Kubectl(e.ctx, out, "apply", "--server-side", "-f", "-")
		g.Expect(err).NotTo(HaveOccurred())

		fromCLI := e.admitted(t, tmpl)
		hook := workloadPod("shop", "hook", "web", nil)
		fromWebhook := e.create(t, hook)
		g.Expect(proxies(fromCLI)).To(Equal(1))
		g.Expect(fromCLI.Spec).To(Equal(fromWebhook.Spec))
		g.Expect(fromCLI.Annotations).To(Equal(fromWebhook.Annotations))

		// A pod made from the Deployment's stored template, as its ReplicaSet would make it, is the
		// pod the webhook makes from the template given.
		deploy := &appsv1.Deployment{}
		g.Expect(e.Client.Get(e.ctx, client.ObjectKey{Namespace: "shop", Name: "cli"}, deploy)).To(Succeed())
		fromTemplate := e.create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "from-template",
			Labels: deploy.Spec.Template.Labels, Annotations: deploy.Spec.Template.Annotations}, Spec: deploy.Spec.Template.Spec})
		g.Expect(fromTemplate.Spec).To(Equal(fromWebhook.Spec))
	})

	t.Run("an empty MeshConfig spec, defaulted by the API server, injects as one left empty", func(t *testing.T) {
		// inject fills what the CRD defaults, for MeshConfigs read from files: the two must agree.
		g := NewWithT(t)
		mc := &meshv1.MeshConfig{}
		g.Expect(e.Client.Get(e.ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc)).To(Succeed())
		mc.Spec = meshv1.MeshConfigSpec{}
		g.Expect(e.Client.Update(e.ctx, mc, client.DryRunAll)).To(Succeed())
		g.Expect(mc.Spec.Proxy.Image).NotTo(BeEmpty(), "the dry run returns the spec defaulted")
		injected := func(spec meshv1.MeshConfigSpec) *corev1.Pod {
			pod := workloadPod("shop", "defaults", "web", nil)
			c := inject.Config{Mesh: spec, ControlPlaneNamespace: framework.SystemNamespace, TrustAnchors: "anchors"}
			_, err := c.Inject(&pod.ObjectMeta, &pod.Spec, inject.Namespace{Name: "shop", Annotations: enabled})
			g.Expect(err).NotTo(HaveOccurred())
			return pod
		}
		g.Expect(injected(meshv1.MeshConfigSpec{})).To(Equal(injected(mc.Spec)))
	})

	t.Run("with the injector down, pods start unmeshed, the control plane's own included", func(t *testing.T) {
		g := NewWithT(t)
		e.stopControlPlane(t)
		down := e.create(t, workloadPod("shop", "while-down", "web", nil))
		g.Expect(meshv1.IsMeshed(down)).To(BeFalse())

		controller := controllerPod(t)
		g.Expect(e.Client.Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Namespace: controller.Namespace, Name: controller.Spec.ServiceAccountName}})).To(Succeed())
		created := e.create(t, controller)
		g.Expect(created.Spec.Containers).To(HaveLen(1))
		g.Expect(meshv1.IsMeshed(created)).To(BeFalse())
	})
}

// controllerPod is a pod of the control plane's Deployment in config/manager, as its ReplicaSet
// would create it.
func controllerPod(t *testing.T) *corev1.Pod {
	t.Helper()
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		deploy := &appsv1.Deployment{}
		if err := dec.Decode(deploy); err != nil {
			t.Fatalf("config/manager/manager.yaml: no Deployment: %v", err)
		}
		if deploy.Kind == "Deployment" {
			tmpl := deploy.Spec.Template
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: framework.SystemNamespace, Name: "skein-controller-0",
				Labels: tmpl.Labels, Annotations: tmpl.Annotations}, Spec: tmpl.Spec}
		}
	}
}
