package xds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/scheme"
)

func selfSignedCA(t *testing.T, name string) *x509.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBundleRootsTrustEveryAnchorInForce is a unit test of which anchors are read; the xDS suites
// exercise the handshake itself.
func TestBundleRootsTrustEveryAnchorInForce(t *testing.T) {
	retiring, current := selfSignedCA(t, "retiring"), selfSignedCA(t, "current")
	fallbackPool := x509.NewCertPool()
	fallbackPool.AddCert(current)
	fallback := func() (*x509.CertPool, error) { return fallbackPool, nil }

	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	roots := BundleRoots(c, "skein-system", fallback)
	if pool, err := roots(); err != nil || pool != fallbackPool {
		t.Fatalf("without a bundle, roots = %v, %v; want the fallback", pool, err)
	}

	var bundle []byte
	for _, a := range []*x509.Certificate{retiring, current} {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Raw})...)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "skein-system", Name: meshv1.TrustBundleName},
		Data: map[string]string{meshv1.TrustBundleKey: string(bundle)}}
	if err := c.Create(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	pool, err := roots()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*x509.Certificate{retiring, current} {
		if _, err := a.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
			t.Errorf("the bundle's anchor %s is not trusted: %v", a.Subject.CommonName, err)
		}
	}
}
