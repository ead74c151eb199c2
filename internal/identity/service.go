package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/skeinmesh/skein/internal/identity/identitypb"
)

// Settings are the parts of the MeshConfig that Certify applies.
type Settings struct {
	TrustDomain string
	Lifetime    time.Duration
	ClockSkew   time.Duration
}

// Service implements the Identity gRPC service.
type Service struct {
	pb.UnimplementedIdentityServer

	CA       *CA
	Reviewer TokenReviewer
	Settings func(context.Context) (Settings, error)

	requests *prometheus.CounterVec
	now      func() time.Time
}

// NewService returns a Service whose outcomes are counted, by gRPC status code, in
// identity_certify_requests_total on reg.
func NewService(ca *CA, reviewer TokenReviewer, settings func(context.Context) (Settings, error), reg prometheus.Registerer) (*Service, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "identity_certify_requests_total",
		Help: "Certify requests answered by the identity service, by gRPC status code.",
	}, []string{"code"})
	if err := reg.Register(requests); err != nil {
		return nil, fmt.Errorf("registering the identity metrics: %w", err)
	}
	return &Service{CA: ca, Reviewer: reviewer, Settings: settings, requests: requests, now: time.Now}, nil
}

// Certify signs a certificate for the requested identity once the token proves it.
func (s *Service) Certify(ctx context.Context, req *pb.CertifyRequest) (*pb.CertifyResponse, error) {
	resp, err := s.certify(ctx, req)
	s.requests.WithLabelValues(status.Code(err).String()).Inc()
	return resp, err
}

func (s *Service) certify(ctx context.Context, req *pb.CertifyRequest) (*pb.CertifyResponse, error) {
	settings, err := s.Settings(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "the mesh configuration cannot be read: %v", err)
	}
	r, err := checkRequest(req, settings.TrustDomain)
	if err != nil {
		return nil, err
	}
	username, err := s.Reviewer.Review(ctx, r.token)
	switch {
	case errors.Is(err, ErrTokenRejected):
		return nil, status.Errorf(codes.Unauthenticated, "token: %v", err)
	case err != nil:
		// Fail closed: no certificate without a positive answer from the API server.
		return nil, status.Errorf(codes.Unavailable, "token: cannot be verified, so nothing is signed: %v", err)
	case username != r.id.Username():
		return nil, status.Errorf(codes.PermissionDenied, "token: authenticates %s, which may not take the identity %s", username, r.id)
	}
	leaf, err := s.CA.Sign(r.id, nil, r.key, settings.Lifetime, settings.ClockSkew, s.now())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "signing: %v", err)
	}
	return &pb.CertifyResponse{
		LeafCertificate:          leaf.DER,
		IntermediateCertificates: leaf.Chain,
		ValidUntil:               timestamppb.New(leaf.NotAfter),
	}, nil
}

// leafCert parses a signed leaf; used where the service signs for itself.
func leafCert(l *Leaf) (*x509.Certificate, error) { return x509.ParseCertificate(l.DER) }
