// Package expansion_test proves mesh expansion end to end: a "VM" (a network namespace reached only
// over its veth) joins the mesh as an ExternalWorkload with nothing but what `skein external-workload
// bootstrap` wrote, against the real API server, control plane and proxies.
package expansion_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/expansion"
	"github.com/skeinmesh/skein/internal/identityclient"
	"github.com/skeinmesh/skein/test/framework"
	"github.com/skeinmesh/skein/test/localmesh"
	"github.com/skeinmesh/skein/test/netns"
)

const ns = "shop"

func TestExternalWorkload(t *testing.T) {
	ctx := context.Background()
	m, fm, err := framework.StartLocalMesh(ctx, t, "ew", true)
	if err != nil {
		t.Fatal(err)
	}
	k8s := fm.Client

	t.Log("in the cluster: a client pod and a server pod behind Service api")
	api, err := m.AddPod("api-1", ns, "api", nil)
	if err != nil {
		t.Fatal(err)
	}
	apiIP, err := m.Serve("api", ns, api)
	if err != nil {
		t.Fatal(err)
	}
	caller, err := m.AddPod("caller", ns, "caller", nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Log("the VM: an ExternalWorkload, a Service selecting it, and the files bootstrap writes")
	host, err := m.AddHost("vm-1")
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, k8s, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"}})
	ew := &meshv1.ExternalWorkload{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vm-1", Labels: map[string]string{"app": "billing"},
			Annotations: map[string]string{meshv1.GracePeriodAnnotation: "6s"}},
		Spec: meshv1.ExternalWorkloadSpec{
			MeshTLS:     meshv1.MeshTLS{Identity: "spiffe://cluster.local/ns/shop/sa/billing", ServerName: "vm-1.shop.cluster.local"},
			WorkloadIPs: []meshv1.WorkloadIP{{IP: host.IP.String()}},
			Ports:       []meshv1.PortSpec{{Name: "http", Port: 8080}, {Name: "echo", Port: 9000}},
		},
	}
	mustCreate(t, k8s, ew)
	billing := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "billing"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "tcp", Port: 9000, TargetPort: intstr.FromInt32(9000)},
		}},
	}
	mustCreate(t, k8s, billing)
	// Not t.TempDir, whose parent only root may enter: the proxy's user reads its files here.
	dir, err := os.MkdirTemp("", "skein-vm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(netns.Build(t, "github.com/skeinmesh/skein/cmd/skein"), "external-workload", "bootstrap", "vm-1", "-n", ns,
		"--kubeconfig", fm.Kubeconfig, "--out", dir, "--config-dir", dir,
		"--identity-addr", fm.ControlPlane.IdentityAddr, "--xds-addr", fm.ControlPlane.XDSAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("skein external-workload bootstrap: %v\n%s", err, out)
	}
	t.Logf("skein external-workload bootstrap:\n%s", out)
	// The proxy runs as its own user, which must read the token, as the printed steps say.
	if err := os.Chown(filepath.Join(dir, expansion.TokenFile), localmesh.ProxyUID, 0); err != nil {
		t.Fatal(err)
	}
	env := readEnv(t, filepath.Join(dir, expansion.EnvFile))

	t.Log("before its proxy connects, the workload serves no Service")
	waitCondition(t, k8s, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNeverConnected)
	if n := len(slicesOf(t, k8s)); n != 0 {
		t.Fatalf("%d EndpointSlices before the proxy connected", n)
	}

	vm, err := m.RunExternal(host, env)
	if err != nil {
		t.Fatal(err)
	}
	waitCondition(t, k8s, meshv1.ConditionProxyConnected, metav1.ConditionTrue, meshv1.ReasonConnected)
	waitCondition(t, k8s, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)

	t.Log("the VM calls the in-cluster Service, which sees the VM's identity over mTLS")
	answer := framework.Retry(t, func() (string, error) { return vm.Run(0, "-mode", "http1", "-addr", apiIP+":80", "-body", "from-vm") })
	if !strings.Contains(answer, "spiffe://cluster.local/ns/shop/sa/billing from-vm") {
		t.Fatalf("api answered the VM with %q, want it to name the VM's identity", answer)
	}

	t.Log("a pod calls the VM through the Service that selects it, and the VM sees the pod's identity")
	var billingSvc corev1.Service
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(billing), &billingSvc); err != nil {
		t.Fatal(err)
	}
	billingIP := billingSvc.Spec.ClusterIP
	answer = framework.Retry(t, func() (string, error) {
		return caller.Run(0, "-mode", "http1", "-addr", billingIP+":80", "-body", "to-vm")
	})
	if !strings.Contains(answer, "spiffe://cluster.local/ns/shop/sa/caller to-vm") {
		t.Fatalf("the VM answered %q, want it to name the caller's identity", answer)
	}
	answer = framework.Retry(t, func() (string, error) {
		return caller.Run(0, "-mode", "tcp", "-addr", billingIP+":9000", "-body", "opaque")
	})
	if !strings.Contains(answer, "echo: opaque") {
		t.Fatalf("the VM's TCP echo answered %q", answer)
	}

	t.Log("a TrafficSplit sends half of api's traffic to the VM")
	if _, err := m.Serve("api-stable", ns, api); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, k8s, &meshv1.TrafficSplit{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}, Spec: meshv1.TrafficSplitSpec{
		Service: "api", Backends: []meshv1.TrafficSplitBackend{{Service: "api-stable", Weight: 50}, {Service: "billing", Weight: 50}},
	}})
	shares := waitShares(t, caller, apiIP, "api.shop.svc.cluster.local:80", "api-1", "vm-1")
	if vmShare := float64(shares["vm-1"]) / float64(shares["vm-1"]+shares["api-1"]); vmShare < 0.4 || vmShare > 0.6 {
		t.Errorf("the VM served %.0f%% of api's requests, want 50%% ± 10", 100*vmShare)
	}

	t.Log("the VM's proxy goes away: its endpoints stay for the grace period, then are withdrawn")
	if err := vm.StopProxy(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitCondition(t, k8s, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonGracePeriodExpired)
	if away := time.Since(stopped); away < 6*time.Second {
		t.Errorf("the endpoints were withdrawn %s after the proxy stopped, within the 6s grace period", away)
	}
	if n := len(slicesOf(t, k8s)); n != 0 {
		t.Errorf("%d EndpointSlices remain after the grace period", n)
	}
	t.Log("it comes back, and so do they")
	if err := vm.StartProxy(); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, k8s, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonReconciled)
	framework.Retry(t, func() (string, error) {
		return caller.Run(0, "-mode", "http1", "-addr", billingIP+":80", "-body", "again")
	})

	t.Log("identities are refused for a token of another ServiceAccount, an expired token, and a deleted ExternalWorkload")
	token, err := os.ReadFile(filepath.Join(dir, expansion.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	certify := func(identity, token string) error {
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := identityclient.New(identityclient.Config{Addr: fm.ControlPlane.IdentityAddr, ServerName: framework.IdentityServerName,
			TrustAnchors: fm.Anchors, Identity: identity, TokenPath: path})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = c.Certify(cctx)
		return err
	}
	if err := certify(ew.Spec.MeshTLS.Identity, string(token)); err != nil {
		t.Fatalf("the bootstrap token is refused while the workload exists: %v", err)
	}
	if err := certify("spiffe://cluster.local/ns/shop/sa/api", string(token)); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("the VM's token got identity sa/api: %v", err)
	}
	old, err := framework.ExpiredToken(fm.Cluster, string(token))
	if err != nil {
		t.Fatal(err)
	}
	if err := certify(ew.Spec.MeshTLS.Identity, old); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("an expired token got an identity: %v", err)
	}
	if err := k8s.Delete(ctx, ew); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for err := certify(ew.Spec.MeshTLS.Identity, string(token)); err == nil; err = certify(ew.Spec.MeshTLS.Identity, string(token)) {
		if time.Now().After(deadline) {
			t.Fatal("the token of a deleted ExternalWorkload still gets an identity")
		}
		time.Sleep(time.Second)
	}
	if n := len(slicesOf(t, k8s)); n != 0 {
		t.Errorf("%d EndpointSlices remain after the ExternalWorkload was deleted", n)
	}
}

func mustCreate(t *testing.T, k8s client.Client, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func readEnv(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var env []string
	for s := bufio.NewScanner(f); s.Scan(); {
		if line := strings.TrimSpace(s.Text()); line != "" && !strings.HasPrefix(line, "#") {
			env = append(env, line)
		}
	}
	return env
}

func slicesOf(t *testing.T, k8s client.Client) []discoveryv1.EndpointSlice {
	list := &discoveryv1.EndpointSliceList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{meshv1.ExternalWorkloadLabel: "vm-1"}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitCondition waits for the ExternalWorkload's condition to have status and reason.
func waitCondition(t *testing.T, k8s client.Client, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	var last *metav1.Condition
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ew := &meshv1.ExternalWorkload{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "vm-1"}, ew); err != nil {
			t.Fatal(err)
		}
		if last = meta.FindStatusCondition(ew.Status.Conditions, typ); last != nil && last.Status == status && last.Reason == reason {
			return
		}
	}
	t.Fatalf("condition %s is %+v, want %s with reason %s", typ, last, status, reason)
}

// waitShares sends load until both backends answer, and returns how many requests each served.
func waitShares(t *testing.T, c *localmesh.Pod, ip, authority string, names ...string) map[string]int {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		out, err := c.Run(0, "-mode", "load", "-addr", ip+":80", "-host", authority, "-duration", "2s", "-workers", "4")
		last = out
		if err != nil {
			continue
		}
		var ok, failed int
		fmt.Sscanf(out, "ok=%d failed=%d", &ok, &failed)
		counts := map[string]int{}
		_, by, _ := strings.Cut(out, "served-by ")
		for _, f := range strings.Fields(by) {
			var name string
			var n int
			if k, v, found := strings.Cut(f, "="); found {
				name = k
				fmt.Sscanf(v, "%d", &n)
			}
			counts[name] = n
		}
		if failed == 0 && counts[names[0]] > 0 && counts[names[1]] > 0 {
			return counts
		}
	}
	t.Fatalf("load never reached both %v: %s", names, last)
	return nil
}
