package inject

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// GatewayPortName and GatewayProbePortName name the multicluster gateway's ports: mTLS from linked
// clusters, and the admin port they probe.
const (
	GatewayPortName      = "mc-gateway"
	GatewayProbePortName = "mc-probe"
)

// GatewayPodSpec is the multicluster gateway's pod: skein-proxy in gateway mode, running as the
// ServiceAccount meshv1.GatewayName, with what an injected proxy gets to obtain its identity and
// configuration (the identity and xDS addresses, the token for the identity audience, the trust
// anchors). It has no proxy-init: the gateway is addressed directly, nothing is redirected to it.
func (c Config) GatewayPodSpec() (corev1.PodSpec, error) {
	if c.ControlPlaneNamespace == "" {
		return corev1.PodSpec{}, errors.New("the control plane's namespace is not set")
	}
	if c.TrustAnchors == "" {
		return corev1.PodSpec{}, fmt.Errorf("the trust bundle (ConfigMap %s/%s, key %s) is empty: the mesh is not ready",
			c.ControlPlaneNamespace, meshv1.TrustBundleName, meshv1.TrustBundleKey)
	}
	m := withDefaults(c.Mesh)
	port := GatewayPort(m)
	proxy, err := c.proxyContainer(m, overrides{})
	if err != nil {
		return corev1.PodSpec{}, err
	}
	// A plain container, not a sidecar: nothing waits on it in its pod.
	proxy.RestartPolicy, proxy.StartupProbe, proxy.Lifecycle = nil, nil, nil
	proxy.Args = []string{"--mode=gateway", "--gateway-port", fmt.Sprint(port)}
	proxy.Env = append(proxy.Env,
		corev1.EnvVar{Name: "SKEIN_PROXY_MODE", Value: "gateway"},
		corev1.EnvVar{Name: "SKEIN_GATEWAY_PORT", Value: fmt.Sprint(port)})
	proxy.Ports = []corev1.ContainerPort{
		{Name: GatewayPortName, ContainerPort: port, Protocol: corev1.ProtocolTCP},
		{Name: "skein-admin", ContainerPort: m.Proxy.Ports.Admin, Protocol: corev1.ProtocolTCP},
	}
	return corev1.PodSpec{
		ServiceAccountName: meshv1.GatewayName,
		Containers:         []corev1.Container{proxy},
		Volumes:            []corev1.Volume{tokenVolume()},
	}, nil
}

// GatewayPort is the port the gateway accepts mTLS on.
func GatewayPort(m meshv1.MeshConfigSpec) int32 {
	if m.Multicluster.GatewayPort == 0 {
		return 4143
	}
	return m.Multicluster.GatewayPort
}

// GatewayAdminPort is the gateway's admin port, where /ready answers its probes.
func GatewayAdminPort(m meshv1.MeshConfigSpec) int32 { return withDefaults(m).Proxy.Ports.Admin }
