package identity

import (
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Options place the identity service in the control plane.
type Options struct {
	// Namespace is the control plane's namespace, where the issuer Secret is.
	Namespace string
	// ServiceAccount is the control plane's, for the identity server's own certificate.
	ServiceAccount string
	// Listener is where Certify is served.
	Listener net.Listener
	// DNSNames are the names proxies reach the identity service by.
	DNSNames []string
	// Metrics is where the service's counters are registered.
	Metrics prometheus.Registerer
}

// TokenReview answers are kept this long, and at most this many TokenReviews are in flight.
const (
	reviewCacheTTL   = 10 * time.Second
	maxReviewsAtOnce = 16
)

// AddToManager runs the identity service in the manager: the issuer loader and the gRPC server.
func AddToManager(mgr ctrl.Manager, o Options) (*Server, error) {
	ca := &CA{}
	reviewer := NewCachingReviewer(&KubeTokenReviewer{Client: mgr.GetClient()}, reviewCacheTTL, maxReviewsAtOnce)
	svc, err := NewService(ca, reviewer, MeshConfigSettings(mgr.GetClient()), o.Metrics)
	if err != nil {
		return nil, err
	}
	loader := &IssuerLoader{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("skein-identity"), CA: ca, Namespace: o.Namespace}
	if err := loader.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the issuer loader: %w", err)
	}
	srv := &Server{Service: svc, Listener: o.Listener, Namespace: o.Namespace, ServiceAccount: o.ServiceAccount, DNSNames: o.DNSNames}
	if err := mgr.Add(srv); err != nil {
		return nil, err
	}
	return srv, nil
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
