package identity

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
)

// BenchmarkCertifyGRPC measures certificates signed through the gRPC service over loopback TLS, the
// token check answered from the cache as it is for a proxy that renews. Run it with -cpu 1 for a
// figure per core; `make bench-identity` does, next to BenchmarkRawCreateCertificate.
func BenchmarkCertifyGRPC(b *testing.B) {
	svc, _ := testService(b, NewCachingReviewer(&usernameReviewer{}, time.Hour, 16))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &Server{Service: svc, Listener: lis, Namespace: "skein-system", ServiceAccount: "skein-controller", DNSNames: []string{"identity.test"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Start(ctx) }()

	roots := x509.NewCertPool()
	for _, a := range svc.CA.Issuer().Anchor {
		roots.AddCert(a)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "identity.test"})))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewIdentityClient(conn)
	req := validRequest(b)
	if _, err := client.Certify(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Certify(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawCreateCertificate is the floor: x509.CreateCertificate alone, with the same issuer and
// the same kind of leaf.
func BenchmarkRawCreateCertificate(b *testing.B) {
	svc, _ := testService(b, &usernameReviewer{})
	iss := svc.CA.Issuer()
	pub := p256(b).Public()
	id := mustParse(b, webID)
	b.ResetTimer()
	for b.Loop() {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now(), NotAfter: time.Now().Add(24 * time.Hour),
			URIs: []*url.URL{id.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, pub, iss.Key); err != nil {
			b.Fatal(err)
		}
	}
}
