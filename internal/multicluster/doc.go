// Package multicluster is the Link controller's view of a remote cluster: a watch of its Services
// through the credentials a Link names (Remote), the Services and EndpointSlices that mirror them
// here (Mirror), and the health of the remote gateway (Prober).
package multicluster
