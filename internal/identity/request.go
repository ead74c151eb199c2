package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
	"github.com/skeinmesh/skein/internal/spiffe"
)

// MaxRequestBytes bounds a Certify request: a token and a CSR fit in a few kilobytes.
const MaxRequestBytes = 16 << 10

// minRSABits and maxRSABits bound the RSA keys signed; ECDSA P-256 is what proxies send.
const minRSABits, maxRSABits = 2048, 4096

// checkedRequest is a Certify request that passed every check that needs no API call.
type checkedRequest struct {
	id    spiffe.ID
	token string
	key   crypto.PublicKey
}

// checkRequest validates a request's shape, identity and CSR; it answers with the gRPC status to return.
func checkRequest(req *pb.CertifyRequest, trustDomain string) (*checkedRequest, error) {
	if n := proto.Size(req); n > MaxRequestBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "request of %d bytes exceeds the limit of %d", n, MaxRequestBytes)
	}
	id, err := spiffe.Parse(req.GetIdentity())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "identity: %v", err)
	}
	if id.TrustDomain != trustDomain {
		return nil, status.Errorf(codes.InvalidArgument, "identity: trust domain %q is not this mesh's %q", id.TrustDomain, trustDomain)
	}
	if len(req.GetToken()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "token: missing")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate_signing_request: malformed: %v", err)
	}
	// The key is checked before the signature, whose cost it decides.
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate_signing_request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate_signing_request: bad signature: %v", err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() || len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "certificate_signing_request: its only subject alternative name must be the URI %s, not %s", id, sansOf(csr))
	}
	return &checkedRequest{id: id, token: string(req.GetToken()), key: csr.PublicKey}, nil
}

// checkKey accepts ECDSA on P-256 or P-384, Ed25519 and RSA of 2048 to 4096 bits.
func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s is not accepted; use P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits is too weak; use at least %d bits, or ECDSA P-256", k.N.BitLen(), minRSABits)
		}
		if k.N.BitLen() > maxRSABits {
			return fmt.Errorf("RSA key of %d bits is larger than the %d accepted; use ECDSA P-256", k.N.BitLen(), maxRSABits)
		}
	default:
		return fmt.Errorf("key type %T is not accepted; use ECDSA P-256", pub)
	}
	return nil
}

func sansOf(csr *x509.CertificateRequest) string {
	var sans []string
	for _, u := range csr.URIs {
		sans = append(sans, "URI:"+u.String())
	}
	for _, d := range csr.DNSNames {
		sans = append(sans, "DNS:"+d)
	}
	for _, ip := range csr.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	for _, e := range csr.EmailAddresses {
		sans = append(sans, "email:"+e)
	}
	if len(sans) == 0 {
		return "none"
	}
	return fmt.Sprint(sans)
}
