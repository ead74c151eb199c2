package localmesh

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// SharedAnchorSecret is the Secret ShareTrustAnchor writes in the second cluster, which
// SharedAnchorMeshConfig names: a second cluster's mesh with the first one's trust anchor, so that
// the two trust each other, and with its multicluster gateway.
const (
	SharedAnchorSecret     = "shared-anchor"
	SharedAnchorMeshConfig = `apiVersion: mesh.skein.dev/v1alpha1
kind: MeshConfig
metadata:
  name: default
spec:
  identity:
    trustAnchor:
      secretName: ` + SharedAnchorSecret + `
  multicluster:
    enabled: true
`
)

// ShareTrustAnchor copies the trust anchor's certificate and key from the control plane's
// namespace in one cluster to SharedAnchorSecret in the same namespace of another, as an operator
// linking two clusters would bring one anchor to both.
func ShareTrustAnchor(ctx context.Context, from, to client.Client, namespace string) error {
	anchor := &corev1.Secret{}
	if err := from.Get(ctx, client.ObjectKey{Namespace: namespace, Name: meshv1.TrustAnchorName}, anchor); err != nil {
		return fmt.Errorf("reading the trust anchor: %w", err)
	}
	shared := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: SharedAnchorSecret},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: anchor.Data[corev1.TLSCertKey], corev1.TLSPrivateKeyKey: anchor.Data[corev1.TLSPrivateKeyKey]},
	}
	if err := to.Create(ctx, shared); err != nil {
		return fmt.Errorf("writing the shared trust anchor: %w", err)
	}
	return nil
}
