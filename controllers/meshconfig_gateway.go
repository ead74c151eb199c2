package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/inject"
)

// gatewayProbePort is the gateway Service's port for linked clusters' probes, the Link's default
// probeSpec.port, whatever the proxies' admin port is.
const gatewayProbePort = 4191

// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete

// reconcileGateway deploys the multicluster gateway while spec.multicluster.enabled, and removes it
// otherwise: a ServiceAccount, which is its identity, a Deployment and a LoadBalancer Service, all
// in the control plane's namespace and owned by the MeshConfig.
func (r *MeshConfigReconciler) reconcileGateway(ctx context.Context, mc *meshv1.MeshConfig) (bool, string, error) {
	meta := metav1.ObjectMeta{Namespace: r.Namespace, Name: meshv1.GatewayName}
	sa := &corev1.ServiceAccount{ObjectMeta: meta}
	deploy := &appsv1.Deployment{ObjectMeta: meta}
	svc := &corev1.Service{ObjectMeta: meta}
	if !mc.Spec.Multicluster.Enabled {
		for _, obj := range []client.Object{svc, deploy, sa} {
			if err := r.deleteOwned(ctx, mc, obj); err != nil {
				return false, "", err
			}
		}
		return true, "", nil
	}

	bundle := &corev1.ConfigMap{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: meshv1.TrustBundleName}, bundle); err != nil {
		return false, "", fmt.Errorf("reading the trust bundle: %w", err)
	}
	cfg := inject.Config{Mesh: mc.Spec, ControlPlaneNamespace: r.Namespace, TrustAnchors: bundle.Data[meshv1.TrustBundleKey]}
	pod, err := cfg.GatewayPodSpec()
	if err != nil {
		return false, "", err
	}
	labels := map[string]string{"app.kubernetes.io/name": meshv1.GatewayName, meshv1.ManagedByLabel: meshv1.ManagedByValue}
	selector := map[string]string{"app.kubernetes.io/name": meshv1.GatewayName}
	port := inject.GatewayPort(mc.Spec)

	for _, s := range []struct {
		obj    client.Object
		mutate func()
	}{
		{sa, func() {}},
		{deploy, func() {
			if deploy.Spec.Replicas == nil {
				deploy.Spec.Replicas = ptr.To[int32](1)
			}
			deploy.Spec.Selector = &metav1.LabelSelector{MatchLabels: selector}
			deploy.Spec.Template.Labels = labels
			deploy.Spec.Template.Spec = pod
		}},
		{svc, func() {
			svc.Spec.Type = corev1.ServiceTypeLoadBalancer
			svc.Spec.Selector = selector
			svc.Spec.Ports = []corev1.ServicePort{
				{Name: inject.GatewayPortName, Port: port, TargetPort: intstr.FromString(inject.GatewayPortName), Protocol: corev1.ProtocolTCP},
				{Name: inject.GatewayProbePortName, Port: gatewayProbePort, TargetPort: intstr.FromInt32(inject.GatewayAdminPort(mc.Spec)), Protocol: corev1.ProtocolTCP},
			}
		}},
	} {
		err := r.apply(ctx, mc, s.obj, func() {
			l := s.obj.GetLabels()
			if l == nil {
				l = map[string]string{}
			}
			for k, v := range labels {
				l[k] = v
			}
			s.obj.SetLabels(l)
			s.mutate()
		})
		if err != nil {
			return false, "", err
		}
	}
	return true, "", nil
}

// deleteOwned deletes obj if it exists and the MeshConfig controls it; a user's object of the same
// name is left alone.
func (r *MeshConfigReconciler) deleteOwned(ctx context.Context, mc *meshv1.MeshConfig, obj client.Object) error {
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if owner := metav1.GetControllerOf(obj); owner == nil || owner.UID != mc.UID {
		return nil
	}
	if err := r.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}
