package inject

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/identity"
	"github.com/skeinmesh/skein/proxy/iptables"
)

const (
	// InitContainerName is the name of the proxy-init container.
	InitContainerName = "skein-init"
	// TokenVolumeName is the volume of the proxy's ServiceAccount token for the identity audience.
	TokenVolumeName = "skein-identity-token"
	// TokenDir is where that token is mounted; the proxy reads TokenDir/token.
	TokenDir = "/var/run/secrets/mesh.skein.dev/serviceaccount"
	// ProxyUID is the user the proxy runs as, whose traffic proxy-init leaves alone.
	ProxyUID = iptables.DefaultProxyUID
	// ProxyCommand is the proxy binary in its image; the classic sidecar's postStart hook runs
	// `ProxyCommand await` to hold the application until the proxy is ready.
	ProxyCommand = "/skein-proxy"
	// IdentityService and XDSService are the control plane's Services, in its namespace, with their ports.
	IdentityService = "skein-identity"
	IdentityPort    = 8086
	XDSService      = "skein-xds"
	XDSPort         = 8087
	// tokenLifetime is what the proxy's token is requested for; the kubelet renews it at 80%.
	tokenLifetime = 24 * 3600
)

// ServiceHost is the DNS name of a control-plane Service in its namespace, which the control plane's
// certificate carries and proxies check.
func ServiceHost(service, controlPlaneNamespace string) string {
	return service + "." + controlPlaneNamespace + ".svc"
}

// proxyContainer is skein-proxy, configured through its environment.
func (c Config) proxyContainer(m meshv1.MeshConfigSpec, o overrides) (corev1.Container, error) {
	resources, err := proxyResources(m.Proxy.Resources, o)
	if err != nil {
		return corev1.Container{}, err
	}
	logLevel := m.Proxy.LogLevel
	if o.logLevel != "" {
		logLevel = o.logLevel
	}
	ports := m.Proxy.Ports
	identityHost := ServiceHost(IdentityService, c.ControlPlaneNamespace)
	xdsHost := ServiceHost(XDSService, c.ControlPlaneNamespace)
	env := []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("SKEIN_SERVICE_ACCOUNT", "spec.serviceAccountName"),
		// From the pod's own fields rather than written out here, so that one template serves in any
		// namespace (skein inject does not always know it) and whatever account the pod ends up with.
		{Name: "SKEIN_IDENTITY", Value: "spiffe://" + m.TrustDomain + "/ns/$(POD_NAMESPACE)/sa/$(SKEIN_SERVICE_ACCOUNT)"},
		{Name: "SKEIN_IDENTITY_ADDR", Value: identityHost + ":" + strconv.Itoa(IdentityPort)},
		{Name: "SKEIN_IDENTITY_SERVER_NAME", Value: identityHost},
		{Name: "SKEIN_XDS_ADDR", Value: xdsHost + ":" + strconv.Itoa(XDSPort)},
		{Name: "SKEIN_XDS_SERVER_NAME", Value: xdsHost},
		{Name: "SKEIN_TOKEN_PATH", Value: TokenDir + "/token"},
		// The trust bundle travels in the environment, as Linkerd passes its trust anchor: a pod
		// cannot mount a ConfigMap of the control plane's namespace, and copying it into every meshed
		// namespace would need a controller writing ConfigMaps everywhere, and a pod would wait on the
		// copy. The cost: a pod keeps the anchors it started with, so a pod must be restarted within
		// the workload certificate lifetime that an old anchor stays in the bundle after a rotation.
		{Name: "SKEIN_TRUST_ANCHORS", Value: c.TrustAnchors},
		{Name: "SKEIN_LOG_LEVEL", Value: string(logLevel)},
		{Name: "SKEIN_INBOUND_PORT", Value: fmt.Sprint(ports.Inbound)},
		{Name: "SKEIN_OUTBOUND_PORT", Value: fmt.Sprint(ports.Outbound)},
		{Name: "SKEIN_ADMIN_PORT", Value: fmt.Sprint(ports.Admin)},
		{Name: "SKEIN_MAX_AUTHORITIES", Value: fmt.Sprint(m.Telemetry.MaxAuthorities)},
	}
	if opaque := union(m.Proxy.OpaquePorts, o.opaque); len(opaque) > 0 {
		env = append(env, corev1.EnvVar{Name: "SKEIN_OPAQUE_PORTS", Value: iptables.FormatPorts(opaque)})
	}
	admin := intstr.FromInt32(ports.Admin)
	proxy := corev1.Container{
		Name:  meshv1.ProxyContainerName,
		Image: m.Proxy.Image,
		Env:   env,
		Ports: []corev1.ContainerPort{
			{Name: "skein-inbound", ContainerPort: ports.Inbound, Protocol: corev1.ProtocolTCP},
			{Name: "skein-admin", ContainerPort: ports.Admin, Protocol: corev1.ProtocolTCP},
		},
		Resources:    resources,
		VolumeMounts: []corev1.VolumeMount{{Name: TokenVolumeName, MountPath: TokenDir, ReadOnly: true}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: admin}},
			PeriodSeconds: 5},
		LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: admin}},
			PeriodSeconds: 10},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](ProxyUID),
			RunAsGroup:               ptr.To[int64](ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if m.Injection.SidecarMode == meshv1.SidecarClassic {
		// The kubelet starts a pod's containers in order and runs each one's postStart hook before
		// starting the next: the hook returns once the proxy is ready, so the application never
		// starts without it.
		proxy.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{ProxyCommand, "await"}}}}
	} else {
		// A native sidecar counts as started once its startup probe passes, and only then does the
		// kubelet start the containers after it.
		proxy.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		proxy.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: admin}},
			PeriodSeconds: 1, FailureThreshold: 120}
	}
	return proxy, nil
}

// initContainer is proxy-init, which installs the pod's iptables redirect and exits.
func initContainer(m meshv1.MeshConfigSpec, o overrides) corev1.Container {
	ports := m.Proxy.Ports
	args := []string{"--proxy-uid", strconv.Itoa(ProxyUID),
		"--inbound-port", fmt.Sprint(ports.Inbound), "--outbound-port", fmt.Sprint(ports.Outbound)}
	// The proxy's own admin and control ports must reach it directly, whatever MeshConfig sets them to.
	skipIn := union(m.Injection.SkipInboundPorts, o.skipInbound, []int{int(ports.Admin), int(ports.Control)})
	args = append(args, "--skip-inbound-ports", iptables.FormatPorts(skipIn))
	if skipOut := union(m.Injection.SkipOutboundPorts, o.skipOutbound); len(skipOut) > 0 {
		args = append(args, "--skip-outbound-ports", iptables.FormatPorts(skipOut))
	}
	return corev1.Container{
		Name:  InitContainerName,
		Image: m.Proxy.InitImage,
		Args:  args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			// iptables needs root with NET_ADMIN and NET_RAW in the pod's network namespace, and nothing else.
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// tokenVolume projects a ServiceAccount token for the identity service's audience only: the
// pod's usual API token is not sent to Skein, and this one is good for nothing else.
func tokenVolume() corev1.Volume {
	return corev1.Volume{Name: TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: identity.Audience, ExpirationSeconds: ptr.To[int64](tokenLifetime), Path: "token",
		}}},
	}}}
}

// proxyResources lays the override annotations over MeshConfig's resources and checks that no
// request exceeds its limit, naming the annotations at fault.
func proxyResources(base corev1.ResourceRequirements, o overrides) (corev1.ResourceRequirements, error) {
	r := *base.DeepCopy()
	for _, s := range []struct {
		request, limit string
		name           corev1.ResourceName
	}{
		{ProxyCPURequestAnnotation, ProxyCPULimitAnnotation, corev1.ResourceCPU},
		{ProxyMemoryRequestAnnotation, ProxyMemoryLimitAnnotation, corev1.ResourceMemory},
	} {
		if q, ok := o.resources[s.request]; ok {
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[s.name] = q
		}
		if q, ok := o.resources[s.limit]; ok {
			if r.Limits == nil {
				r.Limits = corev1.ResourceList{}
			}
			r.Limits[s.name] = q
		}
		req, hasReq := r.Requests[s.name]
		lim, hasLim := r.Limits[s.name]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			return r, fmt.Errorf("the proxy's %s request %s exceeds its limit %s (annotations %s and %s, over MeshConfig's spec.proxy.resources)",
				s.name, req.String(), lim.String(), s.request, s.limit)
		}
	}
	return r, nil
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// union is the sorted set of ports in the lists.
func union(mesh []int32, more ...[]int) []int {
	var ports []int
	for _, p := range mesh {
		ports = append(ports, int(p))
	}
	for _, l := range more {
		ports = append(ports, l...)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}
