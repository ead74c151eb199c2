// Package deploy_test runs `make deploy` and `make undeploy` against a real API server, as the
// README's Install section says, and `skein check` on what they leave.
package deploy_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/test/framework"
)

func TestDeployAndUndeploy(t *testing.T) {
	ctx := context.Background()
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c, err := framework.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	skein := filepath.Join(t.TempDir(), "skein")
	if out, err := exec.Command("go", "build", "-o", skein, filepath.Join(root, "cmd", "skein")).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	out, err := run(root, c.Kubeconfig, "make", "deploy")
	if err != nil {
		t.Fatalf("make deploy: %v\n%s", err, out)
	}
	deploy := &appsv1.Deployment{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: "skein-controller"}, deploy); err != nil {
		t.Fatalf("make deploy made no control plane Deployment: %v\n%s", err, out)
	}

	// No kubelet runs its pods here, which is what check must say.
	out, err = run(root, c.Kubeconfig, skein, "check")
	if err == nil {
		t.Fatalf("skein check passed on a control plane without pods:\n%s", out)
	}
	for _, want := range []string{
		"✔ the Skein CRDs are established",
		"× the control plane is available: 0 of 2 replicas available\n    hint: kubectl -n skein-system describe deployment skein-controller",
		"× the identity service answers: Service skein-system/skein-identity has no ready endpoint",
		// Without cert-manager's CA injector nothing fills the installed configuration's caBundle.
		"× webhook trafficsplits.mesh.skein.dev of skein-validating-webhook-configuration answers: no caBundle",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}

	if out, err := run(root, c.Kubeconfig, "make", "undeploy"); err != nil {
		t.Fatalf("make undeploy: %v\n%s", err, out)
	}
	// The API server removes a CRD once its objects are gone; poll until it has.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	k, err := client.New(c.Config, client.Options{Scheme: crdScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		err := k.Get(ctx, client.ObjectKey{Name: "meshconfigs.mesh.skein.dev"}, crd)
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("make undeploy left the MeshConfig CRD: %v", err)
		}
	}
	out, _ = run(root, c.Kubeconfig, skein, "check")
	if !strings.Contains(out, "× the Skein CRDs are established: missing: meshconfigs.mesh.skein.dev") {
		t.Errorf("after make undeploy, check does not say the CRDs are gone:\n%s", out)
	}
}

func crdScheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs a command in dir with KUBECONFIG set, and returns what it printed.
func run(dir, kubeconfig, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	err := cmd.Run()
	return out.String(), err
}
