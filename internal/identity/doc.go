// Package identity is the mesh's certificate authority. Its gRPC service, Certify, signs a short-lived
// certificate for a workload identity once a TokenReview has proved that the caller's ServiceAccount
// token is that identity's. It signs with the issuer that cert-manager issues and renews, and switches
// to a renewed issuer without failing a request.
package identity
