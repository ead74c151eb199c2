package controllers

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// problemRank orders a Link's problems: the first one names the conditions' reason.
var problemRank = map[string]int{
	meshv1.ReasonCredentialsInvalid:      0,
	meshv1.ReasonClusterUnreachable:      1,
	meshv1.ReasonGatewayIdentityMismatch: 2,
	meshv1.ReasonGatewayUnreachable:      3,
	meshv1.ReasonNamespaceMissing:        4,
	meshv1.ReasonNameConflict:            5,
	meshv1.ReasonReconcileFailed:         6,
}

// reconcileStatus derives the Link's status from what this pass observed, and records an event
// where the gateway's health or the Link's first problem changed.
func (r *LinkReconciler) reconcileStatus(link *meshv1.Link, pass *linkPass) {
	wasAlive := link.Status.Gateway != nil && link.Status.Gateway.Alive
	var wasDegraded metav1.Condition // a copy: setting the conditions changes them in place
	if c := meta.FindStatusCondition(link.Status.Conditions, meshv1.ConditionDegraded); c != nil {
		wasDegraded = *c
	}

	gw := pass.gateway
	link.Status.ObservedGeneration = link.Generation
	link.Status.Gateway = &meshv1.GatewayStatus{Alive: gw.Alive}
	if gw.Probed {
		link.Status.Gateway.LatencyMillis = gw.Latency.Milliseconds()
		link.Status.Gateway.LastProbeTime = &metav1.Time{Time: gw.LastProbe}
	}
	slices.Sort(pass.mirrored)
	link.Status.MirroredServices = pass.mirrored
	link.Status.MirroredServiceCount = int32(len(pass.mirrored))

	problems := pass.problems
	// A failure under the threshold is what the threshold forgives; it counts once the endpoints go.
	if gw.Reason != "" && !gw.Alive {
		problems = append(problems, problem{gw.Reason, fmt.Sprintf("Gateway %s: %s (%d probes in a row failed)", link.Spec.GatewayAddress, gw.Message, gw.Failures)})
	}
	slices.SortStableFunc(problems, func(a, b problem) int { return problemRank[a.reason] - problemRank[b.reason] })

	switch {
	case len(problems) > 0:
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.message
		}
		msg := strings.Join(msgs, "; ")
		r.setLinkConditions(link, metav1.ConditionFalse, metav1.ConditionTrue, problems[0].reason, msg)
		if wasDegraded.Status != metav1.ConditionTrue || wasDegraded.Reason != problems[0].reason {
			r.Recorder.Eventf(link, nil, corev1.EventTypeWarning, problems[0].reason, "Reconcile", msg)
		}
	case !gw.Alive:
		r.setLinkConditions(link, metav1.ConditionFalse, metav1.ConditionFalse, meshv1.ReasonReconciling, "The gateway has not answered a probe yet")
	default:
		r.setLinkConditions(link, metav1.ConditionTrue, metav1.ConditionFalse, meshv1.ReasonReconciled,
			fmt.Sprintf("%d Services mirrored from cluster %s; its gateway answers", len(pass.mirrored), link.Spec.TargetClusterName))
	}
	switch {
	case gw.Alive && !wasAlive:
		r.Recorder.Eventf(link, nil, corev1.EventTypeNormal, meshv1.ReasonGatewayAlive, "Probe",
			"Gateway %s answers; the mirrored endpoints are ready", link.Spec.GatewayAddress)
	case !gw.Alive && wasAlive:
		r.Recorder.Eventf(link, nil, corev1.EventTypeWarning, gw.Reason, "Probe",
			"Gateway %s failed %d probes in a row; the mirrored endpoints are withdrawn: %s", link.Spec.GatewayAddress, gw.Failures, gw.Message)
	}
}

func (r *LinkReconciler) setLinkConditions(link *meshv1.Link, ready, degraded metav1.ConditionStatus, reason, msg string) {
	for typ, status := range map[string]metav1.ConditionStatus{meshv1.ConditionReady: ready, meshv1.ConditionDegraded: degraded} {
		meta.SetStatusCondition(&link.Status.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: link.Generation,
		})
	}
}
