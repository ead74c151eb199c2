// Package certmanager runs cert-manager's own controllers, compiled from its Go module, inside this
// process against an API server, so that the tests and `skein demo` get certificates issued and
// renewed by the real cert-manager rather than by a stand-in.
package certmanager
