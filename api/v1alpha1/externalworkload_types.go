package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExternalWorkloadSpec describes a workload outside Kubernetes (a VM or a bare-metal host) that runs
// skein-proxy and joins the mesh. Services select it by its labels, as they select pods.
// The field names are Linkerd's, so existing ExternalWorkloads read the same.
type ExternalWorkloadSpec struct {
	// meshTLS is the workload's identity in the mesh.
	// +required
	MeshTLS MeshTLS `json:"meshTLS"`

	// workloadIPs are the workload's addresses: one, or two of different families (dual stack).
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:XValidation:rule="size(self) < 2 || ip(self[0].ip).family() != ip(self[1].ip).family()",message="spec.workloadIPs: two addresses must be one IPv4 and one IPv6"
	WorkloadIPs []WorkloadIP `json:"workloadIPs"`

	// ports the workload serves on.
	// +optional
	// +listType=map
	// +listMapKey=port
	// +kubebuilder:validation:MaxItems=64
	Ports []PortSpec `json:"ports,omitempty"`
}

// MeshTLS is the identity an external workload's proxy is issued and presents.
type MeshTLS struct {
	// identity is the workload's SPIFFE ID: spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>.
	// Its proxy is issued this identity with a token for that ServiceAccount.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^spiffe://[a-z0-9.-]+/ns/[a-z0-9]([-a-z0-9]*[a-z0-9])?/sa/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`
	Identity string `json:"identity"`

	// serverName is the TLS server name peers use to reach the workload.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServerName string `json:"serverName"`
}

// WorkloadIP is one address of an external workload.
type WorkloadIP struct {
	// ip is an IPv4 or IPv6 address.
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="spec.workloadIPs[].ip must be an IPv4 or IPv6 address"
	IP string `json:"ip"`
}

// PortSpec is a port an external workload serves on.
type PortSpec struct {
	// name of the port, for Services' targetPort.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// port number.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// protocol of the port.
	// +optional
	// +kubebuilder:default=TCP
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP
	Protocol string `json:"protocol,omitempty"`
}

// ExternalWorkloadStatus is what the control plane observed of the workload.
type ExternalWorkloadStatus struct {
	// conditions: Ready, and ProxyConnected while the workload's proxy is connected to the control plane.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// lastSeen is when the workload's proxy was last connected.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
}

// ExternalWorkload is a workload outside Kubernetes that is part of the mesh (mesh expansion).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ew,categories=skein
// +kubebuilder:printcolumn:name="Identity",type=string,JSONPath=`.spec.meshTLS.identity`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.spec.workloadIPs[0].ip`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Last Seen",type=date,priority=1,JSONPath=`.status.lastSeen`
type ExternalWorkload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the workload's identity and addresses.
	// +required
	Spec ExternalWorkloadSpec `json:"spec"`

	// status is what the control plane observed.
	// +optional
	Status ExternalWorkloadStatus `json:"status,omitempty"`
}

// ExternalWorkloadList is a list of ExternalWorkloads.
// +kubebuilder:object:root=true
type ExternalWorkloadList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ExternalWorkload `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ExternalWorkload{}, &ExternalWorkloadList{})
}
