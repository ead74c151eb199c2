package v1alpha1

import discoveryv1 "k8s.io/api/discovery/v1"

// IsReady tells whether an endpoint may take new traffic: its readiness is true or, as the
// EndpointSlice API says, unset. The xDS compiler and the TrafficSplit controller both judge a
// backend by it, so routing and status agree.
func IsReady(c discoveryv1.EndpointConditions) bool { return c.Ready == nil || *c.Ready }

// ReadyEndpoints counts the ready endpoints of a Service's EndpointSlices.
func ReadyEndpoints(slices []discoveryv1.EndpointSlice) int32 {
	var n int32
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if IsReady(ep.Conditions) {
				n++
			}
		}
	}
	return n
}
