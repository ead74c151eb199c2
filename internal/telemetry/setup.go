package telemetry

import (
	ctrl "sigs.k8s.io/controller-runtime"
)

// AddToManager runs the telemetry component in the manager's leader: it scrapes the proxies into
// store and writes the figures into the MeshStatuses.
func AddToManager(mgr ctrl.Manager, store *Store) error {
	w := &StatusWriter{Client: mgr.GetClient()}
	c := &Component{Client: mgr.GetClient(), Store: store, Publish: w.Publish}
	return mgr.Add(c)
}
