// Package inject adds Skein's data plane to a pod template: the skein-proxy sidecar, the proxy-init
// init container, the identity token volume and the metrics annotations. The pod injector webhook
// (package webhooks) and `skein inject` are thin wrappers around it, so that a pod meshed by either
// comes out the same.
package inject
