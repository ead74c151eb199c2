package bundle_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/internal/localcluster"
)

// This file does what OLM's install step does with a CSV, against a real API server: the test has
// no OLM, and no kubelet to run the Deployment's pods.

// readCSV reads the bundle's ClusterServiceVersion.
func readCSV(dir string) (*operatorsv1alpha1.ClusterServiceVersion, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.clusterserviceversion.yaml"))
	if err != nil || len(matches) != 1 {
		return nil, fmt.Errorf("want one CSV in %s, found %v (%v)", dir, matches, err)
	}
	raw, err := os.ReadFile(matches[0])
	if err != nil {
		return nil, err
	}
	csv := &operatorsv1alpha1.ClusterServiceVersion{}
	return csv, yaml.UnmarshalStrict(raw, csv)
}

// installPermissions creates what OLM makes from the CSV's install strategy in namespace ns: each
// ServiceAccount, a Role and RoleBinding per permissions entry, a ClusterRole and
// ClusterRoleBinding per clusterPermissions entry, and the Deployments.
func installPermissions(ctx context.Context, k client.Client, csv *operatorsv1alpha1.ClusterServiceVersion, ns string) error {
	strategy := csv.Spec.InstallStrategy.StrategySpec
	accounts := map[string]bool{}
	for i, p := range strategy.Permissions {
		name := fmt.Sprintf("%s-%d", csv.Name, i)
		accounts[p.ServiceAccountName] = true
		subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: p.ServiceAccountName, Namespace: ns}}
		if err := createAll(ctx, k,
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: p.Rules},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
		); err != nil {
			return err
		}
	}
	for i, p := range strategy.ClusterPermissions {
		name := fmt.Sprintf("%s-cluster-%d", csv.Name, i)
		accounts[p.ServiceAccountName] = true
		subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: p.ServiceAccountName, Namespace: ns}}
		if err := createAll(ctx, k,
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: p.Rules},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}},
		); err != nil {
			return err
		}
	}
	for sa := range accounts {
		if err := k.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
			return err
		}
	}
	for _, d := range strategy.DeploymentSpecs {
		deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: d.Name, Labels: d.Label}, Spec: d.Spec}
		if err := k.Create(ctx, deploy); err != nil {
			return fmt.Errorf("the API server refused the CSV's Deployment %s: %w", d.Name, err)
		}
	}
	return nil
}

// installBundleObjects creates the bundle's other manifests (Services, ClusterRoles) in ns.
func installBundleObjects(ctx context.Context, k client.Client, dir, ns string) (int, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range matches {
		raw, err := os.ReadFile(m)
		if err != nil {
			return n, err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &obj.Object); err != nil {
			return n, err
		}
		switch obj.GetKind() {
		case "ClusterServiceVersion", "CustomResourceDefinition":
			continue
		case "Service", "Role", "ConfigMap":
			obj.SetNamespace(ns)
		}
		if err := k.Create(ctx, obj); err != nil {
			return n, fmt.Errorf("creating %s from the bundle: %w", filepath.Base(m), err)
		}
		n++
	}
	return n, nil
}

// installWebhooks registers the CSV's webhook definitions as OLM does, but calling the operator at
// a local URL (OLM points them at a Service of the Deployment) with caBundle, the CA that OLM would
// have made for the serving certificate.
func installWebhooks(ctx context.Context, k client.Client, csv *operatorsv1alpha1.ClusterServiceVersion, baseURL string, caBundle []byte) error {
	for _, d := range csv.Spec.WebhookDefinitions {
		cc := admissionv1.WebhookClientConfig{URL: ptr.To(baseURL + ptr.Deref(d.WebhookPath, "/")), CABundle: caBundle}
		meta := metav1.ObjectMeta{GenerateName: d.GenerateName + "-"}
		var obj client.Object
		switch d.Type {
		case operatorsv1alpha1.ValidatingAdmissionWebhook:
			obj = &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionv1.ValidatingWebhook{{
				Name: d.GenerateName, ClientConfig: cc, Rules: d.Rules, FailurePolicy: d.FailurePolicy, MatchPolicy: d.MatchPolicy,
				ObjectSelector: d.ObjectSelector, SideEffects: d.SideEffects, TimeoutSeconds: d.TimeoutSeconds,
				AdmissionReviewVersions: d.AdmissionReviewVersions,
			}}}
		case operatorsv1alpha1.MutatingAdmissionWebhook:
			obj = &admissionv1.MutatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionv1.MutatingWebhook{{
				Name: d.GenerateName, ClientConfig: cc, Rules: d.Rules, FailurePolicy: d.FailurePolicy, MatchPolicy: d.MatchPolicy,
				ObjectSelector: d.ObjectSelector, SideEffects: d.SideEffects, TimeoutSeconds: d.TimeoutSeconds,
				AdmissionReviewVersions: d.AdmissionReviewVersions, ReinvocationPolicy: d.ReinvocationPolicy,
			}}}
		default:
			return fmt.Errorf("webhook %s has type %q, which OLM does not install", d.GenerateName, d.Type)
		}
		if err := k.Create(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// servingCertificate writes a self-signed serving certificate for 127.0.0.1 into dir as tls.crt
// and tls.key, as OLM's secret holds them, and returns it (PEM) for the caBundle.
func servingCertificate(dir string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "skein-webhook"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	return certPEM, os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the ServiceAccount ns/sa with
// a token from the TokenRequest API, as a pod of the Deployment would.
func serviceAccountKubeconfig(ctx context.Context, c *localcluster.Cluster, k client.Client, ns, sa, path string) error {
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	sacc := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	if err := k.SubResource("token").Create(ctx, sacc, tr); err != nil {
		return fmt.Errorf("requesting a token for %s/%s: %w", ns, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa, Namespace: ns}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, path)
}

func createAll(ctx context.Context, k client.Client, objs ...client.Object) error {
	for _, o := range objs {
		if err := k.Create(ctx, o); err != nil {
			return err
		}
	}
	return nil
}
