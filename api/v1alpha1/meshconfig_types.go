package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshConfigSpec is the mesh-wide configuration: identity, proxy, injection and telemetry.
type MeshConfigSpec struct {
	// trustDomain is the SPIFFE trust domain of every workload identity in the mesh:
	// spiffe://<trustDomain>/ns/<namespace>/sa/<serviceaccount>. Changing it re-identifies every workload.
	// +optional
	// +kubebuilder:default="cluster.local"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	TrustDomain string `json:"trustDomain,omitempty"`

	// identity configures the trust anchor, the issuer and the workload certificates.
	// +optional
	// +kubebuilder:default={}
	Identity IdentitySpec `json:"identity,omitempty"`

	// proxy configures the skein-proxy that is injected into meshed pods.
	// +optional
	// +kubebuilder:default={}
	Proxy ProxySpec `json:"proxy,omitempty"`

	// injection configures how pods are meshed.
	// +optional
	// +kubebuilder:default={}
	Injection InjectionSpec `json:"injection,omitempty"`

	// telemetry configures the golden metrics the control plane computes.
	// +optional
	// +kubebuilder:default={}
	Telemetry TelemetrySpec `json:"telemetry,omitempty"`

	// multicluster configures the gateway that other clusters' Links reach this one through.
	// +optional
	// +kubebuilder:default={}
	Multicluster MulticlusterSpec `json:"multicluster,omitempty"`
}

// IdentitySpec configures the mesh's certificate authority.
// +kubebuilder:validation:XValidation:rule="!has(self.workloadCertLifetime) || duration(self.workloadCertLifetime) >= duration('1h')",message="spec.identity.workloadCertLifetime must be at least 1h"
// +kubebuilder:validation:XValidation:rule="!has(self.workloadCertLifetime) || duration(self.workloadCertLifetime) <= duration('168h')",message="spec.identity.workloadCertLifetime must be at most 168h (7 days)"
type IdentitySpec struct {
	// trustAnchor is the root of trust every proxy verifies its peers against.
	// +optional
	// +kubebuilder:default={}
	TrustAnchor TrustAnchorSpec `json:"trustAnchor,omitempty"`

	// issuer is the intermediate CA, signed by the trust anchor and renewed by cert-manager,
	// with which the identity service signs workload certificates.
	// +optional
	// +kubebuilder:default={}
	Issuer IssuerSpec `json:"issuer,omitempty"`

	// workloadCertLifetime is how long a proxy's certificate is valid. Proxies renew at about 70%
	// of it. Between 1h and 168h; a certificate is cut short where its issuer expires first.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	WorkloadCertLifetime *metav1.Duration `json:"workloadCertLifetime,omitempty"`

	// clockSkewAllowance backdates workload certificates so that peers whose clocks run a little
	// behind still accept them.
	// +optional
	// +kubebuilder:default="20s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	ClockSkewAllowance *metav1.Duration `json:"clockSkewAllowance,omitempty"`
}

// TrustAnchorSpec says where the trust anchor comes from.
// +kubebuilder:validation:XValidation:rule="!has(self.lifetime) || duration(self.lifetime) >= duration('24h')",message="spec.identity.trustAnchor.lifetime must be at least 24h"
type TrustAnchorSpec struct {
	// secretName names a Secret in the control plane's namespace that holds a CA the user brings
	// (tls.crt and tls.key). When empty, cert-manager makes a self-signed trust anchor.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SecretName string `json:"secretName,omitempty"`

	// lifetime of a trust anchor that cert-manager makes. Ignored when secretName is set.
	// +optional
	// +kubebuilder:default="87600h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`
}

// IssuerSpec configures the identity issuer certificate that cert-manager issues and renews.
// +kubebuilder:validation:XValidation:rule="!has(self.lifetime) || !has(self.renewBefore) || duration(self.renewBefore) < duration(self.lifetime)",message="spec.identity.issuer.renewBefore must be shorter than spec.identity.issuer.lifetime"
type IssuerSpec struct {
	// lifetime of the issuer certificate.
	// +optional
	// +kubebuilder:default="48h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`

	// renewBefore is how long before expiry cert-manager renews the issuer.
	// +optional
	// +kubebuilder:default="25h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// ProxyLogLevel is the verbosity of skein-proxy's log.
// +kubebuilder:validation:Enum=error;warn;info;debug;trace
type ProxyLogLevel string

// ProxySpec configures skein-proxy.
type ProxySpec struct {
	// image of skein-proxy.
	// +optional
	// +kubebuilder:default="ghcr.io/skeinmesh/skein-proxy:v0.1.0"
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image,omitempty"`

	// logLevel of skein-proxy: error, warn, info, debug or trace.
	// +optional
	// +kubebuilder:default=info
	LogLevel ProxyLogLevel `json:"logLevel,omitempty"`

	// resources of the proxy container. Pods may override them with annotations.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// ports the proxy listens on.
	// +optional
	// +kubebuilder:default={}
	Ports ProxyPorts `json:"ports,omitempty"`

	// opaquePorts are destination ports whose traffic is carried as TCP without protocol detection,
	// for protocols where the server speaks first (SMTP, MySQL, ...).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	OpaquePorts []int32 `json:"opaquePorts,omitempty"`
}

// ProxyPorts are the ports skein-proxy listens on.
// +kubebuilder:validation:XValidation:rule="!has(self.inbound) || !has(self.outbound) || !has(self.control) || !has(self.admin) || [self.inbound, self.outbound, self.control, self.admin].all(p, [self.inbound, self.outbound, self.control, self.admin].exists_one(q, q == p))",message="spec.proxy.ports: inbound, outbound, control and admin must be four different ports"
type ProxyPorts struct {
	// inbound receives mTLS traffic from other proxies.
	// +optional
	// +kubebuilder:default=4143
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Inbound int32 `json:"inbound,omitempty"`

	// outbound receives the application's outgoing traffic, redirected by iptables.
	// +optional
	// +kubebuilder:default=4140
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Outbound int32 `json:"outbound,omitempty"`

	// control is the proxy's port for the control plane.
	// +optional
	// +kubebuilder:default=4190
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Control int32 `json:"control,omitempty"`

	// admin serves /metrics, /ready and /live.
	// +optional
	// +kubebuilder:default=4191
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Admin int32 `json:"admin,omitempty"`
}

// SidecarMode is how the proxy is added to a pod.
// +kubebuilder:validation:Enum=Native;Classic
type SidecarMode string

const (
	// SidecarNative adds the proxy as an init container with restartPolicy Always, so it starts
	// before the application and does not keep Jobs from completing.
	SidecarNative SidecarMode = "Native"
	// SidecarClassic adds the proxy as the first container and holds the application until it is ready.
	SidecarClassic SidecarMode = "Classic"
)

// RedirectMode is what sets up the iptables redirect into the proxy.
// +kubebuilder:validation:Enum=InitContainer;CNI
type RedirectMode string

const (
	// RedirectInitContainer adds the proxy-init init container to each pod.
	RedirectInitContainer RedirectMode = "InitContainer"
	// RedirectCNI leaves the redirect to a CNI plugin and adds no init container.
	RedirectCNI RedirectMode = "CNI"
)

// InjectionSpec configures proxy injection.
type InjectionSpec struct {
	// sidecarMode is Native (an init container with restartPolicy Always) or Classic (a regular
	// container that the application waits for).
	// +optional
	// +kubebuilder:default=Native
	SidecarMode SidecarMode `json:"sidecarMode,omitempty"`

	// redirect is InitContainer (proxy-init sets up iptables in each pod) or CNI.
	// +optional
	// +kubebuilder:default=InitContainer
	Redirect RedirectMode `json:"redirect,omitempty"`

	// skipInboundPorts are ports whose inbound traffic bypasses the proxy.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	SkipInboundPorts []int32 `json:"skipInboundPorts,omitempty"`

	// skipOutboundPorts are destination ports whose outbound traffic bypasses the proxy.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	SkipOutboundPorts []int32 `json:"skipOutboundPorts,omitempty"`
}

// TelemetrySpec configures the golden metrics.
// +kubebuilder:validation:XValidation:rule="!has(self.window) || !has(self.scrapeInterval) || duration(self.window) - duration(self.scrapeInterval) >= duration(self.scrapeInterval)",message="spec.telemetry.scrapeInterval must be at most half of spec.telemetry.window: a rate needs two scrapes in a window"
type TelemetrySpec struct {
	// window over which success rate, requests per second and latency percentiles are computed.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('1h')",message="spec.telemetry.window must be between 10s and 1h"
	Window *metav1.Duration `json:"window,omitempty"`

	// scrapeInterval is how often the control plane reads each proxy's metrics.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="spec.telemetry.scrapeInterval must be between 1s and 5m"
	ScrapeInterval *metav1.Duration `json:"scrapeInterval,omitempty"`

	// maxAuthorities bounds the distinct authority label values a proxy keeps; further authorities
	// are counted under one "other" value so that metrics stay bounded.
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxAuthorities int32 `json:"maxAuthorities,omitempty"`
}

// MulticlusterSpec configures this cluster's side of multicluster links.
type MulticlusterSpec struct {
	// enabled deploys the multicluster gateway, so that linked clusters reach this one's exported services.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// gatewayPort is the port the gateway accepts mTLS on.
	// +optional
	// +kubebuilder:default=4143
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	GatewayPort int32 `json:"gatewayPort,omitempty"`
}

// CertificateInfo describes a certificate the mesh relies on.
type CertificateInfo struct {
	// subject is the certificate's subject common name.
	// +optional
	Subject string `json:"subject,omitempty"`

	// fingerprint is the SHA-256 digest of the certificate's DER bytes, in hex.
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`

	// notAfter is when the certificate expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
}

// MeshConfigStatus is what the control plane observed while applying the MeshConfig.
type MeshConfigStatus struct {
	// conditions: Ready, Available, Progressing and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// trustAnchors are the anchors in the trust bundle: more than one while an anchor rotates.
	// +optional
	// +listType=atomic
	TrustAnchors []CertificateInfo `json:"trustAnchors,omitempty"`

	// issuer is the identity issuer certificate currently in force.
	// +optional
	Issuer *CertificateInfo `json:"issuer,omitempty"`
}

// MeshConfig is the configuration of the whole mesh. A cluster has one, named "default".
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mc,categories=skein
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",message="metadata.name: a MeshConfig must be named 'default'; a cluster has only one"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Trust Domain",type=string,JSONPath=`.spec.trustDomain`
// +kubebuilder:printcolumn:name="Issuer Expiry",type=string,JSONPath=`.status.issuer.notAfter`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type MeshConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired configuration.
	// +optional
	// +kubebuilder:default={}
	Spec MeshConfigSpec `json:"spec,omitempty"`

	// status is what the control plane observed.
	// +optional
	Status MeshConfigStatus `json:"status,omitempty"`
}

// MeshConfigList is a list of MeshConfigs.
// +kubebuilder:object:root=true
type MeshConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshConfig `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshConfig{}, &MeshConfigList{})
}
