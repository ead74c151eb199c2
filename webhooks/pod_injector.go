package webhooks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/skeinmesh/skein/internal/inject"
)

// The pod injector fails open (failurePolicy=ignore): while it is down, pods are created without the
// proxy rather than not at all, so a broken or not yet started control plane never stops a cluster
// from running pods, its own included. Those pods run unmeshed until they are re-created. The
// configurations in config/webhook also keep the API server from calling it for the control plane's
// namespace (namespaceSelector), and the injector itself never injects there.
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=pods.mesh.skein.dev,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=Never

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.skein.dev,resources=meshconfigs,verbs=get;list;watch

// PodInjector adds the proxy to pods that ask for it, or whose namespace does (see package
// internal/inject, which `skein inject` shares). It reads the namespace, the MeshConfig and the
// trust bundle from the API server, not a cache, so that a pod created right after its namespace
// was annotated or the MeshConfig changed gets what they say.
type PodInjector struct {
	Reader client.Reader
	// Namespace is the control plane's: its Services and trust bundle are there.
	Namespace string
}

var _ admission.Defaulter[*corev1.Pod] = &PodInjector{}

// Default injects pod when its annotations or its namespace's ask for it. A pod whose annotations
// are wrong is refused with a message naming the annotation; so is one that asks for the proxy when
// the mesh is not ready to give it one (no MeshConfig or trust bundle), rather than started unmeshed.
func (p *PodInjector) Default(ctx context.Context, pod *corev1.Pod) error {
	namespace := pod.Namespace
	if req, err := admission.RequestFromContext(ctx); err == nil && req.Namespace != "" {
		namespace = req.Namespace
	}
	ns, err := inject.NamespaceFrom(ctx, p.Reader, namespace)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("namespace", namespace, "pod", podName(pod))
	d, err := inject.Decide(&pod.ObjectMeta, &pod.Spec, ns, p.Namespace)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	if !d.Inject {
		log.V(1).Info("Not injecting the proxy", "reason", d.Reason)
		return nil
	}
	config, err := inject.ConfigFrom(ctx, p.Reader, p.Namespace)
	if err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("the pod asks for the Skein proxy, but the mesh is not ready: %v", err))
	}
	if _, err := config.Inject(&pod.ObjectMeta, &pod.Spec, ns); err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	log.V(1).Info("Injected the proxy", "reason", d.Reason)
	return nil
}

// podName is the pod's name, or its generateName while the API server has yet to pick one.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
