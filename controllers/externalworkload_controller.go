package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/xds"
)

// externalWorkloadFinalizer holds an ExternalWorkload until its EndpointSlices and bootstrap Secrets
// are gone: deleting the Secrets is what invalidates the tokens bound to them.
const externalWorkloadFinalizer = "mesh.skein.dev/external-workload"

// managedBy marks the EndpointSlices this controller writes, so that the EndpointSlice controller
// leaves them alone, as it does for any slice another manager claims.
const managedBy = "externalworkload.mesh.skein.dev"

// ExternalWorkloadReconciler publishes an ExternalWorkload's addresses as endpoints of the Services
// that select it, while its proxy is connected or within the grace period of its last heartbeat.
type ExternalWorkloadReconciler struct {
	client.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=mesh.skein.dev,resources=externalworkloads,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=externalworkloads/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=externalworkloads/finalizers,verbs=update
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch;create;update;patch;delete;deletecollection
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=deletecollection

// Reconcile steps through the workload's lifecycle.
func (r *ExternalWorkloadReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ew := &meshv1.ExternalWorkload{}
	if err := r.Get(ctx, req.NamespacedName, ew); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	p := newPatcher(r.Client, ew)
	defer func() {
		if err := p.patch(ctx, ew); err != nil {
			retErr = fmt.Errorf("patching ExternalWorkload %s: %w", req, err)
		}
	}()
	if !ew.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.cleanUp(ctx, ew)
	}
	controllerutil.AddFinalizer(ew, externalWorkloadFinalizer)
	ew.Status.ObservedGeneration = ew.Generation

	serving, recheck, err := r.connection(ew)
	if err != nil {
		return ctrl.Result{}, err
	}
	services, err := r.publish(ctx, ew, serving)
	if err != nil {
		setReady(ew, metav1.ConditionFalse, meshv1.ReasonReconcileFailed, err.Error())
		return ctrl.Result{}, err
	}
	if serving {
		setReady(ew, metav1.ConditionTrue, meshv1.ReasonReconciled, fmt.Sprintf("Serving as an endpoint of %d Services", services))
	}
	return ctrl.Result{RequeueAfter: recheck}, nil
}

// connection reads the proxy's heartbeat: whether the workload may serve, and when to look again
// because that may change.
func (r *ExternalWorkloadReconciler) connection(ew *meshv1.ExternalWorkload) (serving bool, recheck time.Duration, err error) {
	grace, err := gracePeriod(ew)
	if err != nil {
		setReady(ew, metav1.ConditionFalse, meshv1.ReasonReconcileFailed, err.Error())
		return false, 0, nil // fixed by editing the annotation, which triggers a reconcile
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	if ew.Status.LastSeen == nil {
		setConnected(ew, metav1.ConditionFalse, meshv1.ReasonNeverConnected, "No proxy has connected as this workload yet")
		setReady(ew, metav1.ConditionFalse, meshv1.ReasonNeverConnected, "Not an endpoint of any Service until its proxy connects")
		return false, 0, nil
	}
	away := now.Sub(ew.Status.LastSeen.Time)
	if away < xds.ConnectedWithin {
		setConnected(ew, metav1.ConditionTrue, meshv1.ReasonConnected, "The proxy is connected to the control plane")
		// Heartbeats update lastSeen and so trigger reconciles; this catches the last one.
		return true, xds.ConnectedWithin - away + time.Second, nil
	}
	setConnected(ew, metav1.ConditionFalse, meshv1.ReasonDisconnected, "The proxy was last seen "+away.Round(time.Second).String()+" ago")
	if away < grace {
		return true, grace - away, nil
	}
	setReady(ew, metav1.ConditionFalse, meshv1.ReasonGracePeriodExpired,
		fmt.Sprintf("The proxy has been away longer than the grace period (%s); the workload's endpoints are withdrawn", grace))
	return false, 0, nil
}

func gracePeriod(ew *meshv1.ExternalWorkload) (time.Duration, error) {
	v, ok := ew.Annotations[meshv1.GracePeriodAnnotation]
	if !ok {
		v = meshv1.DefaultGracePeriod
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("annotation %s: %q is not a positive duration such as 30s", meshv1.GracePeriodAnnotation, v)
	}
	return d, nil
}

// publish writes one EndpointSlice per selecting Service and address family while serving, and
// removes the workload's other slices. It returns how many Services it serves.
func (r *ExternalWorkloadReconciler) publish(ctx context.Context, ew *meshv1.ExternalWorkload, serving bool) (int, error) {
	want := map[string]*discoveryv1.EndpointSlice{}
	services := 0
	if serving {
		list := &corev1.ServiceList{}
		if err := r.List(ctx, list, client.InNamespace(ew.Namespace)); err != nil {
			return 0, err
		}
		for i := range list.Items {
			svc := &list.Items[i]
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ew.Labels)) {
				continue
			}
			services++
			for _, s := range slicesFor(svc, ew) {
				want[s.Name] = s
			}
		}
	}
	have := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, have, client.InNamespace(ew.Namespace), client.MatchingLabels{meshv1.ExternalWorkloadLabel: ew.Name}); err != nil {
		return 0, err
	}
	for i := range have.Items {
		old := &have.Items[i]
		s, ok := want[old.Name]
		if !ok {
			if err := r.Delete(ctx, old); client.IgnoreNotFound(err) != nil {
				return 0, err
			}
			continue
		}
		delete(want, old.Name)
		if slices.EqualFunc(old.Endpoints, s.Endpoints, endpointEqual) && slices.EqualFunc(old.Ports, s.Ports, portEqual) {
			continue
		}
		old.Endpoints, old.Ports = s.Endpoints, s.Ports
		if err := r.Update(ctx, old); err != nil {
			return 0, err
		}
	}
	for _, s := range want {
		if err := r.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
	}
	return services, nil
}

// slicesFor are the workload's EndpointSlices for svc: one per address family it has, with the
// Service's ports resolved against the workload's (by name, or by number when the workload lists
// none).
func slicesFor(svc *corev1.Service, ew *meshv1.ExternalWorkload) []*discoveryv1.EndpointSlice {
	var ports []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port, ok := targetPort(sp, ew)
		if !ok {
			continue
		}
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(port), Protocol: ptr.To(sp.Protocol)})
	}
	var out []*discoveryv1.EndpointSlice
	for _, ip := range ew.Spec.WorkloadIPs {
		addr, err := netip.ParseAddr(ip.IP)
		if err != nil {
			continue // the CRD's validation admits only IPs
		}
		family, suffix := discoveryv1.AddressTypeIPv4, ""
		if addr.Is6() {
			family, suffix = discoveryv1.AddressTypeIPv6, "-v6"
		}
		out = append(out, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ew.Namespace, Name: sliceName(svc.Name, ew.Name) + suffix,
				Labels: map[string]string{
					discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: managedBy,
					meshv1.ExternalWorkloadLabel: ew.Name,
				},
				// Owned by the Service, like the slices the EndpointSlice controller makes; the
				// workload's finalizer removes them when it goes.
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}},
			},
			AddressType: family,
			Ports:       ports,
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{addr.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				TargetRef:  &corev1.ObjectReference{Kind: "ExternalWorkload", Namespace: ew.Namespace, Name: ew.Name, UID: ew.UID},
			}},
		})
	}
	return out
}

func targetPort(sp corev1.ServicePort, ew *meshv1.ExternalWorkload) (int32, bool) {
	if sp.TargetPort.StrVal != "" {
		for _, p := range ew.Spec.Ports {
			if p.Name == sp.TargetPort.StrVal {
				return p.Port, true
			}
		}
		return 0, false
	}
	port := sp.TargetPort.IntVal
	if port == 0 {
		port = sp.Port
	}
	if len(ew.Spec.Ports) == 0 {
		return port, true
	}
	return port, slices.ContainsFunc(ew.Spec.Ports, func(p meshv1.PortSpec) bool { return p.Port == port })
}

// sliceName is "<service>-<workload>", shortened with a hash where that is too long for a name.
func sliceName(service, workload string) string {
	name := service + "-" + workload
	if len(name) <= 240 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:220] + "-" + hex.EncodeToString(sum[:8])
}

func endpointEqual(a, b discoveryv1.Endpoint) bool {
	return slices.Equal(a.Addresses, b.Addresses) && ptr.Equal(a.Conditions.Ready, b.Conditions.Ready) &&
		a.TargetRef != nil && b.TargetRef != nil && a.TargetRef.UID == b.TargetRef.UID
}

func portEqual(a, b discoveryv1.EndpointPort) bool {
	return ptr.Equal(a.Name, b.Name) && ptr.Equal(a.Port, b.Port) && ptr.Equal(a.Protocol, b.Protocol)
}

// cleanUp withdraws the workload's endpoints and deletes its bootstrap Secrets, which revokes the
// tokens bound to them, then lets the workload go.
func (r *ExternalWorkloadReconciler) cleanUp(ctx context.Context, ew *meshv1.ExternalWorkload) error {
	if !controllerutil.ContainsFinalizer(ew, externalWorkloadFinalizer) {
		return nil
	}
	mine := client.MatchingLabels{meshv1.ExternalWorkloadLabel: ew.Name}
	if err := r.DeleteAllOf(ctx, &discoveryv1.EndpointSlice{}, client.InNamespace(ew.Namespace), mine); err != nil {
		return fmt.Errorf("deleting the workload's EndpointSlices: %w", err)
	}
	if err := r.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ew.Namespace), mine); err != nil {
		return fmt.Errorf("deleting the workload's bootstrap Secrets: %w", err)
	}
	controllerutil.RemoveFinalizer(ew, externalWorkloadFinalizer)
	return nil
}

func setConnected(ew *meshv1.ExternalWorkload, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&ew.Status.Conditions, metav1.Condition{Type: meshv1.ConditionProxyConnected, Status: status,
		Reason: reason, Message: msg, ObservedGeneration: ew.Generation})
}

func setReady(ew *meshv1.ExternalWorkload, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&ew.Status.Conditions, metav1.Condition{Type: meshv1.ConditionReady, Status: status,
		Reason: reason, Message: msg, ObservedGeneration: ew.Generation})
}

// SetupWithManager watches ExternalWorkloads (their heartbeats included), the Services that may
// select them, and the slices written for them.
func (r *ExternalWorkloadReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workloadsOf := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &meshv1.ExternalWorkloadList{}
		if err := r.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for _, ew := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ew)})
		}
		return reqs
	})
	sliceOwner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetLabels()[meshv1.ExternalWorkloadLabel]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("externalworkload").
		For(&meshv1.ExternalWorkload{}).
		Watches(&corev1.Service{}, workloadsOf).
		Watches(&discoveryv1.EndpointSlice{}, sliceOwner).
		Complete(r)
}
