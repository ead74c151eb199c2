// Package framework starts the real components Skein's suites run against: API servers (one per
// simulated cluster) and the control plane's controllers, run exactly as main.go runs them.
package framework

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/skeinmesh/skein/controllers"
	"github.com/skeinmesh/skein/internal/localcluster"
	"github.com/skeinmesh/skein/internal/scheme"
)

// Cluster is a running API server; see localcluster.
type Cluster = localcluster.Cluster

// StartCluster starts an API server with Skein's CRDs. Call it again for a second cluster.
func StartCluster() (*Cluster, error) {
	return localcluster.Start(localcluster.Options{})
}

// ControlPlane is Skein's controllers running in this process against one cluster.
type ControlPlane struct {
	Manager ctrl.Manager
	cancel  context.CancelFunc
	done    chan error
}

// StartControlPlane runs every reconciler against the API server at cfg until Stop.
func StartControlPlane(cfg *rest.Config) (*ControlPlane, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme.New(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Several control planes may share a test process, one per simulated cluster.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	if err := controllers.Setup(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp := &ControlPlane{Manager: mgr, cancel: cancel, done: make(chan error, 1)}
	go func() { cp.done <- mgr.Start(ctx) }()
	syncCtx, cancelSync := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSync()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		cancel()
		return nil, fmt.Errorf("the control plane's caches did not sync: %w", <-cp.done)
	}
	return cp, nil
}

// Stop stops the controllers and returns the error they stopped with, if any.
func (cp *ControlPlane) Stop() error {
	cp.cancel()
	return <-cp.done
}
