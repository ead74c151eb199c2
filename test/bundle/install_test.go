// Package bundle_test installs Skein from its OLM bundle (bundle/) into a real API server the way
// OLM would, runs the operator with the bundle's Deployment arguments and RBAC, and checks that the
// CSV's examples reconcile to Ready.
package bundle_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/bundle"
	"github.com/skeinmesh/skein/internal/certmanager"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/test/framework"
)

// installNamespace is where the test installs the operator, the CSV's suggested namespace.
const installNamespace = framework.SystemNamespace

func TestInstallFromBundle(t *testing.T) {
	ctx := context.Background()
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifests := filepath.Join(root, "bundle", "manifests")
	crds, err := certmanager.CRDDir()
	if err != nil {
		t.Fatal(err)
	}
	c, err := localcluster.Start(localcluster.Options{CRDDirs: []string{crds}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, c.Stop()) })
	stopCertManager, err := framework.StartCertManager(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, stopCertManager()) })

	// The CRDs: the bundle's own files, applied over what the API server was started with.
	crdFiles, _ := filepath.Glob(filepath.Join(manifests, "mesh.skein.dev_*.yaml"))
	for _, f := range crdFiles {
		if _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "--force-conflicts", "-f", f); err != nil {
			t.Fatal(err)
		}
	}
	if len(crdFiles) != 5 {
		t.Fatalf("the bundle holds %d CRDs, want 5", len(crdFiles))
	}

	csv, err := readCSV(manifests)
	if err != nil {
		t.Fatal(err)
	}
	if err := installPermissions(ctx, c.Client, csv, installNamespace); err != nil {
		t.Fatal(err)
	}
	if n, err := installBundleObjects(ctx, c.Client, manifests, installNamespace); err != nil || n == 0 {
		t.Fatalf("installing the bundle's other objects: %d installed, %v", n, err)
	}
	certDir := t.TempDir()
	caBundle, err := servingCertificate(certDir)
	if err != nil {
		t.Fatal(err)
	}
	webhookPort := freePort(t)
	if err := installWebhooks(ctx, c.Client, csv, "https://127.0.0.1:"+strconv.Itoa(webhookPort), caBundle); err != nil {
		t.Fatal(err)
	}

	// The operator, as the Deployment's container would run it, authenticated as its ServiceAccount.
	deploy := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs[0]
	pod := deploy.Spec.Template.Spec
	container := pod.Containers[0]
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := serviceAccountKubeconfig(ctx, c, c.Client, installNamespace, pod.ServiceAccountName, kubeconfig); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, filepath.Base(container.Command[0]))
	if out, err := exec.Command("go", "build", "-o", binary, root).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	probePort := freePort(t)
	var args []string
	for _, a := range container.Args {
		// OLM mounts the webhook serving certificate there; here it is a directory of the test's.
		args = append(args, strings.ReplaceAll(a, bundle.OLMWebhookCertDir, certDir))
	}
	// Flags given twice take the last value: the container's ports are moved to free ones on
	// loopback, as this machine runs other tests.
	args = append(args, "--kubeconfig="+kubeconfig,
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort), "--metrics-bind-address=0",
		"--identity-bind-address=127.0.0.1:0", "--xds-bind-address=127.0.0.1:0",
		"--webhook-host=127.0.0.1", "--webhook-port="+strconv.Itoa(webhookPort))
	logPath := filepath.Join(dir, "operator.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), containerEnv(container.Env, installNamespace, pod.ServiceAccountName)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		check(t, stop(cmd))
		check(t, log.Close())
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("operator log:\n%s", out)
		}
	})
	eventually(t, "the operator is ready", func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %s", resp.Status)
		}
		return nil
	})

	// The examples, with the Services the TrafficSplit example splits.
	for _, svc := range []string{"web", "web-stable", "web-canary"} {
		createService(t, ctx, c.Client, "default", svc)
	}
	examples := []map[string]any{}
	if err := json.Unmarshal([]byte(csv.Annotations["alm-examples"]), &examples); err != nil {
		t.Fatalf("alm-examples: %v", err)
	}
	list, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": examples})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, list, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	eventually(t, "the MeshConfig is Ready", func() error {
		mc := &meshv1.MeshConfig{}
		if err := c.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
			return err
		}
		return readyCondition(mc.Status.Conditions, mc.Generation)
	})
	eventually(t, "the TrafficSplit is Ready", func() error {
		ts := &meshv1.TrafficSplit{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web"}, ts); err != nil {
			return err
		}
		return readyCondition(ts.Status.Conditions, ts.Generation)
	})
	eventually(t, "the mesh-wide MeshStatus is made", func() error {
		return c.Client.Get(ctx, client.ObjectKey{Name: "default"}, &meshv1.MeshStatus{})
	})

	// The webhook from the CSV's webhook definitions, served by the operator with OLM's certificate.
	bad := &meshv1.TrafficSplit{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "elsewhere"},
		Spec: meshv1.TrafficSplitSpec{Service: "api", Backends: []meshv1.TrafficSplitBackend{
			{Service: "api-v2.other", Weight: 1},
		}},
	}
	err = c.Client.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "spec.backends[0].service") {
		t.Errorf("a backend in another namespace: want the webhook's refusal naming spec.backends[0].service, got %v", err)
	}

	// Everything above ran with the bundle's RBAC: nothing the operator tried was forbidden.
	out, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "forbidden") {
		t.Errorf("the operator was refused something by RBAC:\n%s", grep(string(out), "forbidden"))
	}
}

// stop ends the operator with SIGTERM, as the kubelet would, and kills it if it has not stopped
// within the Deployment's grace period (10s) and some.
func stop(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		err := cmd.Process.Kill()
		<-done
		return errors.Join(errors.New("the operator did not stop within 30s of SIGTERM and was killed"), err)
	}
}

// containerEnv resolves the container's environment as the kubelet would for the downward API
// fields the Deployment uses.
func containerEnv(env []corev1.EnvVar, ns, sa string) []string {
	var out []string
	for _, e := range env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.namespace":
				v = ns
			case "spec.serviceAccountName":
				v = sa
			}
		}
		out = append(out, e.Name+"="+v)
	}
	return out
}

func createService(t *testing.T, ctx context.Context, k client.Client, ns, name string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	if err := createAll(ctx, k, svc, slice); err != nil {
		t.Fatal(err)
	}
}

// readyCondition is nil when conditions say Ready=True for generation.
func readyCondition(conditions []metav1.Condition, generation int64) error {
	c := meta.FindStatusCondition(conditions, meshv1.ConditionReady)
	switch {
	case c == nil:
		return errors.New("no Ready condition yet")
	case c.ObservedGeneration != generation:
		return fmt.Errorf("Ready is of generation %d, not %d", c.ObservedGeneration, generation)
	case c.Status != metav1.ConditionTrue:
		return fmt.Errorf("Ready is %s: %s: %s", c.Status, c.Reason, c.Message)
	}
	return nil
}

// eventually polls f until it returns nil, failing the test with f's last error if that takes
// more than two minutes: the bound is only there so that a broken install ends.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func grep(text, word string) string {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}
