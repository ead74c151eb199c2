package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshStatusSpec says what a MeshStatus covers. The control plane writes MeshStatuses; users read them.
type MeshStatusSpec struct {
	// namespace whose workloads the figures cover; empty for the whole mesh.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// Health is the mesh's health at a glance.
// +kubebuilder:validation:Enum=Healthy;Degraded;Unavailable;Unknown
type Health string

const (
	// HealthHealthy: the control plane is ready and serving.
	HealthHealthy Health = "Healthy"
	// HealthDegraded: the control plane serves, but something needs attention.
	HealthDegraded Health = "Degraded"
	// HealthUnavailable: the control plane cannot issue identities or push configuration.
	HealthUnavailable Health = "Unavailable"
	// HealthUnknown: not yet observed.
	HealthUnknown Health = "Unknown"
)

// GoldenMetrics are the golden signals over the telemetry window. Figures are decimal strings, as
// Kubernetes APIs carry no floating point; they are empty until traffic has been observed.
type GoldenMetrics struct {
	// successRate is the share of requests that did not fail with a 5xx or a connection error, in percent.
	// +optional
	SuccessRate string `json:"successRate,omitempty"`

	// rps is requests per second.
	// +optional
	RPS string `json:"rps,omitempty"`

	// latencyP50 is the median response latency, for example "3ms".
	// +optional
	LatencyP50 string `json:"latencyP50,omitempty"`

	// latencyP95 is the 95th percentile response latency.
	// +optional
	LatencyP95 string `json:"latencyP95,omitempty"`

	// latencyP99 is the 99th percentile response latency.
	// +optional
	LatencyP99 string `json:"latencyP99,omitempty"`
}

// ServiceStatus holds one service's figures.
type ServiceStatus struct {
	// name of the Service.
	Name string `json:"name"`

	// namespace of the Service.
	Namespace string `json:"namespace"`

	// meshed is how many of the service's endpoints run a proxy, as "meshed/total".
	// +optional
	Meshed string `json:"meshed,omitempty"`

	// The golden metrics of the service.
	GoldenMetrics `json:",inline"`
}

// LinkSummary is one Link's state.
type LinkSummary struct {
	// name of the Link, as namespace/name.
	Name string `json:"name"`

	// cluster is the remote cluster's name.
	Cluster string `json:"cluster"`

	// alive is true while the remote gateway answers.
	Alive bool `json:"alive"`

	// mirroredServices is how many services are mirrored from the remote cluster.
	// +optional
	MirroredServices int32 `json:"mirroredServices,omitempty"`
}

// MeshStatusStatus is the mesh as the control plane sees it.
type MeshStatusStatus struct {
	// conditions: Ready when the figures are current.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// health of the control plane: Healthy, Degraded, Unavailable or Unknown.
	// +optional
	Health Health `json:"health,omitempty"`

	// meshedPods is how many pods run a proxy.
	// +optional
	MeshedPods int32 `json:"meshedPods,omitempty"`

	// totalPods is how many pods there are in scope.
	// +optional
	TotalPods int32 `json:"totalPods,omitempty"`

	// meshed is meshedPods/totalPods, for display.
	// +optional
	Meshed string `json:"meshed,omitempty"`

	// connectedProxies is how many proxies are connected to the control plane.
	// +optional
	ConnectedProxies int32 `json:"connectedProxies,omitempty"`

	// mtlsCoverage is the share of meshed traffic carried over mTLS, in percent.
	// +optional
	MTLSCoverage string `json:"mtlsCoverage,omitempty"`

	// The golden metrics over the whole scope.
	GoldenMetrics `json:",inline"`

	// window is the telemetry window the figures cover.
	// +optional
	Window string `json:"window,omitempty"`

	// certificateExpiry is the soonest expiry among the issuer and the workload certificates.
	// +optional
	CertificateExpiry *metav1.Time `json:"certificateExpiry,omitempty"`

	// services holds per-service figures.
	// +optional
	// +listType=atomic
	Services []ServiceStatus `json:"services,omitempty"`

	// links holds the state of this cluster's Links.
	// +optional
	// +listType=atomic
	Links []LinkSummary `json:"links,omitempty"`

	// lastUpdateTime is when the figures were computed.
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`
}

// MeshStatus reports the mesh's health and golden metrics: "default" for the whole mesh, and one
// named after each meshed namespace. `kubectl get meshstatus` is the first look at the mesh.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ms,categories=skein
// +kubebuilder:printcolumn:name="Health",type=string,JSONPath=`.status.health`
// +kubebuilder:printcolumn:name="Meshed",type=string,JSONPath=`.status.meshed`
// +kubebuilder:printcolumn:name="mTLS",type=string,JSONPath=`.status.mtlsCoverage`
// +kubebuilder:printcolumn:name="Success",type=string,JSONPath=`.status.successRate`
// +kubebuilder:printcolumn:name="RPS",type=string,JSONPath=`.status.rps`
// +kubebuilder:printcolumn:name="P99",type=string,JSONPath=`.status.latencyP99`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="P50",type=string,priority=1,JSONPath=`.status.latencyP50`
// +kubebuilder:printcolumn:name="P95",type=string,priority=1,JSONPath=`.status.latencyP95`
// +kubebuilder:printcolumn:name="Proxies",type=integer,priority=1,JSONPath=`.status.connectedProxies`
// +kubebuilder:printcolumn:name="Cert Expiry",type=string,priority=1,JSONPath=`.status.certificateExpiry`
type MeshStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what the MeshStatus covers.
	// +optional
	Spec MeshStatusSpec `json:"spec,omitempty"`

	// status is the mesh's health and figures.
	// +optional
	Status MeshStatusStatus `json:"status,omitempty"`
}

// MeshStatusList is a list of MeshStatuses.
// +kubebuilder:object:root=true
type MeshStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshStatus `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshStatus{}, &MeshStatusList{})
}
