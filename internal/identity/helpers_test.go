package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
	"github.com/skeinmesh/skein/internal/spiffe"
)

// testIssuer makes a root and an intermediate issuer in memory, in the PEM form cert-manager writes.
func testIssuer(t testing.TB, notAfter time.Time) (certPEM, keyPEM, caPEM []byte) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "issuer"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})
}

// usernameReviewer treats a token as the user name it authenticates; "error" fails the review and
// anything not a ServiceAccount is rejected.
type usernameReviewer struct{ calls int }

func (r *usernameReviewer) Review(_ context.Context, token string) (string, error) {
	r.calls++
	switch {
	case token == "error":
		return "", fmt.Errorf("the API server is away")
	case !strings.HasPrefix(token, "system:serviceaccount:"):
		return "", fmt.Errorf("%w: invalid token", ErrTokenRejected)
	}
	return token, nil
}

// testService is a Service over an in-memory issuer, with its own metrics registry.
func testService(t testing.TB, reviewer TokenReviewer) (*Service, *prometheus.Registry) {
	t.Helper()
	c, k, a := testIssuer(t, time.Now().Add(48*time.Hour))
	iss, err := ParseIssuer(c, k, a, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{}
	ca.SetIssuer(iss)
	reg := prometheus.NewRegistry()
	settings := func(context.Context) (Settings, error) {
		return Settings{TrustDomain: "cluster.local", Lifetime: 24 * time.Hour, ClockSkew: 20 * time.Second}, nil
	}
	svc, err := NewService(ca, reviewer, settings, reg)
	if err != nil {
		t.Fatal(err)
	}
	return svc, reg
}

// csrFor makes a CSR with the given key and URI SANs.
func csrFor(t testing.TB, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func p256(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const webID = "spiffe://cluster.local/ns/shop/sa/web"

func validRequest(t testing.TB) *pb.CertifyRequest {
	return &pb.CertifyRequest{Identity: webID, Token: []byte("system:serviceaccount:shop:web"), CertificateSigningRequest: csrFor(t, p256(t), webID)}
}

func mustParse(t testing.TB, s string) spiffe.ID {
	id, err := spiffe.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
