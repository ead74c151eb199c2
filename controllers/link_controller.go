package controllers

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/multicluster"
	"github.com/skeinmesh/skein/internal/xds"
)

// LinkReconciler mirrors a remote cluster's exported Services here, with endpoints at the remote
// gateway, and probes that gateway.
//
// What is mirrored changes only on a successful read of the remote cluster. While the remote cannot
// be read (unreachable, or credentials refused or missing), the mirrors stay as last read, since a
// blip of the remote API server should not cut traffic that its gateway still carries; their
// endpoints keep following the gateway's probes, which withdraw them if the gateway goes too. A
// Service unexported while the remote was readable is unmirrored at once.
type LinkReconciler struct {
	client.Client
	// APIReader reads the credentials Secrets, which may live outside the control plane's
	// namespace, the only one whose Secrets the manager caches.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	// Namespace is the control plane's, where the trust bundle lives.
	Namespace string

	events chan event.GenericEvent
	mu     sync.Mutex
	links  map[types.NamespacedName]*linkWatch
}

// linkWatch is what runs for one Link between reconciles: the watch of its remote cluster and the
// prober of its gateway. Both enqueue the Link when they see something.
type linkWatch struct {
	remote *multicluster.Remote
	prober *multicluster.Prober
}

// linkPass is what one reconcile observed, from which the status is derived.
type linkPass struct {
	gateway  multicluster.Health
	mirrored []string
	// problems, most important first, each a condition reason and a message.
	problems []problem
}

type problem struct{ reason, message string }

func (o *linkPass) report(reason, format string, args ...any) {
	o.problems = append(o.problems, problem{reason, fmt.Sprintf(format, args...)})
}

// +kubebuilder:rbac:groups=mesh.skein.dev,resources=links,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=links/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=links/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile keeps a Link's mirrors in step with its remote cluster and gateway.
func (r *LinkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	link := &meshv1.Link{}
	if err := r.Get(ctx, req.NamespacedName, link); err != nil {
		if apierrors.IsNotFound(err) {
			r.stop(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	p := newPatcher(r.Client, link)
	defer func() {
		if err := p.patch(ctx, link); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("patching Link %s: %w", req, err))
		}
	}()
	if !link.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, link)
	}
	if controllerutil.AddFinalizer(link, meshv1.LinkFinalizer) {
		// Persisted before any mirror exists; the update brings the Link back.
		return ctrl.Result{}, nil
	}

	pass := &linkPass{}
	w := r.reconcileProber(link)
	pass.gateway = w.prober.Health()
	remote := r.reconcileRemote(ctx, link, w, pass)
	if err := r.reconcileMirrors(ctx, link, remote, pass); err != nil {
		pass.report(meshv1.ReasonReconcileFailed, "%v", err)
		r.reconcileStatus(link, pass)
		return ctrl.Result{}, err
	}
	r.reconcileStatus(link, pass)
	// The prober enqueues the Link after each probe, which also retries a remote that could not be read.
	return ctrl.Result{}, nil
}

// reconcileProber starts the Link's prober, or restarts it when the Link changed what to probe.
func (r *LinkReconciler) reconcileProber(link *meshv1.Link) *linkWatch {
	key := client.ObjectKeyFromObject(link)
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.links[key]
	if w == nil {
		w = &linkWatch{}
		r.links[key] = w
	}
	target := multicluster.TargetOf(link)
	if w.prober != nil && w.prober.Target != target {
		w.prober.Stop()
		w.prober = nil
	}
	if w.prober == nil {
		w.prober = multicluster.StartProber(target, r.trustBundle, r.notifier(key))
	}
	return w
}

// trustBundle is the local trust bundle, which the remote gateway's certificate must chain to.
func (r *LinkReconciler) trustBundle() (*x509.CertPool, error) {
	return xds.BundleRoots(r.Client, r.Namespace, func() (*x509.CertPool, error) {
		return nil, fmt.Errorf("ConfigMap %s/%s is missing or holds no certificate", r.Namespace, meshv1.TrustBundleName)
	})()
}

// reconcileRemote reads the credentials and makes sure the remote's watch runs with them. It returns
// the remote when it can be read now, and nil, with the problem reported, when not.
func (r *LinkReconciler) reconcileRemote(ctx context.Context, link *meshv1.Link, w *linkWatch, pass *linkPass) *multicluster.Remote {
	kubeconfig, err := r.credentials(ctx, link)
	if err != nil {
		pass.report(meshv1.ReasonCredentialsInvalid, "%v", err)
		return nil
	}
	r.mu.Lock()
	if w.remote != nil && w.remote.Fingerprint != multicluster.Fingerprint(kubeconfig) {
		w.remote.Stop()
		w.remote = nil
	}
	if w.remote == nil {
		if w.remote, err = multicluster.Connect(kubeconfig, r.notifier(client.ObjectKeyFromObject(link))); err != nil {
			r.mu.Unlock()
			pass.report(meshv1.ReasonCredentialsInvalid, "Secret %s: %v", link.Spec.ClusterCredentialsSecret, err)
			return nil
		}
	}
	remote := w.remote
	r.mu.Unlock()
	if err := remote.Check(ctx); err != nil {
		reason := meshv1.ReasonClusterUnreachable
		if errors.Is(err, multicluster.ErrCredentials) {
			reason = meshv1.ReasonCredentialsInvalid
		}
		pass.report(reason, "Cluster %s: %v", link.Spec.TargetClusterName, err)
		return nil
	}
	return remote
}

// credentials is the kubeconfig of the Link's credentials Secret.
func (r *LinkReconciler) credentials(ctx context.Context, link *meshv1.Link) ([]byte, error) {
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: link.Namespace, Name: link.Spec.ClusterCredentialsSecret}
	if err := r.APIReader.Get(ctx, key, secret); err != nil {
		return nil, fmt.Errorf("reading the credentials, Secret %s: %w", key, err)
	}
	kubeconfig := secret.Data["kubeconfig"]
	if len(kubeconfig) == 0 {
		return nil, fmt.Errorf("the credentials Secret %s has no key \"kubeconfig\"", key)
	}
	return kubeconfig, nil
}

// reconcileMirrors mirrors the remote's selected Services, when it could be read, removes the mirrors
// of what it no longer exports, and points every mirror's endpoint at the gateway as probed.
func (r *LinkReconciler) reconcileMirrors(ctx context.Context, link *meshv1.Link, remote *multicluster.Remote, pass *linkPass) error {
	have, err := r.mirrors(ctx, link)
	if err != nil {
		return err
	}
	keep := have // unchanged while the remote cannot be read
	if remote != nil {
		selector, err := multicluster.Selector(link)
		if err != nil {
			return err
		}
		exported, synced, err := remote.Services(ctx, selector)
		if err != nil {
			return fmt.Errorf("reading the remote Services: %w", err)
		}
		if synced {
			if keep, err = r.mirrorServices(ctx, link, exported, have, pass); err != nil {
				return err
			}
		}
	}
	gw := multicluster.Gateway{IP: pass.gateway.IP, Port: multicluster.TargetOf(link).GatewayPort, Alive: pass.gateway.Alive}
	for _, svc := range keep {
		if err := r.applySlice(ctx, multicluster.Slice(svc, link, gw)); err != nil {
			return err
		}
		pass.mirrored = append(pass.mirrored, svc.Namespace+"/"+svc.Name)
	}
	return nil
}

// mirrors are the local Services this Link made, by namespace/name.
func (r *LinkReconciler) mirrors(ctx context.Context, link *meshv1.Link) (map[string]*corev1.Service, error) {
	list := &corev1.ServiceList{}
	if err := r.List(ctx, list, client.MatchingLabels{meshv1.LinkLabel: multicluster.LinkID(link)}); err != nil {
		return nil, fmt.Errorf("listing mirrored Services: %w", err)
	}
	have := map[string]*corev1.Service{}
	for i := range list.Items {
		if svc := &list.Items[i]; multicluster.IsMirrorOf(svc, link) {
			have[svc.Namespace+"/"+svc.Name] = svc
		}
	}
	return have, nil
}

// mirrorServices creates or updates a mirror of each exported Service and deletes the mirrors of the
// others. It returns the mirrors there now.
func (r *LinkReconciler) mirrorServices(ctx context.Context, link *meshv1.Link, exported []corev1.Service, have map[string]*corev1.Service, pass *linkPass) (map[string]*corev1.Service, error) {
	keep := map[string]*corev1.Service{}
	missing := map[string]bool{}
	for i := range exported {
		remote := &exported[i]
		if !multicluster.Mirrorable(remote) {
			continue
		}
		name, err := multicluster.MirrorName(remote.Name, link.Spec.TargetClusterName)
		if err != nil {
			pass.report(meshv1.ReasonNameConflict, "Service %s/%s: %v", remote.Namespace, remote.Name, err)
			continue
		}
		if exists, err := r.namespaceExists(ctx, remote.Namespace, missing); err != nil {
			return nil, err
		} else if !exists {
			continue
		}
		svc, err := r.applyService(ctx, link, remote, name)
		if err != nil {
			return nil, err
		}
		if svc == nil {
			pass.report(meshv1.ReasonNameConflict, "Service %s/%s exists and is not a mirror of this Link; %s/%s of cluster %s is not mirrored",
				remote.Namespace, name, remote.Namespace, remote.Name, link.Spec.TargetClusterName)
			continue
		}
		keep[svc.Namespace+"/"+svc.Name] = svc
	}
	for ns := range missing {
		pass.report(meshv1.ReasonNamespaceMissing, "Namespace %s does not exist here; the Services exported from it are not mirrored", ns)
	}
	for key, svc := range have {
		if _, ok := keep[key]; ok {
			continue
		}
		if err := r.deleteMirror(ctx, svc); err != nil {
			return nil, err
		}
	}
	return keep, nil
}

func (r *LinkReconciler) namespaceExists(ctx context.Context, name string, missing map[string]bool) (bool, error) {
	if missing[name] {
		return false, nil
	}
	err := r.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{})
	if apierrors.IsNotFound(err) {
		missing[name] = true
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return true, nil
}

// applyService creates or updates the mirror of remote; it returns nil when a Service that is not
// this Link's mirror holds the name, which it leaves alone.
func (r *LinkReconciler) applyService(ctx context.Context, link *meshv1.Link, remote *corev1.Service, name string) (*corev1.Service, error) {
	svc := &corev1.Service{}
	err := r.Get(ctx, client.ObjectKey{Namespace: remote.Namespace, Name: name}, svc)
	switch {
	case apierrors.IsNotFound(err):
		svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: remote.Namespace, Name: name}}
		multicluster.ApplyService(svc, remote, link)
		if err := r.Create(ctx, svc); err != nil {
			return nil, fmt.Errorf("creating Service %s/%s: %w", svc.Namespace, name, err)
		}
		return svc, nil
	case err != nil:
		return nil, fmt.Errorf("reading Service %s/%s: %w", remote.Namespace, name, err)
	case !multicluster.IsMirrorOf(svc, link):
		return nil, nil
	}
	before := svc.DeepCopy()
	multicluster.ApplyService(svc, remote, link)
	if !equalService(before, svc) {
		if err := r.Update(ctx, svc); err != nil {
			return nil, fmt.Errorf("updating Service %s/%s: %w", svc.Namespace, name, err)
		}
	}
	return svc, nil
}

func equalService(a, b *corev1.Service) bool {
	return fmt.Sprint(a.Labels, a.Annotations, a.Spec.Type, a.Spec.Selector) == fmt.Sprint(b.Labels, b.Annotations, b.Spec.Type, b.Spec.Selector) &&
		fmt.Sprint(portsOf(a)) == fmt.Sprint(portsOf(b))
}

func portsOf(s *corev1.Service) []string {
	var out []string
	for _, p := range s.Spec.Ports {
		ap := ""
		if p.AppProtocol != nil {
			ap = *p.AppProtocol
		}
		out = append(out, fmt.Sprint(p.Name, p.Protocol, p.Port, ap))
	}
	return out
}

// applySlice writes a mirror's EndpointSlice where it differs. A slice's address type cannot change,
// so a gateway that moved to another address family gets a new slice.
func (r *LinkReconciler) applySlice(ctx context.Context, want *discoveryv1.EndpointSlice) error {
	have := &discoveryv1.EndpointSlice{}
	err := r.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Create(ctx, want); err != nil {
			return fmt.Errorf("creating EndpointSlice %s/%s: %w", want.Namespace, want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading EndpointSlice %s/%s: %w", want.Namespace, want.Name, err)
	case multicluster.SliceEqual(have, want):
		return nil
	case have.AddressType != want.AddressType:
		if err := r.Delete(ctx, have); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting EndpointSlice %s/%s: %w", have.Namespace, have.Name, err)
		}
		return r.Create(ctx, want)
	}
	have.Labels, have.Ports, have.Endpoints = want.Labels, want.Ports, want.Endpoints
	if err := r.Update(ctx, have); err != nil {
		return fmt.Errorf("updating EndpointSlice %s/%s: %w", have.Namespace, have.Name, err)
	}
	return nil
}

// deleteMirror deletes a mirrored Service and its EndpointSlice; the slice is deleted here rather
// than left to garbage collection so that its endpoint goes at once.
func (r *LinkReconciler) deleteMirror(ctx context.Context, svc *corev1.Service) error {
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name}}
	if err := r.Delete(ctx, slice); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting EndpointSlice %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	if err := r.Delete(ctx, svc); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// reconcileDelete stops watching the remote and probing its gateway, removes every mirror, then
// lets the Link go.
func (r *LinkReconciler) reconcileDelete(ctx context.Context, link *meshv1.Link) error {
	r.stop(client.ObjectKeyFromObject(link))
	if !controllerutil.ContainsFinalizer(link, meshv1.LinkFinalizer) {
		return nil
	}
	have, err := r.mirrors(ctx, link)
	if err != nil {
		return err
	}
	for _, svc := range have {
		if err := r.deleteMirror(ctx, svc); err != nil {
			return err
		}
	}
	controllerutil.RemoveFinalizer(link, meshv1.LinkFinalizer)
	return nil
}

// stop ends what runs for a Link.
func (r *LinkReconciler) stop(key types.NamespacedName) {
	r.mu.Lock()
	w := r.links[key]
	delete(r.links, key)
	r.mu.Unlock()
	if w == nil {
		return
	}
	if w.remote != nil {
		w.remote.Stop()
	}
	if w.prober != nil {
		w.prober.Stop()
	}
}

// notifier enqueues the Link named key.
func (r *LinkReconciler) notifier(key types.NamespacedName) func() {
	return func() {
		// Never blocks, so that a stopping prober or watch cannot hang on a stopped controller. An
		// event dropped on a full channel loses nothing: the queue has the Link already, and the
		// prober enqueues it again within a period.
		select {
		case r.events <- event.GenericEvent{Object: &meshv1.Link{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
		default:
		}
	}
}

// SetupWithManager watches Links, their mirrors, namespaces (a missing one may appear) and the
// credentials Secrets in the control plane's namespace; the remote watches and the probers feed
// their Link's queue through a channel. Everything they run stops with the manager.
func (r *LinkReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.events = make(chan event.GenericEvent, 1024)
	r.links = map[types.NamespacedName]*linkWatch{}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		r.mu.Lock()
		var keys []types.NamespacedName
		for k := range r.links {
			keys = append(keys, k)
		}
		r.mu.Unlock()
		for _, k := range keys {
			r.stop(k)
		}
		return nil
	})); err != nil {
		return err
	}
	mirrorOwner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		ns, name, ok := multicluster.LinkOf(o.GetLabels()[meshv1.LinkLabel])
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
	})
	allLinks := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &meshv1.LinkList{}
		if err := r.List(ctx, list); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for _, l := range list.Items {
			if s, ok := o.(*corev1.Secret); ok && (s.Namespace != l.Namespace || s.Name != l.Spec.ClusterCredentialsSecret) {
				continue
			}
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&l)})
		}
		return reqs
	})
	// The Link's own status writes, one a probe, bring it back for nothing; the prober does already.
	finalizersChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
	}}
	return ctrl.NewControllerManagedBy(mgr).
		Named("link").
		For(&meshv1.Link{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, finalizersChanged))).
		Watches(&corev1.Service{}, mirrorOwner).
		Watches(&discoveryv1.EndpointSlice{}, mirrorOwner).
		Watches(&corev1.Namespace{}, allLinks).
		Watches(&corev1.Secret{}, allLinks).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		Complete(r)
}
