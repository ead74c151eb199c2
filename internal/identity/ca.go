package identity

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/spiffe"
)

// Issuer is an intermediate CA that signs workload certificates.
type Issuer struct {
	Cert   *x509.Certificate
	Key    crypto.Signer
	Chain  [][]byte // DER: the issuer first, then any certificates between it and a trust anchor
	Anchor []*x509.Certificate
}

// Fingerprint is the SHA-256 digest of a certificate, in hex, as MeshConfig's status shows it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseIssuer reads an issuer from cert-manager's Secret keys: tls.crt (the issuer and its chain),
// tls.key, and ca.crt (the anchor). The issuer must be a CA whose key matches and which chains to ca.crt.
func ParseIssuer(certPEM, keyPEM, caPEM []byte, now time.Time) (*Issuer, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("reading the issuer's certificate and key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing the issuer's certificate: %w", err)
	}
	if !leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("the issuer's certificate is not a CA allowed to sign certificates")
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("the issuer's certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("the issuer's key cannot sign")
	}
	anchors, err := ParseCertificates(caPEM)
	if err != nil {
		return nil, fmt.Errorf("reading the trust anchor: %w", err)
	}
	iss := &Issuer{Cert: leaf, Key: signer, Chain: pair.Certificate, Anchor: anchors}
	if _, err := iss.verify(leaf, now); err != nil {
		return nil, fmt.Errorf("the issuer does not chain to its trust anchor: %w", err)
	}
	return iss, nil
}

// verify checks that a certificate signed by this issuer chains to its anchor.
func (iss *Issuer) verify(c *x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, a := range iss.Anchor {
		roots.AddCert(a)
	}
	for _, der := range iss.Chain {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	return c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
}

// ParseCertificates reads every CERTIFICATE block of a PEM bundle; it fails on an empty bundle.
func ParseCertificates(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate found")
	}
	return certs, nil
}

// CA signs with the current issuer, which a renewal replaces atomically: a signature under way
// finishes with the issuer it started with.
type CA struct {
	issuer atomic.Pointer[Issuer]
}

// SetIssuer puts an issuer in force.
func (ca *CA) SetIssuer(iss *Issuer) { ca.issuer.Store(iss) }

// Issuer is the issuer in force, or nil before the first is loaded.
func (ca *CA) Issuer() *Issuer { return ca.issuer.Load() }

// Leaf is a signed workload certificate with the chain to present beside it.
type Leaf struct {
	DER        []byte
	Chain      [][]byte
	NotAfter   time.Time
	IssuerUsed *Issuer
}

// Sign certifies pub as id (and dnsNames, for a server) for lifetime, backdated by skew; the
// certificate never outlives its issuer.
func (ca *CA) Sign(id spiffe.ID, dnsNames []string, pub crypto.PublicKey, lifetime, skew time.Duration, now time.Time) (*Leaf, error) {
	iss := ca.Issuer()
	if iss == nil {
		return nil, errors.New("no issuer loaded yet")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now = now.Truncate(time.Second) // certificates carry whole seconds
	notAfter := now.Add(lifetime)
	if notAfter.After(iss.Cert.NotAfter) {
		notAfter = iss.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-skew),
		NotAfter:     notAfter,
		URIs:         []*url.URL{id.URL()},
		DNSNames:     dnsNames,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, pub, iss.Key)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate for %s: %w", id, err)
	}
	return &Leaf{DER: der, Chain: iss.Chain, NotAfter: notAfter, IssuerUsed: iss}, nil
}
