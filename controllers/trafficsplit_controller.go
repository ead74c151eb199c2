package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// trafficSplitServicesIndex indexes TrafficSplits by every Service they name, apex and backends, so
// that a Service or EndpointSlice change finds the splits it affects.
const trafficSplitServicesIndex = "spec.services"

// TrafficSplitReconciler reports, in each TrafficSplit's status, the split the proxies apply: the
// xDS compiler (internal/xds) routes by the same rules, which this controller only observes.
//   - The oldest TrafficSplit of an apex, by creationTimestamp then name, is in force; the others
//     are Superseded.
//   - A backend serves when its Service exists and has a ready endpoint. One that cannot serve has
//     weight 0 in force; the others keep their weights and so share its part.
//   - When no backend with a weight can serve, the apex Service's own endpoints take its traffic.
type TrafficSplitReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
}

// backendState is what was observed of one backend.
type backendState struct {
	meshv1.TrafficSplitBackend
	exists    bool
	endpoints int32
}

func (b backendState) serves() bool { return b.exists && b.endpoints > 0 }

// why says why a backend cannot serve.
func (b backendState) why() string {
	if !b.exists {
		return "Service does not exist"
	}
	return "no ready endpoints"
}

// +kubebuilder:rbac:groups=mesh.skein.dev,resources=trafficsplits,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=trafficsplits/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile derives a TrafficSplit's status from its apex, the other splits of that apex and its
// backends' Services and endpoints, and records an event when the weights in force change.
func (r *TrafficSplitReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ts := &meshv1.TrafficSplit{}
	if err := r.Get(ctx, req.NamespacedName, ts); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	p := newPatcher(r.Client, ts)
	defer func() {
		if err := p.patch(ctx, ts); err != nil {
			retErr = fmt.Errorf("patching TrafficSplit %s/%s: %w", ts.Namespace, ts.Name, err)
		}
	}()
	if !ts.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	before := ts.Status.DeepCopy()
	ts.Status.ObservedGeneration = ts.Generation
	apexExists, err := r.serviceExists(ctx, ts.Namespace, ts.Spec.Service)
	if err != nil {
		return ctrl.Result{}, err
	}
	inForce, err := r.splitInForce(ctx, ts)
	if err != nil {
		return ctrl.Result{}, err
	}
	backends, err := r.observeBackends(ctx, ts)
	if err != nil {
		return ctrl.Result{}, err
	}

	switch {
	case !apexExists:
		ts.Status.Backends = nil
		r.setConditions(ts, metav1.ConditionFalse, metav1.ConditionFalse, meshv1.ReasonApexMissing,
			fmt.Sprintf("The apex Service %s does not exist", ts.Spec.Service))
	case inForce.Name != ts.Name:
		ts.Status.Backends = nil
		r.setConditions(ts, metav1.ConditionFalse, metav1.ConditionFalse, meshv1.ReasonSuperseded,
			fmt.Sprintf("TrafficSplit %s, older, already splits %s and is in force instead", inForce.Name, ts.Spec.Service))
	default:
		ts.Status.Backends = weightsInForce(backends)
		r.setBackendConditions(ts, backends)
		r.recordChanges(ts, before, backends)
	}
	return ctrl.Result{}, nil
}

// serviceExists tells whether a Service of the namespace exists.
func (r *TrafficSplitReconciler) serviceExists(ctx context.Context, namespace, name string) (bool, error) {
	err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &corev1.Service{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Service %s/%s: %w", namespace, name, err)
	}
	return true, nil
}

// splitInForce is the TrafficSplit of ts's apex that the xDS compiler applies: the oldest by
// creationTimestamp then name, among those not being deleted. It may be ts itself.
func (r *TrafficSplitReconciler) splitInForce(ctx context.Context, ts *meshv1.TrafficSplit) (*meshv1.TrafficSplit, error) {
	splits := &meshv1.TrafficSplitList{}
	if err := r.List(ctx, splits, client.InNamespace(ts.Namespace), client.MatchingFields{trafficSplitServicesIndex: ts.Spec.Service}); err != nil {
		return nil, fmt.Errorf("listing the TrafficSplits of %s/%s: %w", ts.Namespace, ts.Spec.Service, err)
	}
	oldest := ts
	for i := range splits.Items {
		s := &splits.Items[i]
		if s.Spec.Service != ts.Spec.Service || !s.DeletionTimestamp.IsZero() {
			continue
		}
		a, b := s.CreationTimestamp, oldest.CreationTimestamp
		if a.Before(&b) || a.Equal(&b) && s.Name < oldest.Name {
			oldest = s
		}
	}
	return oldest, nil
}

// observeBackends finds, for each backend in spec order, whether its Service exists and how many
// ready endpoints it has.
func (r *TrafficSplitReconciler) observeBackends(ctx context.Context, ts *meshv1.TrafficSplit) ([]backendState, error) {
	out := make([]backendState, 0, len(ts.Spec.Backends))
	for _, b := range ts.Spec.Backends {
		st := backendState{TrafficSplitBackend: b}
		var err error
		if st.exists, err = r.serviceExists(ctx, ts.Namespace, b.Service); err != nil {
			return nil, err
		}
		if st.exists {
			if st.endpoints, err = r.readyEndpoints(ctx, ts.Namespace, b.Service); err != nil {
				return nil, err
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// readyEndpoints counts a Service's ready endpoints; an endpoint whose readiness is unset is ready,
// as the EndpointSlice API says.
func (r *TrafficSplitReconciler) readyEndpoints(ctx context.Context, namespace, service string) (int32, error) {
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, slices, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return 0, fmt.Errorf("listing the EndpointSlices of %s/%s: %w", namespace, service, err)
	}
	return meshv1.ReadyEndpoints(slices.Items), nil
}

// weightsInForce gives a backend that cannot serve weight 0 and the others their spec weight.
func weightsInForce(backends []backendState) []meshv1.TrafficSplitBackendStatus {
	out := make([]meshv1.TrafficSplitBackendStatus, 0, len(backends))
	for _, b := range backends {
		w := b.Weight
		if !b.serves() {
			w = 0
		}
		out = append(out, meshv1.TrafficSplitBackendStatus{Service: b.Service, Weight: w, Endpoints: b.endpoints})
	}
	return out
}

// setBackendConditions sets the conditions of a split in force from its backends.
func (r *TrafficSplitReconciler) setBackendConditions(ts *meshv1.TrafficSplit, backends []backendState) {
	var unavailable []string
	weighted := false
	for _, b := range backends {
		if !b.serves() {
			unavailable = append(unavailable, fmt.Sprintf("%s (%s)", b.Service, b.why()))
		} else if b.Weight > 0 {
			weighted = true
		}
	}
	switch {
	case !weighted:
		// The xDS compiler routes to the apex's own cluster when no weighted backend can serve.
		r.setConditions(ts, metav1.ConditionFalse, metav1.ConditionTrue, meshv1.ReasonNoBackendAvailable,
			fmt.Sprintf("No backend with a weight can serve, so the apex %s's own endpoints take its traffic: %s",
				ts.Spec.Service, strings.Join(unavailable, ", ")))
	case len(unavailable) > 0:
		r.setConditions(ts, metav1.ConditionFalse, metav1.ConditionTrue, meshv1.ReasonBackendUnavailable,
			fmt.Sprintf("Backends that cannot serve, whose share goes to the others: %s; weights in force: %s",
				strings.Join(unavailable, ", "), weightsNote(ts.Status.Backends)))
	default:
		r.setConditions(ts, metav1.ConditionTrue, metav1.ConditionFalse, meshv1.ReasonReconciled,
			"Weights in force: "+weightsNote(ts.Status.Backends))
	}
}

// setConditions sets Ready and Degraded together so that they never contradict each other.
func (r *TrafficSplitReconciler) setConditions(ts *meshv1.TrafficSplit, ready, degraded metav1.ConditionStatus, reason, msg string) {
	for typ, status := range map[string]metav1.ConditionStatus{
		meshv1.ConditionReady:    ready,
		meshv1.ConditionDegraded: degraded,
	} {
		meta.SetStatusCondition(&ts.Status.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: ts.Generation,
		})
	}
}

// recordChanges records an event for each backend that stopped or started being able to serve since
// the status before this pass, and one when the weights in force changed. A backend the status
// before did not list (a new split, or one that just came in force) is taken as able to serve.
func (r *TrafficSplitReconciler) recordChanges(ts *meshv1.TrafficSplit, before *meshv1.TrafficSplitStatus, backends []backendState) {
	was := map[string]meshv1.TrafficSplitBackendStatus{}
	for _, b := range before.Backends {
		was[b.Service] = b
	}
	for _, b := range backends {
		old, known := was[b.Service]
		wasServing := !known || old.Endpoints > 0
		switch {
		case wasServing && !b.serves():
			r.Recorder.Eventf(ts, nil, corev1.EventTypeWarning, meshv1.ReasonBackendUnavailable, "Reconcile",
				"Backend %s cannot serve: %s", b.Service, b.why())
		case !wasServing && b.serves():
			r.Recorder.Eventf(ts, nil, corev1.EventTypeNormal, meshv1.ReasonBackendAvailable, "Reconcile",
				"Backend %s serves again with %d ready endpoints", b.Service, b.endpoints)
		}
	}
	if now := weightsNote(ts.Status.Backends); now != weightsNote(before.Backends) {
		r.Recorder.Eventf(ts, nil, corev1.EventTypeNormal, meshv1.ReasonWeightsChanged, "Reconcile", "%s", now)
	}
}

// weightsNote lists weights in force as "web-stable 90, web-canary 10".
func weightsNote(backends []meshv1.TrafficSplitBackendStatus) string {
	parts := make([]string, 0, len(backends))
	for _, b := range backends {
		parts = append(parts, fmt.Sprintf("%s %d", b.Service, b.Weight))
	}
	return strings.Join(parts, ", ")
}

// servicesOf are the Services a TrafficSplit names: its apex and its backends. spec.matches name
// only backends, as the API validates.
func servicesOf(o client.Object) []string {
	ts, ok := o.(*meshv1.TrafficSplit)
	if !ok {
		return nil
	}
	names := []string{ts.Spec.Service}
	for _, b := range ts.Spec.Backends {
		names = append(names, b.Service)
	}
	return names
}

// SetupWithManager registers the controller. A TrafficSplit is looked at again when another split
// of the same apex changes (the oldest may have gone), and when a Service it names or one of that
// Service's EndpointSlices changes.
func (r *TrafficSplitReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1.TrafficSplit{}, trafficSplitServicesIndex, servicesOf); err != nil {
		return fmt.Errorf("indexing TrafficSplits by Service: %w", err)
	}
	byService := func(name func(client.Object) string) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			if n := name(o); n != "" {
				return r.splitsNaming(ctx, o.GetNamespace(), n)
			}
			return nil
		})
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1.TrafficSplit{}).
		Watches(&meshv1.TrafficSplit{}, byService(func(o client.Object) string { return o.(*meshv1.TrafficSplit).Spec.Service })).
		Watches(&corev1.Service{}, byService(client.Object.GetName)).
		Watches(&discoveryv1.EndpointSlice{}, byService(func(o client.Object) string { return o.GetLabels()[discoveryv1.LabelServiceName] })).
		Named("trafficsplit").
		Complete(r)
}

// splitsNaming are the TrafficSplits of a namespace that name service as apex or backend.
func (r *TrafficSplitReconciler) splitsNaming(ctx context.Context, namespace, service string) []reconcile.Request {
	splits := &meshv1.TrafficSplitList{}
	if err := r.List(ctx, splits, client.InNamespace(namespace), client.MatchingFields{trafficSplitServicesIndex: service}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing TrafficSplits", "namespace", namespace, "service", service)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(splits.Items))
	for _, s := range splits.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
	}
	return reqs
}
