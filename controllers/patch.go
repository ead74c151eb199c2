package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// patcher remembers an object as it was fetched, so that a reconcile pass ends with one patch of
// what it changed: the finalizers on the object, the status on the status subresource.
type patcher struct {
	client client.Client
	before client.Object
}

func newPatcher(c client.Client, obj client.Object) *patcher {
	return &patcher{client: c, before: obj.DeepCopyObject().(client.Object)}
}

// patch sends what changed since newPatcher. Each patch works on a copy so that the server's answer to
// one does not overwrite, in obj, what the other is about to send.
func (p *patcher) patch(ctx context.Context, obj client.Object) error {
	var errs []error
	from := client.MergeFrom(p.before)
	if !equality.Semantic.DeepEqual(p.before.GetFinalizers(), obj.GetFinalizers()) {
		errs = append(errs, p.client.Patch(ctx, obj.DeepCopyObject().(client.Object), from))
	}
	changed, err := statusChanged(p.before, obj)
	if err != nil {
		errs = append(errs, err)
	} else if changed {
		errs = append(errs, p.client.Status().Patch(ctx, obj.DeepCopyObject().(client.Object), from))
	}
	// An object whose last finalizer went is gone; there is nothing left to patch.
	return client.IgnoreNotFound(kerrors.FilterOut(kerrors.NewAggregate(errs), apierrors.IsNotFound))
}

func statusChanged(before, after runtime.Object) (bool, error) {
	b, err := runtime.DefaultUnstructuredConverter.ToUnstructured(before)
	if err != nil {
		return false, err
	}
	a, err := runtime.DefaultUnstructuredConverter.ToUnstructured(after)
	if err != nil {
		return false, err
	}
	return !equality.Semantic.DeepEqual(b["status"], a["status"]), nil
}
