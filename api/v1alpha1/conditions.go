package v1alpha1

// Condition types. Each is "normal-true": True is the healthy state, except Progressing and Degraded,
// which are "abnormal-true" and True only while something needs attention.
const (
	// ConditionReady summarises an object: True when every step of its reconciliation succeeded.
	ConditionReady = "Ready"

	// ConditionAvailable is True when the mesh can serve with this configuration: the control plane
	// can issue identities and push configuration.
	ConditionAvailable = "Available"

	// ConditionProgressing is True while the controller works towards the desired state, for
	// example while cert-manager has yet to issue a certificate.
	ConditionProgressing = "Progressing"

	// ConditionDegraded is True when a step failed and the controller retries it.
	ConditionDegraded = "Degraded"
)

// Condition reasons, CamelCase as metav1.Condition requires. They are stable: tools may match on them.
const (
	// ReasonReconciled: every step succeeded.
	ReasonReconciled = "Reconciled"

	// ReasonReconciling: the controller is working on the object.
	ReasonReconciling = "Reconciling"

	// ReasonReconcileFailed: a step failed; the message names it.
	ReasonReconcileFailed = "ReconcileFailed"

	// ReasonDeleting: the object is being deleted and its finalizer is cleaning up.
	ReasonDeleting = "Deleting"

	// ReasonApexMissing: a TrafficSplit's apex Service does not exist, so nothing routes by the split.
	ReasonApexMissing = "ApexMissing"

	// ReasonSuperseded: an older TrafficSplit already splits the same apex Service and is the one in
	// force; the message names it.
	ReasonSuperseded = "Superseded"

	// ReasonBackendUnavailable: a TrafficSplit backend's Service does not exist or has no ready
	// endpoint; the message names each such backend, whose share goes to the backends that can serve.
	// It is also the reason of the event recorded when a backend stops being able to serve.
	ReasonBackendUnavailable = "BackendUnavailable"

	// ReasonBackendAvailable: the event recorded when a TrafficSplit backend that could not serve can again.
	ReasonBackendAvailable = "BackendAvailable"

	// ReasonNoBackendAvailable: no TrafficSplit backend with a weight can serve, so the apex Service's
	// own endpoints take all its traffic; the message names the backends and why.
	ReasonNoBackendAvailable = "NoBackendAvailable"

	// ReasonWeightsChanged: the event recorded when a TrafficSplit's weights in force change; the note
	// lists them, e.g. "web-stable 90, web-canary 10".
	ReasonWeightsChanged = "WeightsChanged"
)

// Finalizers.
const (
	// MeshConfigFinalizer lets the MeshConfig controller remove the cluster-scoped objects it
	// created (MeshStatus and, later, the trust chain) before the MeshConfig goes away.
	MeshConfigFinalizer = "mesh.skein.dev/meshconfig"

	// LinkFinalizer holds a Link until the Services and EndpointSlices that mirror its remote
	// cluster are gone.
	LinkFinalizer = "mesh.skein.dev/link"
)

// Well-known names, labels and annotations.
const (
	// MeshConfigName is the name of the one MeshConfig a cluster has.
	MeshConfigName = "default"

	// MeshStatusName is the name of the cluster-wide MeshStatus.
	MeshStatusName = "default"

	// ManagedByLabel marks objects the control plane creates and owns.
	ManagedByLabel = "app.kubernetes.io/managed-by"

	// ManagedByValue is the value of ManagedByLabel on Skein's objects.
	ManagedByValue = "skein"

	// ExportedLabel on a Service exports it to the clusters that link to this one.
	ExportedLabel = "mesh.skein.dev/exported"

	// TrustAnchorName names the trust anchor's cert-manager Certificate, its Secret and the CA Issuer
	// backed by it, in the control plane's namespace.
	TrustAnchorName = "skein-trust-anchor"

	// SelfSignedIssuerName names the ClusterIssuer that signs a trust anchor cert-manager makes.
	SelfSignedIssuerName = "skein-selfsigned"

	// IssuerName names the identity issuer's Certificate and Secret, in the control plane's namespace.
	IssuerName = "skein-identity-issuer"

	// TrustBundleName names the ConfigMap, in the control plane's namespace, holding every trust
	// anchor in force under TrustBundleKey.
	TrustBundleName = "skein-trust-bundle"

	// TrustBundleKey is the trust bundle ConfigMap's key: PEM certificates.
	TrustBundleKey = "ca-bundle.crt"

	// InjectAnnotation on a namespace or workload turns proxy injection on ("enabled") or off ("disabled").
	InjectAnnotation = "mesh.skein.dev/inject"

	// OpaquePortsAnnotation on a Service lists ports (comma-separated) carried as opaque TCP, in
	// addition to MeshConfig's spec.proxy.opaquePorts.
	OpaquePortsAnnotation = "mesh.skein.dev/opaque-ports"

	// ProxyContainerName is the name of the injected proxy container; a pod that has it is meshed.
	ProxyContainerName = "skein-proxy"
)

// ExternalWorkload conditions, reasons and settings.
const (
	// ConditionProxyConnected is True while an external workload's proxy holds a stream to the
	// control plane's xDS service.
	ConditionProxyConnected = "ProxyConnected"

	// ReasonConnected and ReasonDisconnected: the proxy is, or is not, connected.
	ReasonConnected    = "Connected"
	ReasonDisconnected = "Disconnected"
	// ReasonNeverConnected: no proxy has connected as this workload yet, so it serves no Service.
	ReasonNeverConnected = "NeverConnected"
	// ReasonGracePeriodExpired: the proxy stayed away longer than the grace period, so the workload's
	// endpoints were withdrawn.
	ReasonGracePeriodExpired = "GracePeriodExpired"

	// GracePeriodAnnotation on an ExternalWorkload is how long its endpoints stay after its proxy
	// disconnects (a duration such as "30s"), so that a restart does not drop them.
	GracePeriodAnnotation = "config.mesh.skein.dev/grace-period"
	// DefaultGracePeriod applies without the annotation.
	DefaultGracePeriod = "1m"
	// ExternalWorkloadLabel names, on the EndpointSlices and bootstrap Secrets made for an
	// ExternalWorkload, the workload they belong to.
	ExternalWorkloadLabel = "mesh.skein.dev/external-workload"
)

// Link reasons: of the Degraded condition (and Ready, False) when a Link cannot do all it should, and of
// the events recorded when that starts. The message says what and where.
const (
	// ReasonCredentialsInvalid: the credentials Secret is missing or unusable, or the remote API
	// server refuses it. Mirrors stay as last read; see the Link controller.
	ReasonCredentialsInvalid = "CredentialsInvalid"
	// ReasonClusterUnreachable: the remote API server does not answer. Mirrors stay as last read.
	ReasonClusterUnreachable = "ClusterUnreachable"
	// ReasonGatewayUnreachable: the remote gateway fails its probes; once failureThreshold have
	// failed in a row, the mirrored endpoints are not ready.
	ReasonGatewayUnreachable = "GatewayUnreachable"
	// ReasonGatewayIdentityMismatch: the remote gateway's certificate does not chain to the local
	// trust bundle or does not name spec.gatewayIdentity.
	ReasonGatewayIdentityMismatch = "GatewayIdentityMismatch"
	// ReasonNamespaceMissing: an exported Service's namespace does not exist here, so it is not mirrored.
	ReasonNamespaceMissing = "NamespaceMissing"
	// ReasonNameConflict: a local Service that is not this Link's mirror holds a mirror's name, or the
	// name is not valid; it is left alone and that Service is not mirrored.
	ReasonNameConflict = "NameConflict"
	// ReasonGatewayAlive: the event recorded when the remote gateway answers again.
	ReasonGatewayAlive = "GatewayAlive"
)

// Multicluster labels and names.
const (
	// MirroredFromLabel on a Service or EndpointSlice a Link mirrors names the Link's target
	// cluster; only objects with it are ever changed or deleted by the Link controller.
	MirroredFromLabel = "mesh.skein.dev/mirrored-from"
	// LinkLabel on a mirrored object names the Link that made it, as <namespace>.<name>. Mirrored
	// Services live in the remote Service's namespace, which need not be the Link's.
	LinkLabel = "mesh.skein.dev/link"
	// RemoteServiceAnnotation on a mirrored Service is the remote Service it mirrors, <name>.<namespace>.
	RemoteServiceAnnotation = "mesh.skein.dev/remote-service"
	// GatewayName names the multicluster gateway's Deployment, Service and ServiceAccount in the
	// control plane's namespace; its identity is that ServiceAccount's.
	GatewayName = "skein-gateway"
)
