// Package framework starts the real components Skein's suites run against: API servers (one per
// simulated cluster), cert-manager's controllers, and the control plane's controllers, run exactly as
// main.go runs them.
package framework

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
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/controllers"
	"github.com/skeinmesh/skein/internal/certmanager"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/internal/scheme"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/telemetry"
	"github.com/skeinmesh/skein/internal/xds"
	"github.com/skeinmesh/skein/webhooks"
)

// Cluster is a running API server; see localcluster.
type Cluster = localcluster.Cluster

// SystemNamespace is where Skein's control plane runs, and where cert-manager keeps the Secrets of
// ClusterIssuers (its cluster resource namespace).
const SystemNamespace = "skein-system"

// StartCluster starts an API server with Skein's CRDs and cert-manager's, and Skein's admission
// webhooks registered (a control plane started on it serves them). Call it again for a second
// cluster. Certificates are only issued once StartCertManager runs cert-manager against it.
func StartCluster() (*Cluster, error) {
	crds, err := certmanager.CRDDir()
	if err != nil {
		return nil, err
	}
	return localcluster.Start(localcluster.Options{CRDDirs: []string{crds}, Webhooks: true})
}

// StartCertManager runs cert-manager's controllers (see certmanager.Controllers) against c, with
// SystemNamespace, which it creates if missing, as their cluster resource namespace. Their log goes
// to cert-manager.log beside c's kubeconfig. Call stop before stopping c.
func StartCertManager(c *Cluster) (stop func() error, err error) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}}
	if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", SystemNamespace, err)
	}
	log, err := os.Create(filepath.Join(filepath.Dir(c.Kubeconfig), "cert-manager.log"))
	if err != nil {
		return nil, err
	}
	stopCertManager, err := certmanager.Start(ctx, certmanager.Options{
		Kubeconfig:               c.Kubeconfig,
		ClusterResourceNamespace: SystemNamespace,
		LogWriter:                log,
		LogVerbosity:             2,
	})
	if err != nil {
		return nil, errors.Join(err, log.Close())
	}
	return func() error { return errors.Join(stopCertManager(), log.Close()) }, nil
}

// ControlPlane is Skein's control plane running in this process against one cluster: its controllers
// and its identity service, wired as main.go wires them.
type ControlPlane struct {
	Manager ctrl.Manager
	// IdentityAddr is where the identity service listens.
	IdentityAddr string
	// XDSAddr is where the xDS service listens; XDS is the service.
	XDSAddr string
	XDS     *xds.Server
	// Metrics holds the control plane's own metrics (the identity and xDS services' counters).
	Metrics *prometheus.Registry

	identity *identity.Server
	cancel   context.CancelFunc
	done     chan error
}

// Mesh is where most suites start: an API server with cert-manager and a control plane running,
// and the MeshConfig sample applied and Ready.
type Mesh struct {
	*Cluster
	ControlPlane *ControlPlane
	// Anchors is the trust bundle (PEM); Roots holds the same certificates.
	Anchors []byte
	Roots   *x509.CertPool

	stopCertManager func() error
}

// StartMesh starts a Mesh; identityHost is as for StartControlPlane.
func StartMesh(ctx context.Context, identityHost ...string) (m *Mesh, err error) {
	m = &Mesh{}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Stop())
		}
	}()
	if m.Cluster, err = StartCluster(); err != nil {
		return m, err
	}
	if m.stopCertManager, err = StartCertManager(m.Cluster); err != nil {
		return m, err
	}
	if m.ControlPlane, err = StartControlPlane(m.Cluster, identityHost...); err != nil {
		return m, err
	}
	if m.Anchors, err = ApplyMeshConfig(ctx, m.Cluster); err != nil {
		return m, err
	}
	m.Roots = x509.NewCertPool()
	if !m.Roots.AppendCertsFromPEM(m.Anchors) {
		return m, errors.New("the trust bundle holds no certificate")
	}
	for deadline := time.Now().Add(time.Minute); m.ControlPlane.Issuer() == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return m, errors.New("the identity service loaded no issuer within a minute")
		}
	}
	return m, nil
}

// Stop stops what StartMesh started, the control plane first.
func (m *Mesh) Stop() error {
	var errs []error
	if m.ControlPlane != nil {
		errs = append(errs, m.ControlPlane.Stop())
	}
	if m.stopCertManager != nil {
		errs = append(errs, m.stopCertManager())
	}
	if m.Cluster != nil {
		errs = append(errs, m.Cluster.Stop())
	}
	return errors.Join(errs...)
}

// ApplyMeshConfig applies the MeshConfig sample, as a user would with kubectl, waits until the
// mesh is Ready (cert-manager and a control plane must run), and returns the trust bundle (PEM).
func ApplyMeshConfig(ctx context.Context, c *Cluster) ([]byte, error) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	sample, err := os.ReadFile(filepath.Join(root, "config", "samples", "mesh_v1alpha1_meshconfig.yaml"))
	if err != nil {
		return nil, err
	}
	return ApplyMeshConfigYAML(ctx, c, sample)
}

// ApplyMeshConfigYAML is ApplyMeshConfig with a MeshConfig of the caller's.
func ApplyMeshConfigYAML(ctx context.Context, c *Cluster, doc []byte) ([]byte, error) {
	if _, err := c.Kubectl(ctx, doc, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mc := &meshv1.MeshConfig{}
		bundle := &corev1.ConfigMap{}
		if c.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc) == nil &&
			meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1.ConditionReady) &&
			c.Client.Get(ctx, client.ObjectKey{Namespace: SystemNamespace, Name: meshv1.TrustBundleName}, bundle) == nil {
			return []byte(bundle.Data[meshv1.TrustBundleKey]), nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the MeshConfig did not become Ready within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// IdentityServerName and XDSServerName are names the control plane's certificate carries in tests.
// It carries LoopbackServerName too, for clients that cannot be told which name to verify:
// grpc-go's xDS client checks the certificate against the host of its bootstrap's server_uri and
// lets nothing override it, so a test's bootstrap points at "localhost:<port>".
const (
	IdentityServerName = "skein-identity." + SystemNamespace + ".svc"
	XDSServerName      = "skein-xds." + SystemNamespace + ".svc"
	LoopbackServerName = "localhost"
)

// StartControlPlane runs every reconciler, the identity service, the xDS service and c's admission
// webhooks against c until Stop. The control plane's namespace is SystemNamespace. The services
// listen on 127.0.0.1, or on identityHost when given (a bridge address that pods in network
// namespaces reach).
func StartControlPlane(c *Cluster, identityHost ...string) (*ControlPlane, error) {
	host := "127.0.0.1"
	if len(identityHost) > 0 {
		host = identityHost[0]
	}
	return StartControlPlaneWith(c.Config, ControlPlaneOptions{
		IdentityAddr: net.JoinHostPort(host, "0"), XDSAddr: net.JoinHostPort(host, "0"), Webhook: c.Webhook,
	})
}

// ControlPlaneOptions place a control plane started by StartControlPlaneWith.
type ControlPlaneOptions struct {
	// IdentityAddr and XDSAddr are where the services listen: a fixed port lets a test stop a
	// control plane and start another that its proxies find again.
	IdentityAddr, XDSAddr string
	// LeaderElection runs the reconcilers in one replica at a time, as the Deployment does with
	// several replicas. The identity and xDS services run in every replica regardless.
	LeaderElection bool
	// Webhook, when set, is where this control plane serves the admission webhooks (a Cluster's
	// Webhook). One control plane per cluster can, as they share its address.
	Webhook *localcluster.WebhookServing
}

// StartControlPlaneWith is StartControlPlane with every option.
func StartControlPlaneWith(cfg *rest.Config, o ControlPlaneOptions) (*ControlPlane, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Cache:                   controllers.CacheOptions(SystemNamespace),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "controller.mesh.skein.dev",
		LeaderElectionNamespace: SystemNamespace,
		// Several control planes may share a test process, one per simulated cluster.
		Controller:    config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhookServer(o.Webhook),
	})
	if err != nil {
		return nil, err
	}
	scraped := telemetry.NewStore()
	if err := controllers.Setup(mgr, SystemNamespace, controllers.Options{WorkloadCertExpiry: scraped.SoonestCertExpiry}); err != nil {
		return nil, err
	}
	if o.Webhook != nil {
		if err := webhooks.Setup(mgr, SystemNamespace); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("tcp", o.IdentityAddr)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	srv, err := identity.AddToManager(mgr, identity.Options{
		Namespace: SystemNamespace, ServiceAccount: "skein-controller", Listener: lis, Metrics: reg,
		DNSNames: []string{IdentityServerName, XDSServerName, LoopbackServerName},
	})
	if err != nil {
		return nil, errors.Join(err, lis.Close())
	}
	xdsLis, err := net.Listen("tcp", o.XDSAddr)
	if err != nil {
		return nil, errors.Join(err, lis.Close())
	}
	xdsSrv, err := xds.AddToManager(mgr, xds.Options{Listener: xdsLis, Certificate: srv.GetCertificate, Roots: srv.Roots, Namespace: SystemNamespace, Metrics: reg})
	if err != nil {
		return nil, errors.Join(err, lis.Close(), xdsLis.Close())
	}
	if err := telemetry.AddToManager(mgr, scraped); err != nil {
		return nil, errors.Join(err, lis.Close(), xdsLis.Close())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp := &ControlPlane{Manager: mgr, IdentityAddr: lis.Addr().String(), XDSAddr: xdsLis.Addr().String(), XDS: xdsSrv,
		Metrics: reg, identity: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { cp.done <- mgr.Start(ctx) }()
	syncCtx, cancelSync := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSync()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		cancel()
		return nil, fmt.Errorf("the control plane's caches did not sync: %w", <-cp.done)
	}
	if o.Webhook != nil {
		if err := o.Webhook.Wait(ctx); err != nil {
			cancel()
			return nil, errors.Join(err, <-cp.done)
		}
	}
	return cp, nil
}

// StartWebhooks serves c's admission webhooks alone, without the reconcilers, for suites that check
// what the API server admits and must see objects exactly as they stored them.
func StartWebhooks(c *Cluster) (stop func() error, err error) {
	if c.Webhook == nil {
		return nil, errors.New("the cluster was started without webhooks")
	}
	mgr, err := ctrl.NewManager(c.Config, ctrl.Options{
		Scheme:                 scheme.New(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          webhookServer(c.Webhook),
	})
	if err != nil {
		return nil, err
	}
	if err := webhooks.Setup(mgr, SystemNamespace); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if err := c.Webhook.Wait(ctx); err != nil {
		cancel()
		return nil, errors.Join(err, <-done)
	}
	return func() error { cancel(); return <-done }, nil
}

// webhookServer serves at w, or is nil (the manager's default, unused) without webhooks.
func webhookServer(w *localcluster.WebhookServing) webhook.Server {
	if w == nil {
		return nil
	}
	return webhook.NewServer(webhook.Options{Host: w.Host, Port: w.Port, CertDir: w.CertDir})
}

// Issuer is the issuer the identity service signs with now.
func (cp *ControlPlane) Issuer() *identity.Issuer { return cp.identity.Service.CA.Issuer() }

// WorkloadCertificate signs a certificate for id with the issuer in force, as the identity service
// would for a proxy.
func (cp *ControlPlane) WorkloadCertificate(id spiffe.ID) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf, err := cp.identity.Service.CA.Sign(id, nil, key.Public(), time.Hour, time.Minute, time.Now())
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: append([][]byte{leaf.DER}, leaf.Chain...), PrivateKey: key}, nil
}

// Stop stops the control plane and returns the error it stopped with, if any.
func (cp *ControlPlane) Stop() error {
	cp.cancel()
	return <-cp.done
}
