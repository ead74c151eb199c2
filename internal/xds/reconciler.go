package xds

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/spiffe"
)

// missingPodRetry is how soon a Service is compiled again when an endpoint names a pod the cache
// does not have yet: its identity decides whether the endpoint is reached over mTLS.
const missingPodRetry = time.Second

// ServiceReconciler compiles each Service, with its EndpointSlices and TrafficSplit, into the
// cache. A change to one Service touches only that Service's resources. It runs in every replica,
// not under leader election: each replica serves its own proxies.
type ServiceReconciler struct {
	client.Client
	Cache *Cache
}

// +kubebuilder:rbac:groups="",resources=services;pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=trafficsplits;externalworkloads;links,verbs=get;list;watch

// Reconcile compiles one Service.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	source := req.String()
	svc := &corev1.Service{}
	if err := r.Get(ctx, req.NamespacedName, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.Cache.Set(source, nil)
		}
		return ctrl.Result{}, err
	}
	mesh, err := r.meshConfig(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, slices, client.InNamespace(svc.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the EndpointSlices of %s: %w", source, err)
	}
	split, err := r.split(ctx, svc)
	if err != nil {
		return ctrl.Result{}, err
	}
	serving, err := r.serving(ctx, svc.Namespace, split)
	if err != nil {
		return ctrl.Result{}, err
	}
	ids := &identities{ctx: ctx, client: r.Client, trustDomain: mesh.Spec.TrustDomain, namespace: svc.Namespace}
	res := Compile(ServiceInput{
		Service: svc, Slices: slices.Items, Split: split, Identity: ids.of,
		Serving: func(s string) bool { return serving[s] },
		Opaque:  opaquePorts(mesh, svc),
	})
	if err := r.Cache.Set(source, res); err != nil {
		return ctrl.Result{}, err
	}
	if ids.missing {
		return ctrl.Result{RequeueAfter: missingPodRetry}, nil
	}
	return ctrl.Result{}, nil
}

// meshConfig is the MeshConfig with its defaults, or the defaults alone before one exists.
func (r *ServiceReconciler) meshConfig(ctx context.Context) (*meshv1.MeshConfig, error) {
	mc := &meshv1.MeshConfig{}
	err := r.Get(ctx, types.NamespacedName{Name: meshv1.MeshConfigName}, mc)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading the MeshConfig: %w", err)
	}
	if mc.Spec.TrustDomain == "" {
		mc.Spec.TrustDomain = "cluster.local"
	}
	return mc, nil
}

// split is the TrafficSplit whose apex is svc: the oldest, when several claim it.
func (r *ServiceReconciler) split(ctx context.Context, svc *corev1.Service) (*meshv1.TrafficSplit, error) {
	splits := &meshv1.TrafficSplitList{}
	if err := r.List(ctx, splits, client.InNamespace(svc.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the TrafficSplits of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	var apex []meshv1.TrafficSplit
	for _, s := range splits.Items {
		if s.Spec.Service == svc.Name && s.DeletionTimestamp == nil {
			apex = append(apex, s)
		}
	}
	if len(apex) == 0 {
		return nil, nil
	}
	sort.Slice(apex, func(i, j int) bool {
		a, b := apex[i].CreationTimestamp, apex[j].CreationTimestamp
		return a.Before(&b) || a.Equal(&b) && apex[i].Name < apex[j].Name
	})
	return &apex[0], nil
}

// serving are the split's backends whose Service exists and has a ready endpoint.
func (r *ServiceReconciler) serving(ctx context.Context, namespace string, split *meshv1.TrafficSplit) (map[string]bool, error) {
	out := map[string]bool{}
	if split == nil {
		return out, nil
	}
	names := []string{}
	for _, b := range split.Spec.Backends {
		names = append(names, b.Service)
	}
	for _, m := range split.Spec.Matches {
		names = append(names, m.Backend)
	}
	for _, name := range names {
		if _, done := out[name]; done {
			continue
		}
		svc := &corev1.Service{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, svc); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, err
			}
			out[name] = false
			continue
		}
		slices := &discoveryv1.EndpointSliceList{}
		if err := r.List(ctx, slices, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: name}); err != nil {
			return nil, err
		}
		out[name] = meshv1.ReadyEndpoints(slices.Items) > 0
	}
	return out, nil
}

// identities finds the workload identity behind each endpoint.
type identities struct {
	ctx                    context.Context
	client                 client.Client
	trustDomain, namespace string
	// missing is set when an endpoint names a workload not (yet) in the cache.
	missing bool
}

func (ids *identities) of(ep discoveryv1.Endpoint) string {
	ref := ep.TargetRef
	if ref == nil {
		return ""
	}
	ns := ref.Namespace
	if ns == "" {
		ns = ids.namespace
	}
	key := types.NamespacedName{Namespace: ns, Name: ref.Name}
	switch ref.Kind {
	case "Pod":
		pod := &corev1.Pod{}
		if err := ids.client.Get(ids.ctx, key, pod); err != nil {
			ids.missing = true
			return ""
		}
		if !meshv1.IsMeshed(pod) {
			return ""
		}
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		return spiffe.ID{TrustDomain: ids.trustDomain, Namespace: ns, ServiceAccount: sa}.String()
	case "ExternalWorkload":
		ew := &meshv1.ExternalWorkload{}
		if err := ids.client.Get(ids.ctx, key, ew); err != nil {
			ids.missing = true
			return ""
		}
		return ew.Spec.MeshTLS.Identity
	case "Link":
		// The endpoint is a linked cluster's gateway (a mirrored Service's), which presents the
		// identity its Link names.
		link := &meshv1.Link{}
		if err := ids.client.Get(ids.ctx, key, link); err != nil {
			ids.missing = true
			return ""
		}
		return link.Spec.GatewayIdentity
	}
	return ""
}

// opaquePorts are MeshConfig's opaque ports and those the Service's annotation adds.
func opaquePorts(mc *meshv1.MeshConfig, svc *corev1.Service) func(int32) bool {
	ports := map[int32]bool{}
	for _, p := range mc.Spec.Proxy.OpaquePorts {
		ports[p] = true
	}
	for _, f := range strings.Split(svc.Annotations[meshv1.OpaquePortsAnnotation], ",") {
		if p, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32); err == nil {
			ports[int32(p)] = true
		}
	}
	return func(p int32) bool { return ports[p] }
}

// apexesOf are the apex Services of the TrafficSplits that send traffic to service.
func (r *ServiceReconciler) apexesOf(ctx context.Context, namespace, service string) []reconcile.Request {
	splits := &meshv1.TrafficSplitList{}
	if err := r.List(ctx, splits, client.InNamespace(namespace)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, s := range splits.Items {
		names := []string{}
		for _, b := range s.Spec.Backends {
			names = append(names, b.Service)
		}
		for _, m := range s.Spec.Matches {
			names = append(names, m.Backend)
		}
		if contains(names, service) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: namespace, Name: s.Spec.Service}})
		}
	}
	return reqs
}

// servicesOf are the Services whose EndpointSlices point at a workload.
func (r *ServiceReconciler) servicesOf(ctx context.Context, namespace, kind, name string) []reconcile.Request {
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, slices, client.InNamespace(namespace)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, s := range slices.Items {
		svc := s.Labels[discoveryv1.LabelServiceName]
		for _, ep := range s.Endpoints {
			if ref := ep.TargetRef; svc != "" && ref != nil && ref.Kind == kind && ref.Name == name {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: namespace, Name: svc}})
				break
			}
		}
	}
	return reqs
}

// mirroredBy are the Services a Link mirrors, in any namespace.
func (r *ServiceReconciler) mirroredBy(ctx context.Context, namespace, name string) []reconcile.Request {
	services := &corev1.ServiceList{}
	if err := r.List(ctx, services, client.MatchingLabels{meshv1.LinkLabel: namespace + "." + name}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(services.Items))
	for _, s := range services.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
	}
	return reqs
}

// SetupWithManager compiles a Service again when it, one of its EndpointSlices, a TrafficSplit
// naming it as apex, an ExternalWorkload among its endpoints, the Link that mirrors it, or the
// MeshConfig changes.
func (r *ServiceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	bySliceOwner := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[discoveryv1.LabelServiceName]
		if name == "" {
			return nil
		}
		return append(r.apexesOf(ctx, o.GetNamespace(), name),
			reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}})
	})
	// A backend that comes or goes changes its apex's shares.
	byBackend := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.apexesOf(ctx, o.GetNamespace(), o.GetName())
	})
	byApex := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		ts, ok := o.(*meshv1.TrafficSplit)
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ts.Namespace, Name: ts.Spec.Service}}}
	})
	// An ExternalWorkload's identity may change; a pod's ServiceAccount cannot, and a pod missing
	// when its Service compiled is retried (missingPodRetry), so pods need no watch of their own.
	byWorkload := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.servicesOf(ctx, o.GetNamespace(), "ExternalWorkload", o.GetName())
	})
	// A Link's gateway identity is its mirrored Services' endpoints' identity. They live in the
	// remote Services' namespaces, found by their LinkLabel.
	byLink := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.mirroredBy(ctx, o.GetNamespace(), o.GetName())
	})
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		services := &corev1.ServiceList{}
		if err := r.List(ctx, services); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(services.Items))
		for _, s := range services.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("xds").
		For(&corev1.Service{}).
		Watches(&corev1.Service{}, byBackend).
		Watches(&discoveryv1.EndpointSlice{}, bySliceOwner).
		Watches(&meshv1.TrafficSplit{}, byApex).
		Watches(&meshv1.ExternalWorkload{}, byWorkload).
		Watches(&meshv1.Link{}, byLink).
		Watches(&meshv1.MeshConfig{}, all).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), MaxConcurrentReconciles: 2}).
		Complete(r)
}
