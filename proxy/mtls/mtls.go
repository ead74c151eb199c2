// Package mtls builds the TLS configurations proxies use between themselves: TLS 1.3 only, both
// sides presenting a workload certificate from the identity service, and each checking that the
// other's chains to the trust bundle and names the SPIFFE ID it expects.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ALPN protocols spoken between proxies.
const (
	// ProtoHTTP2 carries HTTP (HTTP/1 requests too, multiplexed) over HTTP/2.
	ProtoHTTP2 = "h2"
	// ProtoOpaque carries a TCP stream as it is.
	ProtoOpaque = "skein.opaque"
)

// Certificates returns the proxy's current certificate.
type Certificates func() *tls.Certificate

// Client is the configuration for connecting to a peer proxy that must present identity.
func Client(certs Certificates, roots *x509.CertPool, identity string, alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: alpn,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := certs(); c != nil {
				return c, nil
			}
			return nil, errors.New("no workload certificate yet")
		},
		// The peer is checked by its SPIFFE ID, not a DNS name, so the standard name check is
		// replaced by VerifyPeerCertificate below.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			got, err := verify(raw, roots, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if got != identity {
				return fmt.Errorf("peer is %s, not the expected %s", got, identity)
			}
			return nil
		},
	}
}

// Server is the configuration of the inbound side: it requires a client certificate that chains to
// the trust bundle; PeerIdentity reads the identity from the connection state.
func Server(certs Certificates, roots *x509.CertPool, alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: alpn,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := certs(); c != nil {
				return c, nil
			}
			return nil, errors.New("no workload certificate yet")
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := verify(raw, roots, x509.ExtKeyUsageClientAuth)
			return err
		},
	}
}

// PeerIdentity is the SPIFFE ID of a verified peer.
func PeerIdentity(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) != 1 {
		return ""
	}
	return cs.PeerCertificates[0].URIs[0].String()
}

// verify checks a presented chain against the trust bundle and returns the leaf's SPIFFE ID.
func verify(raw [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage) (string, error) {
	if len(raw) == 0 {
		return "", errors.New("peer presented no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", fmt.Errorf("peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("peer certificate: %w", err)
	}
	if len(certs[0].URIs) != 1 || certs[0].URIs[0].Scheme != "spiffe" {
		return "", errors.New("peer certificate carries no SPIFFE ID")
	}
	return certs[0].URIs[0].String(), nil
}
