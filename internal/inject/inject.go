package inject

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// Config is what injection needs to know of the mesh.
type Config struct {
	// Mesh is the MeshConfig's spec. Fields left empty take the API's defaults, so a spec read from
	// the API server and one built by hand give the same pods.
	Mesh meshv1.MeshConfigSpec
	// ControlPlaneNamespace is where the control plane runs: its Services are there, and pods there
	// are never injected, so that the control plane never waits on itself.
	ControlPlaneNamespace string
	// TrustAnchors is the trust bundle (PEM), the skein-trust-bundle ConfigMap's ca-bundle.crt.
	TrustAnchors string
}

// Namespace is what injection looks at of a pod's namespace.
type Namespace struct {
	Name        string
	Annotations map[string]string
}

// Decision says whether a pod is injected, and why.
type Decision struct {
	Inject bool
	// Reason is a phrase for logs and messages, e.g. "pod opted out".
	Reason string
}

// Values of meshv1.InjectAnnotation.
const (
	Enabled  = "enabled"
	Disabled = "disabled"
)

// Decide says whether a pod, described by its metadata and spec, is to be injected in namespace ns.
// Its own annotation wins over its namespace's; it never is in the control plane's namespace, with
// the host's network (its iptables rules would be the node's) or when it already has the proxy.
func Decide(meta *metav1.ObjectMeta, spec *corev1.PodSpec, ns Namespace, controlPlaneNamespace string) (Decision, error) {
	podValue, err := injectValue(meta.Annotations, "pod")
	if err != nil {
		return Decision{}, err
	}
	nsValue, err := injectValue(ns.Annotations, "namespace "+ns.Name)
	if err != nil {
		return Decision{}, err
	}
	pod := &corev1.Pod{ObjectMeta: *meta, Spec: *spec}
	switch {
	case ns.Name != "" && ns.Name == controlPlaneNamespace:
		return Decision{Reason: "the control plane's namespace is never injected"}, nil
	case spec.HostNetwork:
		return Decision{Reason: "a pod on the host's network is never injected"}, nil
	case meshv1.IsMeshed(pod):
		return Decision{Reason: "the pod already has " + meshv1.ProxyContainerName}, nil
	case podValue == Disabled:
		return Decision{Reason: "the pod opted out with " + meshv1.InjectAnnotation + ": " + Disabled}, nil
	case podValue == Enabled:
		return Decision{Inject: true, Reason: "the pod asks for it"}, nil
	case nsValue == Enabled:
		return Decision{Inject: true, Reason: "its namespace asks for it"}, nil
	default:
		return Decision{Reason: "neither the pod nor its namespace has " + meshv1.InjectAnnotation + ": " + Enabled}, nil
	}
}

func injectValue(annotations map[string]string, whose string) (string, error) {
	v, ok := annotations[meshv1.InjectAnnotation]
	if ok && v != Enabled && v != Disabled {
		return "", fmt.Errorf("annotation %s on the %s: %q: must be %q or %q", meshv1.InjectAnnotation, whose, v, Enabled, Disabled)
	}
	return v, nil
}

// Inject meshes a pod in namespace ns, described by its metadata and spec (a Pod's, or a workload's
// pod template), when Decide says so. It changes nothing when it returns an error, which names the
// annotation or the setting at fault.
func (c Config) Inject(meta *metav1.ObjectMeta, spec *corev1.PodSpec, ns Namespace) (Decision, error) {
	d, err := Decide(meta, spec, ns, c.ControlPlaneNamespace)
	if err != nil || !d.Inject {
		return d, err
	}
	if c.ControlPlaneNamespace == "" {
		return Decision{}, errors.New("the control plane's namespace is not set")
	}
	if c.TrustAnchors == "" {
		return Decision{}, fmt.Errorf("the trust bundle (ConfigMap %s/%s, key %s) is empty: the mesh is not ready",
			c.ControlPlaneNamespace, meshv1.TrustBundleName, meshv1.TrustBundleKey)
	}
	o, err := parseOverrides(mergeAnnotations(ns.Annotations, meta.Annotations))
	if err != nil {
		return Decision{}, err
	}
	m := withDefaults(c.Mesh)
	proxy, err := c.proxyContainer(m, o)
	if err != nil {
		return Decision{}, err
	}

	var inits []corev1.Container
	if m.Injection.Redirect == meshv1.RedirectInitContainer {
		inits = append(inits, initContainer(m, o))
	}
	if m.Injection.SidecarMode == meshv1.SidecarClassic {
		spec.Containers = append([]corev1.Container{proxy}, spec.Containers...)
	} else {
		inits = append(inits, proxy)
	}
	// First, so that the application's own init containers are meshed too.
	spec.InitContainers = append(inits, spec.InitContainers...)
	spec.Volumes = append(spec.Volumes, tokenVolume())
	addMetricsAnnotations(meta, m.Proxy.Ports.Admin)
	return d, nil
}

// Prometheus's conventional scrape annotations, which the proxy's admin port answers.
const (
	ScrapeAnnotation = "prometheus.io/scrape"
	PortAnnotation   = "prometheus.io/port"
	PathAnnotation   = "prometheus.io/path"
)

// addMetricsAnnotations points Prometheus at the proxy's metrics, unless the pod already names a
// scrape target of its own: a pod has one set of these annotations, and the user's comes first.
func addMetricsAnnotations(meta *metav1.ObjectMeta, adminPort int32) {
	if _, ok := meta.Annotations[ScrapeAnnotation]; ok {
		return
	}
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[ScrapeAnnotation] = "true"
	meta.Annotations[PortAnnotation] = fmt.Sprint(adminPort)
	meta.Annotations[PathAnnotation] = "/metrics"
}

// withDefaults fills what the API server would have defaulted.
func withDefaults(m meshv1.MeshConfigSpec) meshv1.MeshConfigSpec {
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	setPort := func(v *int32, def int32) {
		if *v == 0 {
			*v = def
		}
	}
	set(&m.TrustDomain, "cluster.local")
	set(&m.Proxy.Image, "ghcr.io/skeinmesh/skein-proxy:v0.1.0")
	set(&m.Proxy.InitImage, "ghcr.io/skeinmesh/skein-proxy-init:v0.1.0")
	set((*string)(&m.Proxy.LogLevel), "info")
	set((*string)(&m.Injection.SidecarMode), string(meshv1.SidecarNative))
	set((*string)(&m.Injection.Redirect), string(meshv1.RedirectInitContainer))
	setPort(&m.Proxy.Ports.Inbound, 4143)
	setPort(&m.Proxy.Ports.Outbound, 4140)
	setPort(&m.Proxy.Ports.Control, 4190)
	setPort(&m.Proxy.Ports.Admin, 4191)
	setPort(&m.Telemetry.MaxAuthorities, 100)
	return m
}
