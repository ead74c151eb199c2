package telemetry

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// MeshedEndpoints says, for each Service of a namespace that has endpoints, how many of them are
// meshed pods, as "meshed/total". MeshStatus and `skein stat --prometheus-url` both show it.
func MeshedEndpoints(ctx context.Context, c client.Reader, namespace string) (map[string]string, error) {
	slices := &discoveryv1.EndpointSliceList{}
	if err := c.List(ctx, slices, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing endpoint slices in %s: %w", namespace, err)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", namespace, err)
	}
	meshedPod := map[string]bool{}
	for i := range pods.Items {
		meshedPod[pods.Items[i].Name] = meshv1.IsMeshed(&pods.Items[i])
	}
	type count struct{ meshed, total int }
	endpoints := map[string]*count{}
	for _, sl := range slices.Items {
		svc := sl.Labels[discoveryv1.LabelServiceName]
		n := endpoints[svc]
		if n == nil {
			n = &count{}
			endpoints[svc] = n
		}
		for _, ep := range sl.Endpoints {
			n.total++
			// An ExternalWorkload's endpoints are published only while its proxy is connected.
			if ref := ep.TargetRef; ref != nil && (ref.Kind == "Pod" && meshedPod[ref.Name] || ref.Kind == "ExternalWorkload") {
				n.meshed++
			}
		}
	}
	out := make(map[string]string, len(endpoints))
	for svc, n := range endpoints {
		out[svc] = fmt.Sprintf("%d/%d", n.meshed, n.total)
	}
	return out, nil
}
