package telemetry

import (
	ctrl "sigs.k8s.io/controller-runtime"
)

// AddToManager runs the telemetry component in the manager's leader: it scrapes the proxies and
// writes the figures into the MeshStatuses. The returned store holds what was scraped.
func AddToManager(mgr ctrl.Manager) (*Store, error) {
	store := NewStore()
	w := &StatusWriter{Client: mgr.GetClient()}
	c := &Component{Client: mgr.GetClient(), Store: store, Publish: w.Publish}
	return store, mgr.Add(c)
}
