// Command skein-controller is Skein's control plane: the operator that reconciles the mesh's CRDs,
// the identity service that certifies proxies, and the xDS service that configures them.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/skeinmesh/skein/controllers"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/internal/scheme"
	"github.com/skeinmesh/skein/internal/telemetry"
	"github.com/skeinmesh/skein/internal/xds"
)

type options struct {
	metricsAddr, probeAddr, identityAddr, xdsAddr string
	namespace, serviceAccount                     string
	leaderElect                                   bool
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the controller's own metrics are served on; 0 turns them off.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address /healthz and /readyz are served on.")
	flag.StringVar(&o.identityAddr, "identity-bind-address", ":8086", "Address the identity service (gRPC over TLS) is served on.")
	flag.StringVar(&o.xdsAddr, "xds-bind-address", ":8087", "Address the xDS service (ADS over gRPC with mTLS) is served on.")
	flag.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "skein-system"), "The control plane's namespace, where the trust chain lives.")
	flag.StringVar(&o.serviceAccount, "service-account", envOr("POD_SERVICE_ACCOUNT", "skein-controller"), "The control plane's ServiceAccount, for the identity service's own certificate.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Run the reconcilers in one replica at a time, chosen by leader election; every replica serves identities.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "Control plane stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme.New(),
		Cache:                   controllers.CacheOptions(o.namespace),
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "controller.mesh.skein.dev",
		LeaderElectionNamespace: o.namespace,
	})
	if err != nil {
		return err
	}
	scraped := telemetry.NewStore()
	if err := controllers.Setup(mgr, o.namespace, controllers.Options{WorkloadCertExpiry: scraped.SoonestCertExpiry}); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", o.identityAddr)
	if err != nil {
		return fmt.Errorf("listening for the identity service: %w", err)
	}
	var names []string
	for _, svc := range []string{"skein-identity", "skein-xds"} {
		names = append(names, svc+"."+o.namespace+".svc", svc+"."+o.namespace+".svc.cluster.local")
	}
	id, err := identity.AddToManager(mgr, identity.Options{
		Namespace: o.namespace, ServiceAccount: o.serviceAccount, Listener: lis, Metrics: metrics.Registry, DNSNames: names,
	})
	if err != nil {
		return err
	}
	xdsLis, err := net.Listen("tcp", o.xdsAddr)
	if err != nil {
		return fmt.Errorf("listening for the xDS service: %w", err)
	}
	if _, err := xds.AddToManager(mgr, xds.Options{
		Listener: xdsLis, Certificate: id.GetCertificate, Roots: id.Roots, Namespace: o.namespace, Metrics: metrics.Registry,
	}); err != nil {
		return err
	}
	if err := telemetry.AddToManager(mgr, scraped); err != nil {
		return fmt.Errorf("setting up telemetry: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
