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

	// tcpConnections is how many TCP connections the proxies hold open.
	// +optional
	TCPConnections *int64 `json:"tcpConnections,omitempty"`
}

// RouteStatus holds one route's figures: "default" for the requests no TrafficSplit match took,
// "match-<i>" for those the split's i-th match took.
type RouteStatus struct {
	// name of the route.
	Name string `json:"name"`

	// The golden metrics of the route.
	GoldenMetrics `json:",inline"`
}

// WorkloadStatus holds the figures of the requests a workload's pods served.
type WorkloadStatus struct {
	// name of the workload as kind/name: its pods' controller ("deployment/web"), or
	// "pod/<name>" for a pod without one.
	Name string `json:"name"`

	// namespace of the workload.
	Namespace string `json:"namespace"`

	// meshed is how many of the workload's pods run a proxy, as "meshed/total".
	// +optional
	Meshed string `json:"meshed,omitempty"`

	// mtlsCoverage is the share of the requests served that came over mTLS, in percent.
	// +optional
	MTLSCoverage string `json:"mtlsCoverage,omitempty"`

	// The golden metrics of the workload.
	GoldenMetrics `json:",inline"`
}

// TrafficSplitSummary holds a TrafficSplit's weights in force and what each backend was observed to take.
type TrafficSplitSummary struct {
	// name of the TrafficSplit.
	Name string `json:"name"`

	// namespace of the TrafficSplit.
	Namespace string `json:"namespace"`

	// apex is the Service whose traffic is split.
	Apex string `json:"apex"`

	// backends are the split's backends.
	// +optional
	// +listType=atomic
	Backends []TrafficSplitBackendSummary `json:"backends,omitempty"`
}

// TrafficSplitBackendSummary is one backend of a TrafficSplit.
type TrafficSplitBackendSummary struct {
	// service is the backend Service.
	Service string `json:"service"`

	// weight is the weight in force, from the TrafficSplit's status.
	Weight int32 `json:"weight"`

	// observedShare is the share of the apex's requests this backend took over the window, in percent.
	// +optional
	ObservedShare string `json:"observedShare,omitempty"`

	// The golden metrics of the requests this backend took.
	GoldenMetrics `json:",inline"`
}

// NamespaceSummary holds one meshed namespace's figures, in the cluster-wide MeshStatus.
type NamespaceSummary struct {
	// name of the namespace.
	Name string `json:"name"`

	// meshed is how many of the namespace's pods run a proxy, as "meshed/total".
	// +optional
	Meshed string `json:"meshed,omitempty"`

	// connectedProxies is how many of the namespace's proxies answered the last scrape.
	// +optional
	ConnectedProxies int32 `json:"connectedProxies,omitempty"`

	// mtlsCoverage is the share of the requests served that came over mTLS, in percent.
	// +optional
	MTLSCoverage string `json:"mtlsCoverage,omitempty"`

	// The golden metrics of the requests the namespace's pods served.
	GoldenMetrics `json:",inline"`
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

	// The golden metrics of the service, as its meshed clients saw it.
	GoldenMetrics `json:",inline"`

	// routes holds the figures of each route of the service that had traffic.
	// +optional
	// +listType=atomic
	Routes []RouteStatus `json:"routes,omitempty"`
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

	// services holds per-service figures (in a namespace's MeshStatus).
	// +optional
	// +listType=atomic
	Services []ServiceStatus `json:"services,omitempty"`

	// workloads holds per-workload figures (in a namespace's MeshStatus).
	// +optional
	// +listType=atomic
	Workloads []WorkloadStatus `json:"workloads,omitempty"`

	// trafficSplits holds each TrafficSplit's weights and observed shares (in a namespace's MeshStatus).
	// +optional
	// +listType=atomic
	TrafficSplits []TrafficSplitSummary `json:"trafficSplits,omitempty"`

	// namespaces holds per-namespace figures (in the cluster-wide MeshStatus).
	// +optional
	// +listType=atomic
	Namespaces []NamespaceSummary `json:"namespaces,omitempty"`

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
