package webhooks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// Failing closed is safe here: the webhook sees only TrafficSplits, so while it is down users cannot
// change splits, and nothing else in the cluster (the control plane's own pods included) waits on it.
// +kubebuilder:webhook:path=/validate-mesh-skein-dev-v1alpha1-trafficsplit,mutating=false,failurePolicy=fail,sideEffects=None,groups=mesh.skein.dev,resources=trafficsplits,verbs=create;update,versions=v1alpha1,name=trafficsplits.mesh.skein.dev,admissionReviewVersions=v1,timeoutSeconds=5

// +kubebuilder:rbac:groups=mesh.skein.dev,resources=trafficsplits,verbs=get;list;watch

// TrafficSplitValidator refuses the TrafficSplits CEL cannot judge alone: a backend named in another
// namespace, an apex that another TrafficSplit already splits, and splits that send traffic round in
// a loop. It reads from the API server rather than a cache, so that two splits created back to back
// see each other.
type TrafficSplitValidator struct {
	Reader client.Reader
}

var _ admission.Validator[*meshv1.TrafficSplit] = &TrafficSplitValidator{}

// ValidateCreate checks a new TrafficSplit against the others in its namespace.
func (v *TrafficSplitValidator) ValidateCreate(ctx context.Context, ts *meshv1.TrafficSplit) (admission.Warnings, error) {
	return v.validate(ctx, nil, ts)
}

// ValidateUpdate checks a changed TrafficSplit against the others in its namespace.
func (v *TrafficSplitValidator) ValidateUpdate(ctx context.Context, old, ts *meshv1.TrafficSplit) (admission.Warnings, error) {
	return v.validate(ctx, old, ts)
}

// ValidateDelete allows every deletion: removing a split restores the apex's own endpoints.
func (v *TrafficSplitValidator) ValidateDelete(context.Context, *meshv1.TrafficSplit) (admission.Warnings, error) {
	return nil, nil
}

func (v *TrafficSplitValidator) validate(ctx context.Context, old, ts *meshv1.TrafficSplit) (admission.Warnings, error) {
	errs := backendNamespaces(ts)
	others := &meshv1.TrafficSplitList{}
	if err := v.Reader.List(ctx, others, client.InNamespace(ts.Namespace)); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing the TrafficSplits of namespace %s: %w", ts.Namespace, err))
	}
	var warnings admission.Warnings
	var rest []meshv1.TrafficSplit
	for _, o := range others.Items {
		if o.Name == ts.Name {
			continue
		}
		rest = append(rest, o)
		if o.Spec.Service != ts.Spec.Service {
			continue
		}
		// Two splits of one apex can exist if one was made while this webhook was down; an update
		// that keeps the apex is then let through, so neither is stuck, and the controller puts the
		// older one in force.
		if old != nil && old.Spec.Service == ts.Spec.Service {
			warnings = append(warnings, fmt.Sprintf("TrafficSplit %s also splits service %q; only the older of the two is in force", o.Name, ts.Spec.Service))
			continue
		}
		errs = append(errs, field.Invalid(field.NewPath("spec", "service"), ts.Spec.Service,
			fmt.Sprintf("service %q is already split by TrafficSplit %s; change that one, or delete it first", ts.Spec.Service, o.Name)))
	}
	if err := loop(ts, rest); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(meshv1.GroupVersion.WithKind("TrafficSplit").GroupKind(), ts.Name, errs)
	}
	return warnings, nil
}

// backendNamespaces refuses backends written as "name.namespace" (or a longer DNS name): a split
// moves traffic between Services of its own namespace only.
func backendNamespaces(ts *meshv1.TrafficSplit) field.ErrorList {
	var errs field.ErrorList
	for i, b := range ts.Spec.Backends {
		name, ns, dotted := strings.Cut(b.Service, ".")
		if !dotted {
			continue
		}
		ns, _, _ = strings.Cut(ns, ".")
		msg := fmt.Sprintf("names Service %s in namespace %s, but backends must be Services in the TrafficSplit's namespace %s", name, ns, ts.Namespace)
		if ns == ts.Namespace {
			msg = fmt.Sprintf("give the Service's name alone, %q: backends are always in the TrafficSplit's namespace", name)
		}
		errs = append(errs, field.Invalid(field.NewPath("spec", "backends").Index(i).Child("service"), b.Service, msg))
	}
	return errs
}

// loop finds a cycle in the graph whose edges go from each split's apex to its backends, once ts
// replaces any split of the same name. It names the path so the user sees which splits form it.
func loop(ts *meshv1.TrafficSplit, others []meshv1.TrafficSplit) *field.Error {
	type edge struct{ to, split string }
	graph := map[string][]edge{}
	for _, s := range append(slices.Clone(others), *ts) {
		for _, b := range s.Spec.Backends {
			graph[s.Spec.Service] = append(graph[s.Spec.Service], edge{b.Service, s.Name})
		}
	}
	for i, b := range ts.Spec.Backends {
		// A path from this backend back to the apex closes a loop through ts.
		path := []string{ts.Spec.Service + " → " + b.Service + " (this TrafficSplit)"}
		seen := map[string]bool{}
		var walk func(svc string) bool
		walk = func(svc string) bool {
			if svc == ts.Spec.Service {
				return true
			}
			if seen[svc] {
				return false
			}
			seen[svc] = true
			for _, e := range graph[svc] {
				path = append(path, svc+" → "+e.to+" (TrafficSplit "+e.split+")")
				if walk(e.to) {
					return true
				}
				path = path[:len(path)-1]
			}
			return false
		}
		if walk(b.Service) {
			return field.Invalid(field.NewPath("spec", "backends").Index(i).Child("service"), b.Service,
				"sends the traffic of service "+ts.Spec.Service+" round in a loop: "+strings.Join(path, ", "))
		}
	}
	return nil
}
