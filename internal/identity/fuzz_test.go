package identity

import (
	"context"
	"crypto/x509"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
)

// FuzzCertify drives the whole Certify path with arbitrary requests: it must never panic, and
// whatever it signs must be for the requested identity, whose ServiceAccount the token authenticates.
func FuzzCertify(f *testing.F) {
	valid := validRequest(f)
	f.Add(valid.Identity, valid.Token, valid.CertificateSigningRequest)
	f.Add(valid.Identity, []byte("system:serviceaccount:shop:db"), valid.CertificateSigningRequest)
	f.Add("spiffe://cluster.local/ns/shop/sa/db", valid.Token, valid.CertificateSigningRequest)
	f.Add(valid.Identity, valid.Token, csrFor(f, rsaKey(f, 1024), webID))
	f.Add(valid.Identity, valid.Token, []byte{0x30, 0x82, 0x01})
	f.Add("spiffe://cluster.local/ns/%2e%2e/sa/web", valid.Token, valid.CertificateSigningRequest)
	f.Add("", []byte{}, []byte{})

	svc, _ := testService(f, &usernameReviewer{})
	f.Fuzz(func(t *testing.T, identity string, token, csr []byte) {
		req := &pb.CertifyRequest{Identity: identity, Token: token, CertificateSigningRequest: csr}
		resp, err := svc.Certify(context.Background(), req)
		if err != nil {
			return
		}
		leaf, err := x509.ParseCertificate(resp.LeafCertificate)
		if err != nil {
			t.Fatalf("signed an unparsable certificate: %v", err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != identity {
			t.Fatalf("signed %v for a request for %q", leaf.URIs, identity)
		}
		id := mustParse(t, identity)
		if string(token) != id.Username() {
			t.Fatalf("signed %s for a token of %q", identity, token)
		}
		if proto.Size(req) > MaxRequestBytes {
			t.Fatalf("signed an oversized request")
		}
	})
}
