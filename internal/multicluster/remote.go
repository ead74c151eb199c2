package multicluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// checkTimeout bounds the request that tells whether the remote API server can be read.
const checkTimeout = 5 * time.Second

// ErrCredentials marks a remote that answers but refuses the credentials, or credentials that
// cannot be used at all; any other error reading the remote means it could not be reached.
var ErrCredentials = errors.New("the credentials are invalid")

// Remote watches a remote cluster's Services with the credentials of one Link. Changes arrive
// through the notify function given to Connect within seconds, as the watch delivers them.
type Remote struct {
	// Fingerprint identifies the kubeconfig it was made from, so that new credentials make a new Remote.
	Fingerprint string

	cache    cache.Cache
	services cache.Informer
	direct   client.Reader
	cancel   context.CancelFunc
}

// Fingerprint is what Remote.Fingerprint is for kubeconfig.
func Fingerprint(kubeconfig []byte) string {
	sum := sha256.Sum256(kubeconfig)
	return hex.EncodeToString(sum[:])
}

// Connect starts watching the Services of the cluster that kubeconfig reaches; notify is called on
// every change. It fails, with ErrCredentials, only when the kubeconfig is unusable: an unreachable
// cluster is found by Check.
func Connect(kubeconfig []byte, notify func()) (*Remote, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the kubeconfig: %v", ErrCredentials, err)
	}
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	// A static mapping, so that nothing asks the remote's discovery API before it can be reached.
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Service"), meta.RESTScopeNamespace)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("ServiceList"), meta.RESTScopeNamespace)
	c, err := cache.New(cfg, cache.Options{Scheme: s, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: s, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	inf, err := c.GetInformer(ctx, &corev1.Service{}, cache.BlockUntilSynced(false))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watching Services: %w", err)
	}
	changed := func(any) { notify() }
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { changed(obj) },
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: changed,
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("watching Services: %w", err)
	}
	go func() {
		// The cache returns only when ctx ends; its watch retries on its own while the remote is away.
		_ = c.Start(ctx)
	}()
	return &Remote{Fingerprint: Fingerprint(kubeconfig), cache: c, services: inf, direct: direct, cancel: cancel}, nil
}

// Check reads the remote API server once, as the watch would, so that an unreachable server or
// refused credentials show at once rather than as a watch that quietly retries.
func (r *Remote) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	err := r.direct.List(ctx, &corev1.ServiceList{}, client.Limit(1))
	switch {
	case err == nil:
		return nil
	case apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err):
		return fmt.Errorf("%w: listing Services: %v", ErrCredentials, err)
	default:
		return fmt.Errorf("listing Services: %w", err)
	}
}

// Services are the remote Services that selector picks, from the watch; ok is false until the
// watch has listed them all once.
func (r *Remote) Services(ctx context.Context, selector labels.Selector) (svcs []corev1.Service, ok bool, err error) {
	if !r.services.HasSynced() {
		return nil, false, nil
	}
	list := &corev1.ServiceList{}
	if err := r.cache.List(ctx, list, client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, false, err
	}
	return list.Items, true, nil
}

// Stop ends the watch.
func (r *Remote) Stop() { r.cancel() }
