package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LinkSpec connects this cluster to a remote one whose exported Services become reachable here.
// The field names are Linkerd's, so existing Links read the same.
type LinkSpec struct {
	// targetClusterName names the remote cluster. Mirrored services are called <service>-<targetClusterName>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	TargetClusterName string `json:"targetClusterName"`

	// targetClusterDomain is the remote cluster's DNS domain.
	// +optional
	// +kubebuilder:default="cluster.local"
	// +kubebuilder:validation:MaxLength=253
	TargetClusterDomain string `json:"targetClusterDomain,omitempty"`

	// clusterCredentialsSecret names a Secret, in the Link's namespace, whose "kubeconfig" key lets
	// this cluster read the remote cluster's Services and EndpointSlices.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ClusterCredentialsSecret string `json:"clusterCredentialsSecret"`

	// gatewayAddress is the remote gateway's IP address or DNS name, reachable from this cluster.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.gatewayAddress must be an IP address or a DNS name"
	GatewayAddress string `json:"gatewayAddress"`

	// gatewayPort is the port the remote gateway accepts mTLS on.
	// +optional
	// +kubebuilder:default=4143
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	GatewayPort int32 `json:"gatewayPort,omitempty"`

	// gatewayIdentity is the SPIFFE ID the remote gateway must present.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^spiffe://[a-z0-9.-]+/.+$`
	GatewayIdentity string `json:"gatewayIdentity"`

	// probeSpec says how the remote gateway's health is checked.
	// +optional
	// +kubebuilder:default={}
	ProbeSpec ProbeSpec `json:"probeSpec,omitempty"`

	// selector picks the remote Services to mirror. When absent, Services labelled
	// mesh.skein.dev/exported=true are mirrored.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// ProbeSpec says how the remote gateway is probed.
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || !has(self.period) || duration(self.timeout) <= duration(self.period)",message="spec.probeSpec.timeout must not be longer than spec.probeSpec.period"
type ProbeSpec struct {
	// path of the gateway's health endpoint.
	// +optional
	// +kubebuilder:default="/ready"
	// +kubebuilder:validation:Pattern=`^/`
	// +kubebuilder:validation:MaxLength=1024
	Path string `json:"path,omitempty"`

	// port of the gateway's health endpoint.
	// +optional
	// +kubebuilder:default=4191
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// period between probes.
	// +optional
	// +kubebuilder:default="3s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Period *metav1.Duration `json:"period,omitempty"`

	// timeout of one probe.
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// failureThreshold is how many probes in a row must fail before the mirrored endpoints are withdrawn.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailureThreshold int32 `json:"failureThreshold,omitempty"`
}

// GatewayStatus is what the last probes of the remote gateway found.
type GatewayStatus struct {
	// alive is true while the gateway answers its probes.
	Alive bool `json:"alive"`

	// latencyMillis is the latency of the last successful probe, in milliseconds.
	// +optional
	LatencyMillis int64 `json:"latencyMillis,omitempty"`

	// lastProbeTime is when the gateway was last probed.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
}

// LinkStatus is what the Link controller observed of the remote cluster.
type LinkStatus struct {
	// conditions: Ready, and Degraded while the remote cluster or its gateway cannot be reached.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// mirroredServices are the local names of the Services mirrored from the remote cluster.
	// +optional
	// +listType=set
	MirroredServices []string `json:"mirroredServices,omitempty"`

	// mirroredServiceCount is the number of mirrored services.
	// +optional
	MirroredServiceCount int32 `json:"mirroredServiceCount,omitempty"`

	// gateway is the remote gateway's health.
	// +optional
	Gateway *GatewayStatus `json:"gateway,omitempty"`
}

// Link connects this cluster to a remote cluster: the remote's exported Services are mirrored here and
// reached through its gateway, with mTLS.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lnk,categories=skein
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.targetClusterName`
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.spec.gatewayAddress`
// +kubebuilder:printcolumn:name="Alive",type=boolean,JSONPath=`.status.gateway.alive`
// +kubebuilder:printcolumn:name="Services",type=integer,JSONPath=`.status.mirroredServiceCount`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Latency",type=integer,priority=1,JSONPath=`.status.gateway.latencyMillis`
type Link struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the remote cluster and how to reach it.
	// +required
	Spec LinkSpec `json:"spec"`

	// status is what was observed of the remote cluster.
	// +optional
	Status LinkStatus `json:"status,omitempty"`
}

// LinkList is a list of Links.
// +kubebuilder:object:root=true
type LinkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Link `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Link{}, &LinkList{})
}
