package identity

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
)

func TestCertifySignsTheRequestedIdentity(t *testing.T) {
	svc, _ := testService(t, &usernameReviewer{})
	resp, err := svc.Certify(context.Background(), validRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.LeafCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != webID {
		t.Errorf("leaf URIs = %v, want [%s]", leaf.URIs, webID)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 24*time.Hour+20*time.Second {
		t.Errorf("lifetime with clock skew = %s, want 24h0m20s", got)
	}
	if !resp.ValidUntil.AsTime().Equal(leaf.NotAfter) {
		t.Errorf("valid_until %s differs from the leaf's NotAfter %s", resp.ValidUntil.AsTime(), leaf.NotAfter)
	}
	if _, err := svc.CA.Issuer().verify(leaf, time.Now()); err != nil {
		t.Errorf("leaf does not chain to the anchor: %v", err)
	}
}

func TestCertifyRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, r *pb.CertifyRequest)
		code   codes.Code
		says   string
	}{
		{"an identity that is not the token's", func(t *testing.T, r *pb.CertifyRequest) {
			r.Token = []byte("system:serviceaccount:shop:db")
		}, codes.PermissionDenied, "authenticates system:serviceaccount:shop:db, which may not take the identity " + webID},
		{"a token the API server rejects", func(t *testing.T, r *pb.CertifyRequest) { r.Token = []byte("garbage") }, codes.Unauthenticated, "token rejected"},
		{"a TokenReview that errors", func(t *testing.T, r *pb.CertifyRequest) { r.Token = []byte("error") }, codes.Unavailable, "cannot be verified"},
		{"a missing token", func(t *testing.T, r *pb.CertifyRequest) { r.Token = nil }, codes.InvalidArgument, "token: missing"},
		{"an identity that is not a SPIFFE ID", func(t *testing.T, r *pb.CertifyRequest) { r.Identity = "web" }, codes.InvalidArgument, "is not a SPIFFE ID"},
		{"another trust domain", func(t *testing.T, r *pb.CertifyRequest) {
			r.Identity = "spiffe://evil.example/ns/shop/sa/web"
		}, codes.InvalidArgument, `trust domain "evil.example" is not this mesh's`},
		{"a malformed CSR", func(t *testing.T, r *pb.CertifyRequest) { r.CertificateSigningRequest = []byte("not a CSR") }, codes.InvalidArgument, "certificate_signing_request: malformed"},
		{"a weak RSA key", func(t *testing.T, r *pb.CertifyRequest) {
			r.CertificateSigningRequest = csrFor(t, rsaKey(t, 1024), webID)
		}, codes.InvalidArgument, "RSA key of 1024 bits is too weak"},
		{"a CSR for another identity", func(t *testing.T, r *pb.CertifyRequest) {
			r.CertificateSigningRequest = csrFor(t, p256(t), "spiffe://cluster.local/ns/shop/sa/db")
		}, codes.InvalidArgument, "its only subject alternative name must be the URI " + webID},
		{"a CSR with an extra name", func(t *testing.T, r *pb.CertifyRequest) {
			r.CertificateSigningRequest = csrFor(t, p256(t), webID, "spiffe://cluster.local/ns/shop/sa/db")
		}, codes.InvalidArgument, "its only subject alternative name must be the URI"},
		{"an oversized request", func(t *testing.T, r *pb.CertifyRequest) {
			r.Token = []byte(strings.Repeat("x", MaxRequestBytes))
		}, codes.ResourceExhausted, "exceeds the limit of 16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, reg := testService(t, &usernameReviewer{})
			req := validRequest(t)
			tt.mutate(t, req)
			_, err := svc.Certify(context.Background(), req)
			st, _ := status.FromError(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.says) {
				t.Errorf("Certify = %v, want %s containing %q", err, tt.code, tt.says)
			}
			if got := testutil.ToFloat64(svc.requests.WithLabelValues(tt.code.String())); got != 1 {
				t.Errorf("identity_certify_requests_total{code=%q} = %v, want 1", tt.code, got)
			}
			if n, _ := testutil.GatherAndCount(reg, "identity_certify_requests_total"); n != 1 {
				t.Errorf("%d series, want only the rejection's", n)
			}
		})
	}
}

func TestCertifyWithoutIssuerIsUnavailable(t *testing.T) {
	svc, _ := testService(t, &usernameReviewer{})
	svc.CA = &CA{}
	_, err := svc.Certify(context.Background(), validRequest(t))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Certify = %v, want Unavailable", err)
	}
}

func TestLeafNeverOutlivesItsIssuer(t *testing.T) {
	c, k, a := testIssuer(t, time.Now().Add(time.Hour))
	iss, err := ParseIssuer(c, k, a, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{}
	ca.SetIssuer(iss)
	leaf, err := ca.Sign(mustParse(t, webID), nil, p256(t).Public(), 24*time.Hour, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.NotAfter.Equal(iss.Cert.NotAfter) {
		t.Errorf("leaf expires %s, after its issuer %s", leaf.NotAfter, iss.Cert.NotAfter)
	}
}

func TestParseIssuerRefusesWhatCannotSign(t *testing.T) {
	c, k, a := testIssuer(t, time.Now().Add(time.Hour))
	_, _, otherAnchor := testIssuer(t, time.Now().Add(time.Hour))
	_, otherKey, _ := testIssuer(t, time.Now().Add(time.Hour))
	tests := []struct {
		name          string
		cert, key, ca []byte
		now           time.Time
		says          string
	}{
		{"a key that does not match", c, otherKey, a, time.Now(), "certificate and key"},
		{"an expired issuer", c, k, a, time.Now().Add(2 * time.Hour), "expired"},
		{"another anchor", c, k, otherAnchor, time.Now(), "does not chain to its trust anchor"},
		{"no anchor", c, k, nil, time.Now(), "trust anchor"},
	}
	for _, tt := range tests {
		if _, err := ParseIssuer(tt.cert, tt.key, tt.ca, tt.now); err == nil || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: ParseIssuer = %v, want an error containing %q", tt.name, err, tt.says)
		}
	}
}
