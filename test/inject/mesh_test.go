// Package inject_test proves proxy injection against the real API server: pods admitted with the
// injector's changes are run for real (see localmesh.RunPod), and their traffic flows through the
// injected proxies with mTLS.
package inject_test

import (
	"context"
	"net"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/inject"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

// The images the injector names by default, and the test workload's; RunPod runs each as the
// binary built from this repository.
const (
	proxyImage     = "ghcr.io/skeinmesh/skein-proxy:v0.1.0"
	proxyInitImage = "ghcr.io/skeinmesh/skein-proxy-init:v0.1.0"
	workloadImage  = "skein-workload"
)

// env is a cluster with cert-manager and a control plane that serves the admission webhooks
// (the pod injector among them), whose identity and xDS services listen where pods reach them by
// the names the injector gives them.
type env struct {
	*framework.Cluster
	cp     *framework.ControlPlane
	mesh   *localmesh.Mesh
	images localmesh.Images
	ctx    context.Context
	// stopped is set once the test stopped the control plane itself.
	stopped bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if err := netns.Supported(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	network, err := netns.NewNetwork(t, "inject")
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := framework.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	stopCM, err := framework.StartCertManager(cluster)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopCM() })
	// The Services' own ports on the network's gateway: the network is this test's alone, so the
	// ports are free there, and pods reach them by name through their /etc/hosts.
	gateway := network.Gateway.String()
	cp, err := framework.StartControlPlaneWith(cluster.Config, framework.ControlPlaneOptions{
		IdentityAddr: net.JoinHostPort(gateway, strconv.Itoa(inject.IdentityPort)),
		XDSAddr:      net.JoinHostPort(gateway, strconv.Itoa(inject.XDSPort)),
		Webhook:      cluster.Webhook,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{Cluster: cluster, cp: cp, ctx: ctx}
	t.Cleanup(func() {
		if !e.stopped {
			cp.Stop()
		}
	})
	if _, err := framework.ApplyMeshConfig(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	m, err := localmesh.New(ctx, t, localmesh.Options{Client: cluster.Client, Network: network, Hosts: map[string]string{
		framework.IdentityServerName: gateway,
		framework.XDSServerName:      gateway,
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.mesh, e.images = m, m.LocalImages(proxyImage, proxyInitImage, workloadImage)
	return e
}

// stopControlPlane stops the control plane, and with it the webhooks.
func (e *env) stopControlPlane(t *testing.T) {
	t.Helper()
	e.stopped = true
	if err := e.cp.Stop(); err != nil {
		t.Fatal(err)
	}
}

// create creates a pod through the API server, and so its admission webhooks, and returns it as
// stored.
func (e *env) create(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := e.Client.Create(e.ctx, pod); err != nil {
		t.Fatal(err)
	}
	return e.admitted(t, pod)
}

// namespace creates a namespace with annotations and ServiceAccounts.
func (e *env) namespace(t *testing.T, name string, annotations map[string]string, serviceAccounts ...string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	if err := e.Client.Create(e.ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, sa := range serviceAccounts {
		if err := e.Client.Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: sa}}); err != nil {
			t.Fatal(err)
		}
	}
}

// workloadPod is an application pod: the test workload serving HTTP on 8080 and TCP on 9000.
func workloadPod(namespace, name, serviceAccount string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}, Annotations: annotations},
		Spec: corev1.PodSpec{
			ServiceAccountName: serviceAccount,
			// No API token: nothing here uses the API, and no controller publishes kube-root-ca.crt.
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name: "app", Image: workloadImage, Args: []string{"-mode", "serve", "-addr", ":8080", "-tcp-addr", ":9000"},
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			}},
		},
	}
}

// admitted reads back a pod as the API server stored it.
func (e *env) admitted(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got := &corev1.Pod{}
	if err := e.Client.Get(e.ctx, client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// run runs an admitted pod and waits for its proxy to be ready.
func (e *env) run(t *testing.T, pod *corev1.Pod) *localmesh.Pod {
	t.Helper()
	if !meshv1.IsMeshed(pod) {
		t.Fatalf("pod %s was admitted without the proxy", pod.Name)
	}
	p, err := e.mesh.RunPod(pod, e.images)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(); err != nil {
		t.Fatal(err)
	}
	return p
}

// toYAML writes v as YAML.
func toYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
