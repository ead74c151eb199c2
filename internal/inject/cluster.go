package inject

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// ConfigFrom reads the injection Config from a cluster: the MeshConfig and the trust bundle in the
// control plane's namespace. The webhook reads them from its cache, `skein inject` from the API server.
func ConfigFrom(ctx context.Context, c client.Reader, controlPlaneNamespace string) (Config, error) {
	mc := &meshv1.MeshConfig{}
	if err := c.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		return Config{}, fmt.Errorf("reading MeshConfig %s: %w", meshv1.MeshConfigName, err)
	}
	bundle := &corev1.ConfigMap{}
	key := client.ObjectKey{Namespace: controlPlaneNamespace, Name: meshv1.TrustBundleName}
	if err := c.Get(ctx, key, bundle); err != nil {
		return Config{}, fmt.Errorf("reading the trust bundle, ConfigMap %s: %w", key, err)
	}
	return Config{Mesh: mc.Spec, ControlPlaneNamespace: controlPlaneNamespace, TrustAnchors: bundle.Data[meshv1.TrustBundleKey]}, nil
}

// NamespaceFrom reads what injection needs of a namespace; one that does not exist (yet) has no
// annotations.
func NamespaceFrom(ctx context.Context, c client.Reader, name string) (Namespace, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return Namespace{Name: name}, nil
		}
		return Namespace{}, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return Namespace{Name: name, Annotations: ns.Annotations}, nil
}
