package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrafficSplitSpec sends a share of the traffic for one Service (the apex) to other Services.
// The field names are SMI's, so existing TrafficSplits read the same.
// +kubebuilder:validation:XValidation:rule="self.backends.exists(b, b.weight > 0)",message="spec.backends: at least one backend must have a weight above zero, or the apex service would get no traffic"
// +kubebuilder:validation:XValidation:rule="!self.backends.exists(b, b.service == self.service)",message="spec.backends: the apex service spec.service cannot also be a backend; route its stable share to a separate Service"
// +kubebuilder:validation:XValidation:rule="!has(self.matches) || self.matches.all(m, self.backends.exists(b, b.service == m.backend))",message="spec.matches[].backend must name one of spec.backends"
type TrafficSplitSpec struct {
	// service is the apex Service, in this namespace, whose traffic is split. Clients keep calling it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Service string `json:"service"`

	// backends are the Services, in this namespace, that receive the apex's traffic, each in
	// proportion to its weight. A backend without endpoints gives its share to the others.
	// +required
	// +listType=map
	// +listMapKey=service
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Backends []TrafficSplitBackend `json:"backends"`

	// matches send requests that match to one backend, whatever the weights: header-based canaries.
	// The first match that applies wins.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Matches []HTTPMatch `json:"matches,omitempty"`
}

// TrafficSplitBackend is one Service that receives a share of the apex's traffic.
type TrafficSplitBackend struct {
	// service is the backend Service's name, in the TrafficSplit's namespace. The pattern admits a
	// DNS name such as "web.other" so that the admission webhook can say why a Service of another
	// namespace cannot be a backend.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Service string `json:"service"`

	// weight is the backend's share relative to the other backends' weights. 0 sends it nothing.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Weight int32 `json:"weight"`
}

// HTTPMatch sends HTTP requests that match every condition given to one backend.
// +kubebuilder:validation:XValidation:rule="has(self.headers) || has(self.pathPrefix)",message="spec.matches[]: give headers or a pathPrefix to match on"
type HTTPMatch struct {
	// headers that must all be present with exactly these values.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Headers []HeaderMatch `json:"headers,omitempty"`

	// pathPrefix the request's path must start with.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	PathPrefix string `json:"pathPrefix,omitempty"`

	// backend is the service, one of spec.backends, that matching requests go to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Backend string `json:"backend"`
}

// HeaderMatch matches one HTTP header exactly.
type HeaderMatch struct {
	// name of the header, case-insensitive.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Name string `json:"name"`

	// value the header must have.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value"`
}

// TrafficSplitStatus is what the control plane put in force.
type TrafficSplitStatus struct {
	// conditions: Ready, and Degraded while a backend cannot serve.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// backends are the weights in force: a backend that cannot serve (its Service is missing or has
	// no ready endpoint) has weight 0 here and its share is spread over the others. Empty while the
	// split is not in force: its apex Service is missing, or an older split of the apex is in force.
	// +optional
	// +listType=map
	// +listMapKey=service
	Backends []TrafficSplitBackendStatus `json:"backends,omitempty"`
}

// TrafficSplitBackendStatus is one backend's weight in force.
type TrafficSplitBackendStatus struct {
	// service is the backend Service.
	Service string `json:"service"`

	// weight is the weight in force.
	Weight int32 `json:"weight"`

	// endpoints is how many ready endpoints the backend has.
	// +optional
	Endpoints int32 `json:"endpoints,omitempty"`
}

// TrafficSplit shifts a share of a Service's traffic to other Services: canaries and blue/green.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ts,categories=skein
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.service`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type TrafficSplit struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired split.
	// +required
	Spec TrafficSplitSpec `json:"spec"`

	// status is the split in force.
	// +optional
	Status TrafficSplitStatus `json:"status,omitempty"`
}

// TrafficSplitList is a list of TrafficSplits.
// +kubebuilder:object:root=true
type TrafficSplitList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficSplit `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TrafficSplit{}, &TrafficSplitList{})
}
