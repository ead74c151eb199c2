package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
	"github.com/skeinmesh/skein/internal/spiffe"
)

// servingLifetime is how long the identity server's own certificate lasts; it is re-signed at a third
// of it left, and at once when the issuer changes.
const servingLifetime = 24 * time.Hour

// Server serves the identity service over TLS with a certificate it signs for itself with the
// current issuer, so that clients verify it against the trust bundle. It is a manager Runnable that
// every replica runs.
type Server struct {
	Service  *Service
	Listener net.Listener
	// Namespace and ServiceAccount make the server's own identity; DNSNames are the names clients
	// reach it by.
	Namespace, ServiceAccount string
	DNSNames                  []string

	mu   sync.Mutex
	cert *tls.Certificate
	by   *Issuer
}

// NeedLeaderElection is false: every control-plane replica serves identities.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx is done, then stops gracefully.
func (s *Server) Start(ctx context.Context) error {
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: s.GetCertificate})
	srv := grpc.NewServer(grpc.Creds(creds), grpc.MaxRecvMsgSize(4*MaxRequestBytes))
	pb.RegisterIdentityServer(srv, s.Service)
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	if err := srv.Serve(s.Listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving identity on %s: %w", s.Listener.Addr(), err)
	}
	return nil
}

// Roots are the trust anchors of the issuer in force, which workload certificates chain to.
func (s *Server) Roots() (*x509.CertPool, error) {
	iss := s.Service.CA.Issuer()
	if iss == nil {
		return nil, errors.New("no issuer loaded yet")
	}
	pool := x509.NewCertPool()
	for _, a := range iss.Anchor {
		pool.AddCert(a)
	}
	return pool, nil
}

// GetCertificate returns the serving certificate, re-signing it when the issuer changed or it ages.
func (s *Server) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	iss := s.Service.CA.Issuer()
	if iss == nil {
		return nil, errors.New("no issuer loaded yet")
	}
	if s.cert != nil && s.by == iss && time.Until(s.cert.Leaf.NotAfter) > servingLifetime/3 {
		return s.cert, nil
	}
	settings, err := s.Service.Settings(hello.Context())
	if err != nil {
		return nil, fmt.Errorf("reading the mesh configuration: %w", err)
	}
	id := spiffe.ID{TrustDomain: settings.TrustDomain, Namespace: s.Namespace, ServiceAccount: s.ServiceAccount}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf, err := s.Service.CA.Sign(id, s.DNSNames, key.Public(), servingLifetime, time.Minute, time.Now())
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: append([][]byte{leaf.DER}, leaf.Chain...), PrivateKey: key}
	if c.Leaf, err = leafCert(leaf); err != nil {
		return nil, err
	}
	s.cert, s.by = c, leaf.IssuerUsed
	return c, nil
}
