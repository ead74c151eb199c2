package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// +kubebuilder:rbac:groups="",resources=pods;services,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=trafficsplits,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshstatuses,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshstatuses/status,verbs=get;patch

// StatusWriter publishes the figures in the MeshStatuses: the mesh and a summary of each meshed
// namespace in the cluster-wide one, each namespace's services, workloads and TrafficSplits in a
// MeshStatus of its own (made when missing). It patches only the figures, which no one else
// writes; the MeshStatus controller owns health, meshed pods and certificate expiry.
type StatusWriter struct {
	Client client.Client
}

// NamespaceStatusName is the name of the MeshStatus the control plane makes for a meshed namespace
// that has none: the namespace's, except for the namespace whose name the cluster-wide MeshStatus
// has ("default-namespace", as in the sample).
func NamespaceStatusName(namespace string) string {
	if namespace == meshv1.MeshStatusName {
		return namespace + "-namespace"
	}
	return namespace
}

// Publish writes one round's figures.
func (w *StatusWriter) Publish(ctx context.Context, f *Figures, _ Settings) error {
	pods := &corev1.PodList{}
	if err := w.Client.List(ctx, pods); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	byNamespace := map[string][]*corev1.Pod{}
	meshed := map[string]bool{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !meshv1.InMeshScope(pod) {
			continue
		}
		byNamespace[pod.Namespace] = append(byNamespace[pod.Namespace], pod)
		if meshv1.IsMeshed(pod) {
			meshed[pod.Namespace] = true
		}
	}
	namespaces := make([]string, 0, len(meshed))
	for ns := range meshed {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)

	// Every MeshStatus that follows a namespace gets its figures, a user's too; a meshed
	// namespace that has none gets one.
	statuses := &meshv1.MeshStatusList{}
	if err := w.Client.List(ctx, statuses); err != nil {
		return fmt.Errorf("listing MeshStatuses: %w", err)
	}
	names := map[string][]string{}
	for _, ms := range statuses.Items {
		if ms.Spec.Namespace != "" {
			names[ms.Spec.Namespace] = append(names[ms.Spec.Namespace], ms.Name)
		}
	}
	var errs []error
	var summaries []meshv1.NamespaceSummary
	for _, ns := range namespaces {
		summaries = append(summaries, namespaceSummary(ns, byNamespace[ns], f))
		if len(names[ns]) == 0 {
			names[ns] = []string{NamespaceStatusName(ns)}
		}
	}
	for _, ns := range sortedKeys(names) {
		for _, name := range names[ns] {
			if err := w.publishNamespace(ctx, name, ns, byNamespace[ns], f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	err := w.patch(ctx, meshv1.MeshStatusName, "", false, func(st *meshv1.MeshStatusStatus) {
		st.GoldenMetrics = golden(f.Mesh)
		st.MTLSCoverage = percent(f.Mesh.MTLS)
		st.ConnectedProxies = int32(f.Proxies[""])
		st.Namespaces = summaries
		st.LastUpdateTime = &metav1.Time{Time: f.At}
	})
	return errors.Join(append(errs, err)...)
}

func namespaceSummary(ns string, pods []*corev1.Pod, f *Figures) meshv1.NamespaceSummary {
	s := meshv1.NamespaceSummary{Name: ns, Meshed: meshedOf(pods), ConnectedProxies: int32(f.Proxies[ns])}
	if g := f.Namespaces[ns]; g != nil {
		s.GoldenMetrics, s.MTLSCoverage = golden(g), percent(g.MTLS)
	}
	return s
}

func (w *StatusWriter) publishNamespace(ctx context.Context, name, ns string, pods []*corev1.Pod, f *Figures) error {
	services, err := w.services(ctx, ns, f)
	if err != nil {
		return err
	}
	splits, err := w.trafficSplits(ctx, ns, f)
	if err != nil {
		return err
	}
	workloads := w.workloads(ctx, ns, pods, f)
	return w.patch(ctx, name, ns, true, func(st *meshv1.MeshStatusStatus) {
		st.GoldenMetrics, st.MTLSCoverage = meshv1.GoldenMetrics{}, ""
		if g := f.Namespaces[ns]; g != nil {
			st.GoldenMetrics, st.MTLSCoverage = golden(g), percent(g.MTLS)
		}
		st.ConnectedProxies = int32(f.Proxies[ns])
		st.Services, st.Workloads, st.TrafficSplits = services, workloads, splits
		st.LastUpdateTime = &metav1.Time{Time: f.At}
	})
}

// patch applies set to a MeshStatus's status with a merge patch of what set changed. create makes
// the MeshStatus, covering namespace, when it is missing.
func (w *StatusWriter) patch(ctx context.Context, name, namespace string, create bool, set func(*meshv1.MeshStatusStatus)) error {
	ms := &meshv1.MeshStatus{}
	err := w.Client.Get(ctx, types.NamespacedName{Name: name}, ms)
	if apierrors.IsNotFound(err) && create {
		ms = &meshv1.MeshStatus{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: meshv1.MeshStatusSpec{Namespace: namespace}}
		err = w.Client.Create(ctx, ms)
	}
	if apierrors.IsNotFound(err) {
		return nil // the cluster-wide one is made by the MeshConfig controller
	}
	if err != nil {
		return fmt.Errorf("reading MeshStatus %s: %w", name, err)
	}
	before := ms.DeepCopy()
	set(&ms.Status)
	if err := w.Client.Status().Patch(ctx, ms, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("patching MeshStatus %s: %w", name, err)
	}
	return nil
}

// services lists a namespace's Services with how many of their endpoints are meshed, and the
// figures their meshed clients saw.
func (w *StatusWriter) services(ctx context.Context, ns string, f *Figures) ([]meshv1.ServiceStatus, error) {
	svcs := &corev1.ServiceList{}
	if err := w.Client.List(ctx, svcs, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing services in %s: %w", ns, err)
	}
	meshed, err := MeshedEndpoints(ctx, w.Client, ns)
	if err != nil {
		return nil, err
	}
	var out []meshv1.ServiceStatus
	for _, svc := range svcs.Items {
		key := ServiceKey{Namespace: ns, Name: svc.Name}
		st := meshv1.ServiceStatus{Name: svc.Name, Namespace: ns, Meshed: meshed[svc.Name]}
		if g := f.Services[key]; g != nil {
			st.GoldenMetrics = golden(g)
		}
		for _, name := range sortedKeys(f.Routes[key]) {
			r := meshv1.RouteStatus{Name: name, GoldenMetrics: golden(f.Routes[key][name])}
			r.TCPConnections = nil // connections are counted per Service, before any request is routed
			st.Routes = append(st.Routes, r)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// workloads groups a namespace's pods by workload.
func (w *StatusWriter) workloads(ctx context.Context, ns string, pods []*corev1.Pod, f *Figures) []meshv1.WorkloadStatus {
	groups := map[string][]*corev1.Pod{}
	for _, pod := range pods {
		name := WorkloadName(ctx, w.Client, pod)
		groups[name] = append(groups[name], pod)
	}
	var out []meshv1.WorkloadStatus
	for _, name := range sortedKeys(groups) {
		st := meshv1.WorkloadStatus{Name: name, Namespace: ns, Meshed: meshedOf(groups[name])}
		if g := f.Workloads[WorkloadKey{Namespace: ns, Name: name}]; g != nil {
			st.GoldenMetrics, st.MTLSCoverage = golden(g), percent(g.MTLS)
		}
		out = append(out, st)
	}
	return out
}

// trafficSplits reports each split's weights in force beside the share each backend took.
func (w *StatusWriter) trafficSplits(ctx context.Context, ns string, f *Figures) ([]meshv1.TrafficSplitSummary, error) {
	splits := &meshv1.TrafficSplitList{}
	if err := w.Client.List(ctx, splits, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing traffic splits in %s: %w", ns, err)
	}
	var out []meshv1.TrafficSplitSummary
	for _, ts := range splits.Items {
		apex := ServiceKey{Namespace: ns, Name: ts.Spec.Service}
		sum := meshv1.TrafficSplitSummary{Name: ts.Name, Namespace: ns, Apex: ts.Spec.Service}
		weights := map[string]int32{}
		for _, b := range ts.Status.Backends {
			weights[b.Service] = b.Weight
		}
		var total float64
		if g := f.Services[apex]; g != nil {
			total = g.RPS
		}
		for _, b := range ts.Spec.Backends {
			bs := meshv1.TrafficSplitBackendSummary{Service: b.Service, Weight: weights[b.Service]}
			if g := f.Backends[apex][ServiceKey{Namespace: ns, Name: b.Service}]; g != nil {
				bs.GoldenMetrics = golden(g)
				bs.TCPConnections = nil // connections are counted per Service addressed, not per backend
				if total > 0 {
					bs.ObservedShare = percent(ptrTo(g.RPS / total))
				}
			}
			sum.Backends = append(sum.Backends, bs)
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func meshedOf(pods []*corev1.Pod) string {
	n := 0
	for _, p := range pods {
		if meshv1.IsMeshed(p) {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(pods))
}

// golden writes figures as the API carries them: decimal strings.
func golden(g *Golden) meshv1.GoldenMetrics {
	conns := g.TCPConnections
	out := meshv1.GoldenMetrics{SuccessRate: percent(g.SuccessRate), LatencyP50: millis(g.P50), LatencyP95: millis(g.P95),
		LatencyP99: millis(g.P99), TCPConnections: &conns}
	if g.Responses > 0 {
		out.RPS = strconv.FormatFloat(g.RPS, 'f', 2, 64)
	}
	return out
}

// percent writes a share (0 to 1) in percent, as "99.50%"; "" when not observed.
func percent(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v*100, 'f', 2, 64) + "%"
}

// millis writes a latency in milliseconds as a duration, "12.5ms"; "" when not observed.
func millis(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', 1, 64) + "ms"
}

func ptrTo(v float64) *float64 { return &v }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
