// Package controllers holds Skein's reconcilers: one per kind, each reading as a list of named steps.
package controllers

import (
	"context"
	"fmt"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// waitInterval is how soon a MeshConfig is looked at again while a step waits on another controller.
const waitInterval = 5 * time.Second

// MeshConfigReconciler applies the mesh-wide MeshConfig: it sets up what the control plane needs
// and reports, in conditions, whether the mesh can serve.
type MeshConfigReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	// Namespace is the control plane's namespace, where the trust chain lives.
	Namespace string
}

// step is one part of applying a MeshConfig. It returns done=false, with a message, while it waits
// for something outside its control, and an error when it failed.
type step struct {
	name string
	run  func(ctx context.Context, mc *meshv1.MeshConfig) (done bool, message string, err error)
}

// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshconfigs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshconfigs/finalizers,verbs=update
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshstatuses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the cluster in line with the MeshConfig.
func (r *MeshConfigReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	mc := &meshv1.MeshConfig{}
	if err := r.Get(ctx, req.NamespacedName, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	p := newPatcher(r.Client, mc)
	defer func() {
		if err := p.patch(ctx, mc); err != nil {
			retErr = fmt.Errorf("patching MeshConfig %s: %w", mc.Name, err)
		}
	}()

	if !mc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, mc)
	}
	if controllerutil.AddFinalizer(mc, meshv1.MeshConfigFinalizer) {
		// Persist the finalizer before creating anything it has to clean up; the update it makes
		// brings the MeshConfig back for the next pass.
		return ctrl.Result{}, nil
	}

	return r.reconcileSteps(ctx, mc, []step{
		{"TrustAnchor", r.reconcileTrustAnchor},
		{"Issuer", r.reconcileIssuer},
		{"TrustBundle", r.reconcileTrustBundle},
		{"MeshStatus", r.reconcileMeshStatus},
		{"Gateway", r.reconcileGateway},
	})
}

// reconcileSteps runs the steps in order and derives the conditions from how far they got.
func (r *MeshConfigReconciler) reconcileSteps(ctx context.Context, mc *meshv1.MeshConfig, steps []step) (ctrl.Result, error) {
	wasReady := meta.IsStatusConditionTrue(mc.Status.Conditions, meshv1.ConditionReady)
	mc.Status.ObservedGeneration = mc.Generation
	for _, s := range steps {
		done, msg, err := s.run(ctx, mc)
		switch {
		case err != nil:
			msg = fmt.Sprintf("%s: %v", s.name, err)
			r.setConditions(mc, metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionTrue, meshv1.ReasonReconcileFailed, msg)
			r.Recorder.Eventf(mc, nil, corev1.EventTypeWarning, meshv1.ReasonReconcileFailed, "Reconcile", msg)
			return ctrl.Result{}, fmt.Errorf("reconciling %s: %w", s.name, err)
		case !done:
			r.setConditions(mc, metav1.ConditionFalse, metav1.ConditionTrue, metav1.ConditionFalse, meshv1.ReasonReconciling, fmt.Sprintf("%s: %s", s.name, msg))
			return ctrl.Result{RequeueAfter: waitInterval}, nil
		}
	}
	r.setConditions(mc, metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionFalse, meshv1.ReasonReconciled, "The mesh is configured")
	if !wasReady {
		r.Recorder.Eventf(mc, nil, corev1.EventTypeNormal, meshv1.ReasonReconciled, "Reconcile", "The mesh is configured")
	}
	return ctrl.Result{}, nil
}

// setConditions sets the four conditions together so that they never contradict each other.
// Available follows Ready: the mesh serves once every step has succeeded.
func (r *MeshConfigReconciler) setConditions(mc *meshv1.MeshConfig, ready, progressing, degraded metav1.ConditionStatus, reason, msg string) {
	for typ, status := range map[string]metav1.ConditionStatus{
		meshv1.ConditionReady:       ready,
		meshv1.ConditionAvailable:   ready,
		meshv1.ConditionProgressing: progressing,
		meshv1.ConditionDegraded:    degraded,
	} {
		meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: mc.Generation,
		})
	}
}

// reconcileMeshStatus makes sure the cluster-wide MeshStatus exists; the MeshStatus controller fills it.
func (r *MeshConfigReconciler) reconcileMeshStatus(ctx context.Context, mc *meshv1.MeshConfig) (bool, string, error) {
	ms := &meshv1.MeshStatus{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshStatusName}}
	_, err := controllerutil.CreateOrPatch(ctx, r.Client, ms, func() error {
		if ms.Labels == nil {
			ms.Labels = map[string]string{}
		}
		ms.Labels[meshv1.ManagedByLabel] = meshv1.ManagedByValue
		return controllerutil.SetControllerReference(mc, ms, r.Scheme())
	})
	if err != nil {
		return false, "", fmt.Errorf("creating MeshStatus %s: %w", ms.Name, err)
	}
	return true, "", nil
}

// reconcileDelete removes the cluster-scoped objects the MeshConfig made, then lets it go. The
// namespaced ones (certificates, issuer, trust bundle) go with it through their owner references;
// the Secrets cert-manager wrote stay, so that a MeshConfig made again keeps the same trust anchor.
func (r *MeshConfigReconciler) reconcileDelete(ctx context.Context, mc *meshv1.MeshConfig) (ctrl.Result, error) {
	meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{
		Type: meshv1.ConditionReady, Status: metav1.ConditionFalse, Reason: meshv1.ReasonDeleting,
		Message: "The mesh configuration is being deleted", ObservedGeneration: mc.Generation,
	})
	managed := client.MatchingLabels{meshv1.ManagedByLabel: meshv1.ManagedByValue}
	for _, obj := range []client.Object{&meshv1.MeshStatus{}, &cmv1.ClusterIssuer{}} {
		if err := r.DeleteAllOf(ctx, obj, managed); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("deleting %T: %w", obj, err)
		}
	}
	controllerutil.RemoveFinalizer(mc, meshv1.MeshConfigFinalizer)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller. It watches what it owns, so that cert-manager's progress
// moves it on and an object deleted by hand (the gateway's too) comes back, and the trust chain's Secrets, which
// cert-manager writes.
func (r *MeshConfigReconciler) SetupWithManager(mgr ctrl.Manager) error {
	owned := handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &meshv1.MeshConfig{}, handler.OnlyControllerOwner())
	toMeshConfig := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if o.GetNamespace() != r.Namespace {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: meshv1.MeshConfigName}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1.MeshConfig{}).
		Watches(&meshv1.MeshStatus{}, owned).
		Watches(&cmv1.ClusterIssuer{}, owned).
		Watches(&cmv1.Issuer{}, owned).
		Watches(&cmv1.Certificate{}, owned).
		Watches(&corev1.ConfigMap{}, owned).
		Watches(&corev1.ServiceAccount{}, owned).
		Watches(&corev1.Service{}, owned).
		Watches(&appsv1.Deployment{}, owned).
		Watches(&corev1.Secret{}, toMeshConfig).
		Named("meshconfig").
		Complete(r)
}
