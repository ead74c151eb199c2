// Package testpki makes a trust anchor and workload certificates in memory for the proxy's tests.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// PKI is a trust anchor that signs workload certificates directly.
type PKI struct {
	Roots *x509.CertPool
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
}

// New makes a trust anchor.
func New(t testing.TB) *PKI {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test anchor"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &PKI{Roots: roots, cert: cert, key: key}
}

// Workload certifies a new key as the SPIFFE ID id.
func (p *PKI) Workload(t testing.TB, id string) *tls.Certificate {
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return p.certify(t, &x509.Certificate{URIs: []*url.URL{u}})
}

// Server certifies a new key as the DNS name, as a control-plane service's certificate.
func (p *PKI) Server(t testing.TB, dnsName string) *tls.Certificate {
	return p.certify(t, &x509.Certificate{DNSNames: []string{dnsName}})
}

// certify signs a new key for the names in tmpl, for an hour, as both client and server.
func (p *PKI) certify(t testing.TB, tmpl *x509.Certificate) *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
