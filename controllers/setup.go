package controllers

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Setup registers every reconciler with the manager. Tests call it too, so that they run the
// controllers exactly as the control plane does.
func Setup(mgr ctrl.Manager) error {
	if err := (&MeshConfigReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("skein-meshconfig")}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the MeshConfig controller: %w", err)
	}
	if err := (&MeshStatusReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the MeshStatus controller: %w", err)
	}
	return nil
}
