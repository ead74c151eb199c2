// Package webhooks holds Skein's admission webhooks: checks on the mesh's resources that need to look
// at other objects, which CEL in the CRDs cannot. The manager's webhook server serves them; the
// configurations that register them are generated from the markers here into config/webhook.
package webhooks

import (
	ctrl "sigs.k8s.io/controller-runtime"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// Setup registers every webhook with mgr's webhook server.
func Setup(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &meshv1.TrafficSplit{}).
		WithValidator(&TrafficSplitValidator{Reader: mgr.GetAPIReader()}).
		Complete()
}
