package controllers

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options are what the reconcilers may take from the control plane's other components.
type Options struct {
	// WorkloadCertExpiry is the telemetry component's soonest workload certificate expiry in a
	// namespace ("" for all), for the MeshStatuses.
	WorkloadCertExpiry func(namespace string) (time.Time, bool)
}

// Setup registers every reconciler with the manager. Tests call it too, so that they run the
// controllers exactly as the control plane does. namespace is the control plane's own; at most one
// Options may follow.
func Setup(mgr ctrl.Manager, namespace string, opts ...Options) error {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	mc := &MeshConfigReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("skein-meshconfig"), Namespace: namespace}
	if err := mc.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the MeshConfig controller: %w", err)
	}
	if err := (&MeshStatusReconciler{Client: mgr.GetClient(), WorkloadCertExpiry: o.WorkloadCertExpiry}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the MeshStatus controller: %w", err)
	}
	ts := &TrafficSplitReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("skein-trafficsplit")}
	if err := ts.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the TrafficSplit controller: %w", err)
	}
	if err := (&ExternalWorkloadReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ExternalWorkload controller: %w", err)
	}
	link := &LinkReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("skein-link"), Namespace: namespace}
	if err := link.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Link controller: %w", err)
	}
	return nil
}

// CacheOptions keep Secrets and ConfigMaps, which the control plane reads only in its own
// namespace, out of the cache for every other namespace.
func CacheOptions(namespace string) cache.Options {
	own := map[string]cache.Config{namespace: {}}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:    {Namespaces: own},
		&corev1.ConfigMap{}: {Namespaces: own},
	}}
}
