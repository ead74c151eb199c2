package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// MeshStatusReconciler fills each MeshStatus with what it observes: the control plane's health, how
// many pods are meshed and the soonest certificate expiry. The telemetry figures come from the
// telemetry component, whose every update brings this reconciler round again.
type MeshStatusReconciler struct {
	client.Client
	// WorkloadCertExpiry, when set, tells the soonest expiry among the workload certificates that
	// the proxies in a namespace ("" for all) present, as the telemetry component last scraped them.
	WorkloadCertExpiry func(namespace string) (time.Time, bool)
}

// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshstatuses,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshstatuses/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=links,verbs=get;list;watch

// Reconcile derives a MeshStatus's status from the MeshConfig and the pods in its scope.
func (r *MeshStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ms := &meshv1.MeshStatus{}
	if err := r.Get(ctx, req.NamespacedName, ms); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	p := newPatcher(r.Client, ms)
	defer func() {
		if err := p.patch(ctx, ms); err != nil {
			retErr = fmt.Errorf("patching MeshStatus %s: %w", ms.Name, err)
		}
	}()
	if !ms.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	ms.Status.ObservedGeneration = ms.Generation
	if err := r.reconcileHealth(ctx, ms); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileMeshedPods(ctx, ms); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileLinks(ctx, ms); err != nil {
		return ctrl.Result{}, err
	}
	meta.SetStatusCondition(&ms.Status.Conditions, metav1.Condition{
		Type: meshv1.ConditionReady, Status: metav1.ConditionTrue, Reason: meshv1.ReasonReconciled,
		Message: "The figures are current", ObservedGeneration: ms.Generation,
	})
	return ctrl.Result{}, nil
}

// reconcileHealth reads the control plane's health from the MeshConfig's conditions.
func (r *MeshStatusReconciler) reconcileHealth(ctx context.Context, ms *meshv1.MeshStatus) error {
	mc := &meshv1.MeshConfig{}
	err := r.Get(ctx, types.NamespacedName{Name: meshv1.MeshConfigName}, mc)
	if apierrors.IsNotFound(err) {
		ms.Status.Health, ms.Status.Window, ms.Status.CertificateExpiry = meshv1.HealthUnavailable, "", nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading MeshConfig: %w", err)
	}
	ms.Status.Health = healthOf(mc)
	ms.Status.Window = ""
	if w := mc.Spec.Telemetry.Window; w != nil {
		ms.Status.Window = w.Duration.String()
	}
	ms.Status.CertificateExpiry = nil
	if mc.Status.Issuer != nil {
		ms.Status.CertificateExpiry = mc.Status.Issuer.NotAfter
	}
	if r.WorkloadCertExpiry != nil {
		if t, ok := r.WorkloadCertExpiry(ms.Spec.Namespace); ok && (ms.Status.CertificateExpiry == nil || t.Before(ms.Status.CertificateExpiry.Time)) {
			ms.Status.CertificateExpiry = &metav1.Time{Time: t}
		}
	}
	return nil
}

// healthOf summarises a MeshConfig's conditions; a MeshConfig not yet observed is Unknown.
func healthOf(mc *meshv1.MeshConfig) meshv1.Health {
	conds := mc.Status.Conditions
	switch {
	case mc.Status.ObservedGeneration == 0:
		return meshv1.HealthUnknown
	case !meta.IsStatusConditionTrue(conds, meshv1.ConditionAvailable):
		return meshv1.HealthUnavailable
	case meta.IsStatusConditionTrue(conds, meshv1.ConditionDegraded):
		return meshv1.HealthDegraded
	default:
		return meshv1.HealthHealthy
	}
}

// reconcileMeshedPods counts the running pods in scope and those among them with a proxy.
func (r *MeshStatusReconciler) reconcileMeshedPods(ctx context.Context, ms *meshv1.MeshStatus) error {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(ms.Spec.Namespace)); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	var total, meshed int32
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !meshv1.InMeshScope(pod) {
			continue
		}
		total++
		if meshv1.IsMeshed(pod) {
			meshed++
		}
	}
	ms.Status.TotalPods, ms.Status.MeshedPods = total, meshed
	ms.Status.Meshed = fmt.Sprintf("%d/%d", meshed, total)
	return nil
}

// reconcileLinks summarises the Links in scope: all of them for the cluster-wide MeshStatus.
func (r *MeshStatusReconciler) reconcileLinks(ctx context.Context, ms *meshv1.MeshStatus) error {
	links := &meshv1.LinkList{}
	if err := r.List(ctx, links, client.InNamespace(ms.Spec.Namespace)); err != nil {
		return fmt.Errorf("listing Links: %w", err)
	}
	ms.Status.Links = nil
	for _, l := range links.Items {
		ms.Status.Links = append(ms.Status.Links, meshv1.LinkSummary{
			Name: l.Namespace + "/" + l.Name, Cluster: l.Spec.TargetClusterName,
			Alive: l.Status.Gateway != nil && l.Status.Gateway.Alive, MirroredServices: l.Status.MirroredServiceCount,
		})
	}
	slices.SortFunc(ms.Status.Links, func(a, b meshv1.LinkSummary) int { return strings.Compare(a.Name, b.Name) })
	return nil
}

// SetupWithManager registers the controller. Every MeshStatus is recomputed when the MeshConfig
// changes; a pod or Link change recomputes the cluster-wide one and its namespace's.
func (r *MeshStatusReconciler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		return r.requestsFor(ctx, "")
	})
	byNamespace := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.requestsFor(ctx, o.GetNamespace())
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1.MeshStatus{}).
		Watches(&meshv1.MeshConfig{}, all).
		Watches(&corev1.Pod{}, byNamespace).
		Watches(&meshv1.Link{}, byNamespace).
		Named("meshstatus").
		Complete(r)
}

// requestsFor lists the MeshStatuses that cover a namespace; "" means all of them.
func (r *MeshStatusReconciler) requestsFor(ctx context.Context, namespace string) []reconcile.Request {
	list := &meshv1.MeshStatusList{}
	if err := r.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing MeshStatuses")
		return nil
	}
	var reqs []reconcile.Request
	for _, ms := range list.Items {
		if namespace == "" || ms.Spec.Namespace == "" || ms.Spec.Namespace == namespace {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: ms.Name}})
		}
	}
	return reqs
}
