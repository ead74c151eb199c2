package check

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

const categoryMulticluster = "multicluster"

// gatewayAvailable checks the gateway that linked clusters reach this one through, when the
// MeshConfig enables multicluster.
func gatewayAvailable(ctx context.Context, e *Env) []Result {
	mc := &meshv1.MeshConfig{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: meshv1.MeshConfigName}, mc); err != nil {
		return warn(err.Error(), "")
	}
	if !mc.Spec.Multicluster.Enabled {
		return ok("multicluster is not enabled: no gateway")
	}
	d := &appsv1.Deployment{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: meshv1.GatewayName}, d)
	switch {
	case apierrors.IsNotFound(err):
		return fail(fmt.Sprintf("no Deployment %s in %s, though spec.multicluster.enabled is true", meshv1.GatewayName, e.Namespace),
			"check the control plane's log: it deploys the gateway")
	case err != nil:
		return fail(err.Error(), "")
	case d.Status.AvailableReplicas == 0:
		return fail(fmt.Sprintf("0 of %d gateway replicas available: linked clusters cannot reach this one", ptrValue(d.Spec.Replicas)),
			fmt.Sprintf("kubectl -n %s describe deployment %s", e.Namespace, meshv1.GatewayName))
	}
	return ok(fmt.Sprintf("Deployment %s: %d of %d replicas available", meshv1.GatewayName, d.Status.AvailableReplicas, ptrValue(d.Spec.Replicas)))
}

// linksReady checks each Link to another cluster: Ready means its services are mirrored and its
// gateway answers.
func linksReady(ctx context.Context, e *Env) []Result {
	links := &meshv1.LinkList{}
	if err := e.Client.List(ctx, links); err != nil {
		return fail(err.Error(), "")
	}
	if len(links.Items) == 0 {
		return ok("no Links to other clusters")
	}
	var results []Result
	for _, l := range links.Items {
		r := Result{Name: fmt.Sprintf("Link %s/%s to cluster %s", l.Namespace, l.Name, l.Spec.TargetClusterName), Status: OK}
		c := meta.FindStatusCondition(l.Status.Conditions, meshv1.ConditionReady)
		switch {
		case c == nil:
			r.Status, r.Message, r.Hint = Fail, "no Ready condition: the control plane has not reconciled it", "check that the control plane runs"
		case c.Status != metav1.ConditionTrue:
			r.Status, r.Message, r.Hint = Fail, fmt.Sprintf("%s: %s", c.Reason, c.Message), fmt.Sprintf("kubectl -n %s describe link %s", l.Namespace, l.Name)
		default:
			r.Message = fmt.Sprintf("%d services mirrored", l.Status.MirroredServiceCount)
			if g := l.Status.Gateway; g != nil {
				r.Message += fmt.Sprintf(", gateway answers in %d ms", g.LatencyMillis)
			}
		}
		results = append(results, r)
	}
	return results
}
