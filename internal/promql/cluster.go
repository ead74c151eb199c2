package promql

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/telemetry"
)

// KubeCluster reads workloads and TrafficSplits from the API server, naming workloads as the
// control plane does (telemetry.WorkloadName), so that both sources' rows have the same names.
type KubeCluster struct {
	Client client.Reader
}

var _ Cluster = KubeCluster{}

// Services lists the Services of a namespace ("" for all) with how many of their endpoints are
// meshed pods.
func (k KubeCluster) Services(ctx context.Context, namespace string) ([]ServiceEndpoints, error) {
	svcs := &corev1.ServiceList{}
	if err := k.Client.List(ctx, svcs, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	meshed := map[string]map[string]string{} // by namespace, then Service
	out := make([]ServiceEndpoints, 0, len(svcs.Items))
	for _, svc := range svcs.Items {
		if _, ok := meshed[svc.Namespace]; !ok {
			m, err := telemetry.MeshedEndpoints(ctx, k.Client, svc.Namespace)
			if err != nil {
				return nil, err
			}
			meshed[svc.Namespace] = m
		}
		out = append(out, ServiceEndpoints{Namespace: svc.Namespace, Name: svc.Name, Meshed: meshed[svc.Namespace][svc.Name]})
	}
	return out, nil
}

// pods are the pods of a namespace ("" for all) that the control plane counts: running or to run,
// and not on the host's network, which no proxy can mesh.
func (k KubeCluster) pods(ctx context.Context, namespace string) ([]*corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := k.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		pod := &list.Items[i]
		if !meshv1.InMeshScope(pod) {
			continue
		}
		pods = append(pods, pod)
	}
	return pods, nil
}

// Workloads groups the pods of a namespace ("" for all) by workload.
func (k KubeCluster) Workloads(ctx context.Context, namespace string) ([]WorkloadPods, error) {
	pods, err := k.pods(ctx, namespace)
	if err != nil {
		return nil, err
	}
	type key struct{ namespace, name string }
	groups := map[key]*WorkloadPods{}
	meshed := map[key]int{}
	for _, pod := range pods {
		name := telemetry.WorkloadName(ctx, k.Client, pod)
		kk := key{pod.Namespace, name}
		w, ok := groups[kk]
		if !ok {
			w = &WorkloadPods{Namespace: pod.Namespace, Name: name}
			groups[kk] = w
		}
		w.Pods = append(w.Pods, pod.Name)
		if meshv1.IsMeshed(pod) {
			meshed[kk]++
		}
	}
	out := make([]WorkloadPods, 0, len(groups))
	for kk, w := range groups {
		w.Meshed = fmt.Sprintf("%d/%d", meshed[kk], len(w.Pods))
		out = append(out, *w)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// TrafficSplits lists the splits of a namespace ("" for all), each backend with the weight its
// controller says is in force (0 when it names none).
func (k KubeCluster) TrafficSplits(ctx context.Context, namespace string) ([]TrafficSplit, error) {
	list := &meshv1.TrafficSplitList{}
	if err := k.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing TrafficSplits: %w", err)
	}
	var out []TrafficSplit
	for _, ts := range list.Items {
		inForce := map[string]int32{}
		for _, b := range ts.Status.Backends {
			inForce[b.Service] = b.Weight
		}
		split := TrafficSplit{Namespace: ts.Namespace, Name: ts.Name, Apex: ts.Spec.Service}
		for _, b := range ts.Spec.Backends {
			split.Backends = append(split.Backends, Backend{Service: b.Service, Weight: inForce[b.Service]})
		}
		out = append(out, split)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
