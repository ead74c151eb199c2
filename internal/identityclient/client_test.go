package identityclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
)

func TestRenewalDelay(t *testing.T) {
	now := time.Now()
	for range 100 {
		d := renewalDelay(now, now.Add(24*time.Hour), 0.7)
		if d < time.Duration(0.63*float64(24*time.Hour)) || d > time.Duration(0.77*float64(24*time.Hour)) {
			t.Fatalf("renewal after %s of a 24h certificate, want 70%% ± 10%%", d)
		}
	}
	if d := renewalDelay(now, now.Add(-time.Second), 0.7); d != 0 {
		t.Errorf("an expired certificate is renewed after %s, want at once", d)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		lo, hi   time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{4, 4 * time.Second, 8 * time.Second},
		{10, 30 * time.Second, time.Minute},
		{1000, 30 * time.Second, time.Minute},
	}
	for _, tt := range tests {
		for range 50 {
			if d := backoff(tt.failures, time.Second, time.Minute); d < tt.lo || d > tt.hi {
				t.Errorf("backoff after %d failures = %s, want within [%s, %s]", tt.failures, d, tt.lo, tt.hi)
			}
		}
	}
}

// flakyCA signs short certificates, failing while fail is set.
type flakyCA struct {
	pb.UnimplementedIdentityServer
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	lifetime time.Duration
	fail     atomic.Bool
	calls    atomic.Int32
}

func (f *flakyCA) Certify(_ context.Context, req *pb.CertifyRequest) (*pb.CertifyResponse, error) {
	f.calls.Add(1)
	if f.fail.Load() {
		return nil, status.Error(codes.Unavailable, "the CA is away")
	}
	csr, err := x509.ParseCertificateRequest(req.CertificateSigningRequest)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-time.Second), NotAfter: now.Add(f.lifetime),
		URIs: csr.URIs, DNSNames: []string{"ca.test"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.cert, csr.PublicKey, f.key)
	if err != nil {
		return nil, err
	}
	return &pb.CertifyResponse{LeafCertificate: der, ValidUntil: timestamppb.New(tmpl.NotAfter)}, nil
}

// TestRunRenewsAndKeepsTheCertificateThroughFailures runs the client loop against a CA that issues
// 2-second certificates and then goes away for a while: the loop renews before expiry, keeps the last
// certificate while the CA fails, and picks up a new one when it returns.
func TestRunRenewsAndKeepsTheCertificateThroughFailures(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"ca.test"}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	root, _ := x509.ParseCertificate(der)
	ca := &flakyCA{cert: root, key: key, lifetime: 2 * time.Second}

	// The CA serves with a certificate it signs for itself.
	serverKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serverDER, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{"ca.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		root, serverKey.Public(), key)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}}})))
	pb.RegisterIdentityServer(srv, ca)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	tokenPath := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenPath, []byte("token"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Addr: lis.Addr().String(), ServerName: "ca.test", TrustAnchors: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Identity: "spiffe://cluster.local/ns/shop/sa/web", TokenPath: tokenPath, MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()

	<-c.Ready()
	first := c.Certificate()
	waitFor(t, 3*time.Second, func() bool { return c.Certificate() != first })
	if renewed := c.Certificate(); time.Until(first.Leaf.NotAfter) < 0 || renewed.Leaf.NotAfter.Before(first.Leaf.NotAfter) {
		t.Errorf("renewed at %s, after the first certificate expired at %s", time.Now(), first.Leaf.NotAfter)
	}

	ca.fail.Store(true)
	kept := c.Certificate()
	failedFrom := ca.calls.Load()
	waitFor(t, 5*time.Second, func() bool { return ca.calls.Load() >= failedFrom+3 })
	if c.Certificate() != kept {
		t.Error("the certificate changed while the CA failed")
	}
	if err := c.LastError(); err == nil || !strings.Contains(err.Error(), "certifying spiffe://cluster.local/ns/shop/sa/web") {
		t.Errorf("LastError while the CA fails: %v", err)
	}
	ca.fail.Store(false)
	waitFor(t, 3*time.Second, func() bool { return c.Certificate() != kept })
	waitFor(t, time.Second, func() bool { return c.LastError() == nil })
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
