// Package webhooks holds Skein's admission webhooks: the pod injector, which meshes pods, and checks
// on the mesh's resources that need to look at other objects, which CEL in the CRDs cannot. The
// manager's webhook server serves them; the configurations that register them are generated from
// the markers here into config/webhook.
package webhooks

import (
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// Setup registers every webhook with mgr's webhook server; namespace is the control plane's.
func Setup(mgr ctrl.Manager, namespace string) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &corev1.Pod{}).
		WithDefaulter(&PodInjector{Reader: mgr.GetAPIReader(), Namespace: namespace}).
		Complete(); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &meshv1.TrafficSplit{}).
		WithValidator(&TrafficSplitValidator{Reader: mgr.GetAPIReader()}).
		Complete()
}
