// Package check_test runs the real `skein check` CLI against a real mesh (API server, cert-manager,
// control plane), healthy and then broken one piece at a time.
package check_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/test/framework"
)

func TestCheck(t *testing.T) {
	ctx := context.Background()
	skein := buildCLI(t)
	c, err := framework.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, c.Stop()) })

	t.Run("pre passes for an administrator once cert-manager's CRDs are there", func(t *testing.T) {
		out, err := run(skein, "check", "--pre", "--kubeconfig", c.Kubeconfig)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"✔ can create CustomResourceDefinitions", "✔ can create Namespaces", "✔ cert-manager is installed", "✔ is running a supported Kubernetes version: v1."} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
	})
	t.Run("pre fails for a user who may not install", func(t *testing.T) {
		kubeconfig := serviceAccountKubeconfig(t, ctx, c, "default", "default")
		out, err := run(skein, "check", "--pre", "--kubeconfig", kubeconfig)
		if err == nil {
			t.Fatalf("passed:\n%s", out)
		}
		if !strings.Contains(out, "× can create CustomResourceDefinitions") || !strings.Contains(out, "hint: installing Skein takes a cluster administrator") {
			t.Errorf("no refusal with its hint in:\n%s", out)
		}
	})

	stopCertManager, err := framework.StartCertManager(c)
	if err != nil {
		t.Fatal(err)
	}
	cmRunning := true
	t.Cleanup(func() {
		if cmRunning {
			check(t, stopCertManager())
		}
	})
	cp, err := framework.StartControlPlane(c)
	if err != nil {
		t.Fatal(err)
	}
	cpRunning := true
	t.Cleanup(func() {
		if cpRunning {
			check(t, cp.Stop())
		}
	})
	if _, err := framework.ApplyMeshConfig(ctx, c); err != nil {
		t.Fatal(err)
	}
	args := []string{"check", "--kubeconfig", c.Kubeconfig, "--identity-addr", cp.IdentityAddr, "--xds-addr", cp.XDSAddr}

	t.Run("passes on a working mesh", func(t *testing.T) {
		out, err := run(skein, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("skein check:\n%s", out)
		for _, want := range []string{
			"✔ the Skein CRDs are established", "✔ the MeshConfig is Ready", "✔ the identity service answers: TLS as skein-identity.skein-system.svc",
			"✔ the xDS service answers", "✔ webhook trafficsplits.mesh.skein.dev of validating-webhook-configuration answers", "✔ the trust anchor Certificate is Ready",
			"✔ the identity issuer Certificate is Ready", "✔ the trust anchors are valid", "✔ the identity issuer is valid: expires",
			"✔ the meshed proxies are connected", "Status check results are ✔",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		if strings.Contains(out, "×") || strings.Contains(out, "‼") {
			t.Errorf("a check is not well:\n%s", out)
		}
		js, err := run(skein, append(args, "-o", "json")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, js)
		}
		var report struct {
			Success bool `json:"success"`
			Checks  []struct {
				Category, Name, Result string
			} `json:"checks"`
		}
		if err := json.Unmarshal([]byte(js), &report); err != nil {
			t.Fatalf("-o json: %v\n%s", err, js)
		}
		if !report.Success || len(report.Checks) < 14 || report.Checks[0].Category != "kubernetes-api" || report.Checks[0].Result != "ok" {
			t.Errorf("-o json: %+v", report)
		}
	})

	t.Run("fails with a hint when the webhook is missing", func(t *testing.T) {
		vwcs := &admissionv1.ValidatingWebhookConfigurationList{}
		if err := c.Client.List(ctx, vwcs); err != nil {
			t.Fatal(err)
		}
		deleted := 0
		for _, v := range vwcs.Items {
			for _, w := range v.Webhooks {
				if w.Name == "trafficsplits.mesh.skein.dev" {
					if err := c.Client.Delete(ctx, &v); err != nil {
						t.Fatal(err)
					}
					deleted++
					break
				}
			}
		}
		if deleted == 0 {
			t.Fatal("no webhook configuration held the TrafficSplit webhook")
		}
		out, err := run(skein, args...)
		wantFailure(t, out, err, "× webhook trafficsplits.mesh.skein.dev is registered: no webhook configuration holds it", "hint: reinstall Skein's webhook configuration")
	})

	t.Run("fails with a hint when the control plane is down", func(t *testing.T) {
		cpRunning = false
		if err := cp.Stop(); err != nil {
			t.Fatal(err)
		}
		out, err := run(skein, args...)
		wantFailure(t, out, err, "× the identity service answers", "hint: the control plane is down or unreachable at "+cp.IdentityAddr)
		wantFailure(t, out, err, "× the xDS service answers", "hint: the control plane is down or unreachable at "+cp.XDSAddr)
	})

	t.Run("fails with a hint when the issuer has expired", func(t *testing.T) {
		// With cert-manager stopped nothing renews the issuer, as when it is down for good.
		cmRunning = false
		if err := stopCertManager(); err != nil {
			t.Fatal(err)
		}
		s := &corev1.Secret{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.IssuerName}, s); err != nil {
			t.Fatal(err)
		}
		s.Data[corev1.TLSCertKey] = expiredCertificate(t)
		if err := c.Client.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		out, err := run(skein, args...)
		wantFailure(t, out, err, "× the identity issuer is valid: expired 20", "hint: cert-manager renews it: check that it runs")
		t.Logf("skein check:\n%s", out)
		if !strings.Contains(out, "✔ the trust anchors are valid") {
			t.Errorf("the anchors are still valid, yet:\n%s", out)
		}
	})

	t.Run("warns of an anchor near its end and of proxies astray", func(t *testing.T) {
		// The control plane is stopped: nothing rewrites the bundle or MeshStatus behind the test.
		bundle := &corev1.ConfigMap{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: framework.SystemNamespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
			t.Fatal(err)
		}
		bundle.Data[meshv1.TrustBundleKey] = string(certificate(t, "ending anchor", 10*24*time.Hour))
		if err := c.Client.Update(ctx, bundle); err != nil {
			t.Fatal(err)
		}
		ms := &meshv1.MeshStatus{}
		if err := c.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshStatusName}, ms); err != nil {
			t.Fatal(err)
		}
		ms.Status.MeshedPods, ms.Status.ConnectedProxies = 2, 1
		if err := c.Client.Status().Update(ctx, ms); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "web", Image: "nginx"}, {Name: meshv1.ProxyContainerName, Image: "ghcr.io/skeinmesh/skein-proxy:v0.0.9"},
			}},
		}
		if err := c.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		out, _ := run(skein, args...)
		for _, want := range []string{
			"‼ the trust anchors are valid: 1 in the bundle; \"ending anchor\" expires",
			"within 30 days\n    hint: plan the anchor's rotation",
			"‼ the meshed proxies are connected: 1 of 2 meshed pods' proxies are connected to the control plane\n    hint: kubectl logs <pod> -c skein-proxy",
			"‼ the meshed proxies run the configured image: 1 proxies run another image than ghcr.io/skeinmesh/skein-proxy:v0.1.0: default/web-1 (ghcr.io/skeinmesh/skein-proxy:v0.0.9)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
	})
}

func wantFailure(t *testing.T, out string, err error, line, hint string) {
	t.Helper()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("want a non-zero exit, got %v:\n%s", err, out)
	}
	i := strings.Index(out, line)
	if i < 0 {
		t.Fatalf("no %q in:\n%s", line, out)
	}
	// The hint is on the line after the check's.
	rest := out[i:]
	lines := strings.SplitN(rest, "\n", 3)
	if len(lines) < 2 || !strings.Contains(lines[1], hint) {
		t.Errorf("the line after %q is not the hint %q:\n%s", line, hint, out)
	}
	if !strings.Contains(out, "Status check results are ×") {
		t.Errorf("no failing verdict in:\n%s", out)
	}
}

func buildCLI(t *testing.T) string {
	t.Helper()
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "skein")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "skein")).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs the CLI and returns its stdout and stderr together.
func run(bin string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// serviceAccountKubeconfig writes a kubeconfig for the ServiceAccount ns/sa, which has no rights.
func serviceAccountKubeconfig(t *testing.T, ctx context.Context, c *framework.Cluster, ns, sa string) string {
	t.Helper()
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	if err := c.Client.Create(ctx, account); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if err := c.Client.SubResource("token").Create(ctx, account, tr); err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa}
	cfg.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// expiredCertificate is a CA certificate (PEM) that expired an hour ago.
func expiredCertificate(t *testing.T) []byte {
	t.Helper()
	return certificate(t, "expired issuer", -time.Hour)
}

// certificate is a self-signed CA certificate (PEM) named cn that expires in left.
func certificate(t *testing.T, cn string, left time.Duration) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(left),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}
