package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/xdsnames"
)

// ReasonConfigRejected is the reason of the Warning event on a pod whose proxy rejected (NACKed)
// configuration.
const ReasonConfigRejected = "ConfigRejected"

// Options place the xDS service in the control plane.
type Options struct {
	// Listener is where xDS is served.
	Listener net.Listener
	// Certificate is the server's own certificate (identity.Server.GetCertificate).
	Certificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Roots are the trust anchors client certificates must chain to, used until the trust bundle
	// exists in Namespace (see BundleRoots).
	Roots func() (*x509.CertPool, error)
	// Namespace is the control plane's, where the trust bundle is.
	Namespace string
	// Metrics is where the service's counters are registered.
	Metrics prometheus.Registerer
}

// AddToManager runs the xDS service in the manager: the compiler, which keeps the cache, and the
// server. Both run in every replica.
func AddToManager(mgr ctrl.Manager, o Options) (*Server, error) {
	c := NewCache()
	if err := (&ServiceReconciler{Client: mgr.GetClient(), Cache: c}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the xDS compiler: %w", err)
	}
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_xds_rejected_total", Help: "Responses that xDS clients rejected (NACKed), by resource type.",
	}, []string{"type"})
	updates := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_xds_resource_updates_total", Help: "Resources changed or removed in the xDS cache, by type.",
	}, []string{"type"})
	for _, m := range []prometheus.Collector{rejected, updates} {
		if err := o.Metrics.Register(m); err != nil {
			return nil, err
		}
	}
	c.OnUpdate = func(typ string, changed, removed int) { updates.WithLabelValues(typ).Add(float64(changed + removed)) }
	srv := &Server{
		Cache: c, Listener: o.Listener, Certificate: o.Certificate, Roots: BundleRoots(mgr.GetClient(), o.Namespace, o.Roots),
		Authorizer: &KubeAuthorizer{Client: mgr.GetClient()},
		Reporter:   &EventReporter{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("skein-xds"), Counter: rejected, Log: ctrl.Log.WithName("xds")},
		Log:        ctrl.Log.WithName("xds"),
	}
	if err := mgr.Add(NewHeartbeat(mgr.GetClient(), srv, ctrl.Log.WithName("xds-heartbeat"))); err != nil {
		return nil, err
	}
	return srv, mgr.Add(srv)
}

// KubeAuthorizer lets a workload speak only for its own pods and ExternalWorkloads: the node's
// pod must run as the certificate's ServiceAccount, or the ExternalWorkload must have its identity.
type KubeAuthorizer struct {
	Client client.Reader
}

// Authorize implements Authorizer.
func (a *KubeAuthorizer) Authorize(ctx context.Context, node *corev3.Node, id spiffe.ID) error {
	name, ns, err := xdsnames.ParseNodeID(node.GetId())
	if err != nil {
		return err
	}
	if ns != id.Namespace {
		return fmt.Errorf("node %s is in namespace %s but the certificate is for %s", node.GetId(), ns, id)
	}
	key := types.NamespacedName{Namespace: ns, Name: name}
	pod := &corev1.Pod{}
	switch err := a.Client.Get(ctx, key, pod); {
	case err == nil:
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		if sa != id.ServiceAccount {
			return fmt.Errorf("pod %s runs as ServiceAccount %s but the certificate is for %s", key, sa, id)
		}
		return nil
	case !apierrors.IsNotFound(err):
		return err
	}
	ew := &meshv1.ExternalWorkload{}
	switch err := a.Client.Get(ctx, key, ew); {
	case err == nil:
		if ew.Spec.MeshTLS.Identity != id.String() {
			return fmt.Errorf("ExternalWorkload %s has identity %s but the certificate is for %s", key, ew.Spec.MeshTLS.Identity, id)
		}
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("node %s is neither a pod nor an ExternalWorkload", node.GetId())
	default:
		return err
	}
}

// EventReporter reports a rejected response as a Warning event on the node's pod (or
// ExternalWorkload), a counter and a log line.
type EventReporter struct {
	Client   client.Reader
	Recorder recorder.EventRecorder
	Counter  *prometheus.CounterVec
	Log      logr.Logger
}

// Rejected implements Reporter.
func (r *EventReporter) Rejected(node *corev3.Node, typeURL, message string) {
	r.Counter.WithLabelValues(typeURL).Inc()
	r.Log.Info("A proxy rejected its configuration", "node", node.GetId(), "type", typeURL, "reason", message)
	name, ns, err := xdsnames.ParseNodeID(node.GetId())
	if err != nil {
		return
	}
	key := types.NamespacedName{Namespace: ns, Name: name}
	var obj client.Object = &corev1.Pod{}
	if err := r.Client.Get(context.Background(), key, obj); err != nil {
		obj = &meshv1.ExternalWorkload{}
		if err := r.Client.Get(context.Background(), key, obj); err != nil {
			return
		}
	}
	r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonConfigRejected, "ApplyConfig", "The proxy rejected %s: %s", typeURL, message)
}

// BundleRoots are the anchors of the trust bundle ConfigMap, every anchor in force, so that during a
// rotation (A, then A+B, then B) a proxy whose certificate still chains to A keeps its configuration.
// Before the bundle exists, fallback's anchors serve.
func BundleRoots(c client.Reader, namespace string, fallback func() (*x509.CertPool, error)) func() (*x509.CertPool, error) {
	return func() (*x509.CertPool, error) {
		cm := &corev1.ConfigMap{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: meshv1.TrustBundleName}, cm); err != nil {
			return fallback()
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cm.Data[meshv1.TrustBundleKey])) {
			return fallback()
		}
		return pool, nil
	}
}
