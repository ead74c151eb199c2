package inject

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

const anchors = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func testConfig() Config {
	return Config{ControlPlaneNamespace: "skein-system", TrustAnchors: anchors}
}

func appPod(annotations map[string]string) (*metav1.ObjectMeta, *corev1.PodSpec) {
	return &metav1.ObjectMeta{Name: "web", Annotations: annotations},
		&corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "migrate"}},
			Containers:     []corev1.Container{{Name: "app", Image: "app"}},
		}
}

var enabled = map[string]string{meshv1.InjectAnnotation: Enabled}

func TestDecide(t *testing.T) {
	meshed := &corev1.PodSpec{Containers: []corev1.Container{{Name: meshv1.ProxyContainerName}}}
	tests := []struct {
		name    string
		pod     map[string]string
		spec    *corev1.PodSpec
		ns      Namespace
		inject  bool
		reason  string
		wantErr string
	}{
		{name: "namespace enabled", ns: Namespace{Name: "app", Annotations: enabled}, inject: true, reason: "namespace asks"},
		{name: "pod enabled", pod: enabled, ns: Namespace{Name: "app"}, inject: true, reason: "pod asks"},
		{name: "nobody asks", ns: Namespace{Name: "app"}, reason: "neither"},
		{name: "pod opts out", pod: map[string]string{meshv1.InjectAnnotation: Disabled}, ns: Namespace{Name: "app", Annotations: enabled}, reason: "opted out"},
		{name: "control plane namespace", pod: enabled, ns: Namespace{Name: "skein-system", Annotations: enabled}, reason: "control plane"},
		{name: "host network", pod: enabled, spec: &corev1.PodSpec{HostNetwork: true}, ns: Namespace{Name: "app"}, reason: "host's network"},
		{name: "already meshed", pod: enabled, spec: meshed, ns: Namespace{Name: "app"}, reason: "already has"},
		{name: "bad pod value", pod: map[string]string{meshv1.InjectAnnotation: "yes"}, ns: Namespace{Name: "app"}, wantErr: `annotation mesh.skein.dev/inject on the pod: "yes"`},
		{name: "bad namespace value", ns: Namespace{Name: "app", Annotations: map[string]string{meshv1.InjectAnnotation: "on"}}, wantErr: "on the namespace app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			spec := tt.spec
			if spec == nil {
				spec = &corev1.PodSpec{}
			}
			d, err := Decide(&metav1.ObjectMeta{Annotations: tt.pod}, spec, tt.ns, "skein-system")
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Inject).To(Equal(tt.inject))
			g.Expect(d.Reason).To(ContainSubstring(tt.reason))
		})
	}
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
		if e.ValueFrom != nil {
			m[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	return m
}

func TestInjectNative(t *testing.T) {
	g := NewWithT(t)
	meta, spec := appPod(nil)
	d, err := testConfig().Inject(meta, spec, Namespace{Name: "app", Annotations: enabled})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Inject).To(BeTrue())

	// proxy-init, then the proxy as a native sidecar, then the application's own init containers.
	g.Expect(names(spec.InitContainers)).To(Equal([]string{InitContainerName, meshv1.ProxyContainerName, "migrate"}))
	g.Expect(names(spec.Containers)).To(Equal([]string{"app"}))
	g.Expect(meshv1.IsMeshed(&corev1.Pod{Spec: *spec})).To(BeTrue())

	init, proxy := spec.InitContainers[0], spec.InitContainers[1]
	g.Expect(init.Image).To(Equal("ghcr.io/skeinmesh/skein-proxy-init:v0.1.0"))
	g.Expect(init.Args).To(Equal([]string{"--proxy-uid", "2102", "--inbound-port", "4143", "--outbound-port", "4140", "--skip-inbound-ports", "4190-4191"}))
	g.Expect(init.SecurityContext.Capabilities.Add).To(ConsistOf(corev1.Capability("NET_ADMIN"), corev1.Capability("NET_RAW")))

	g.Expect(proxy.Image).To(Equal("ghcr.io/skeinmesh/skein-proxy:v0.1.0"))
	g.Expect(*proxy.RestartPolicy).To(Equal(corev1.ContainerRestartPolicyAlways))
	g.Expect(proxy.StartupProbe.HTTPGet.Path).To(Equal("/ready"))
	g.Expect(proxy.Lifecycle).To(BeNil())
	g.Expect(*proxy.SecurityContext.RunAsUser).To(Equal(int64(2102)))
	g.Expect(env(proxy)).To(Equal(map[string]string{
		"POD_NAME":                   "field:metadata.name",
		"POD_NAMESPACE":              "field:metadata.namespace",
		"SKEIN_SERVICE_ACCOUNT":      "field:spec.serviceAccountName",
		"SKEIN_IDENTITY":             "spiffe://cluster.local/ns/$(POD_NAMESPACE)/sa/$(SKEIN_SERVICE_ACCOUNT)",
		"SKEIN_IDENTITY_ADDR":        "skein-identity.skein-system.svc:8086",
		"SKEIN_IDENTITY_SERVER_NAME": "skein-identity.skein-system.svc",
		"SKEIN_XDS_ADDR":             "skein-xds.skein-system.svc:8087",
		"SKEIN_XDS_SERVER_NAME":      "skein-xds.skein-system.svc",
		"SKEIN_TOKEN_PATH":           "/var/run/secrets/mesh.skein.dev/serviceaccount/token",
		"SKEIN_TRUST_ANCHORS":        anchors,
		"SKEIN_LOG_LEVEL":            "info",
		"SKEIN_INBOUND_PORT":         "4143",
		"SKEIN_OUTBOUND_PORT":        "4140",
		"SKEIN_ADMIN_PORT":           "4191",
		"SKEIN_MAX_AUTHORITIES":      "100",
	}))
	g.Expect(proxy.VolumeMounts).To(Equal([]corev1.VolumeMount{{Name: TokenVolumeName, MountPath: TokenDir, ReadOnly: true}}))

	g.Expect(spec.Volumes).To(HaveLen(1))
	token := spec.Volumes[0].Projected.Sources[0].ServiceAccountToken
	g.Expect(token.Audience).To(Equal("identity.mesh.skein.dev"))
	g.Expect(token.Path).To(Equal("token"))

	g.Expect(meta.Annotations).To(Equal(map[string]string{
		"prometheus.io/scrape": "true", "prometheus.io/port": "4191", "prometheus.io/path": "/metrics",
	}))
}

func TestInjectClassicWithCNI(t *testing.T) {
	g := NewWithT(t)
	c := testConfig()
	c.Mesh.Injection = meshv1.InjectionSpec{SidecarMode: meshv1.SidecarClassic, Redirect: meshv1.RedirectCNI}
	meta, spec := appPod(enabled)
	_, err := c.Inject(meta, spec, Namespace{Name: "app"})
	g.Expect(err).NotTo(HaveOccurred())
	// No proxy-init with a CNI; the proxy is the first container, and holds the others in postStart.
	g.Expect(names(spec.InitContainers)).To(Equal([]string{"migrate"}))
	g.Expect(names(spec.Containers)).To(Equal([]string{meshv1.ProxyContainerName, "app"}))
	proxy := spec.Containers[0]
	g.Expect(proxy.RestartPolicy).To(BeNil())
	g.Expect(proxy.StartupProbe).To(BeNil())
	g.Expect(proxy.Lifecycle.PostStart.Exec.Command).To(Equal([]string{"/skein-proxy", "await"}))
}

func TestInjectIsIdempotent(t *testing.T) {
	g := NewWithT(t)
	meta, spec := appPod(enabled)
	_, err := testConfig().Inject(meta, spec, Namespace{Name: "app"})
	g.Expect(err).NotTo(HaveOccurred())
	meta2, spec2 := meta.DeepCopy(), spec.DeepCopy()
	d, err := testConfig().Inject(meta2, spec2, Namespace{Name: "app"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Inject).To(BeFalse())
	g.Expect(equality.Semantic.DeepEqual(spec, spec2)).To(BeTrue())
	g.Expect(meta2.Annotations).To(Equal(meta.Annotations))
}

func TestOverrides(t *testing.T) {
	g := NewWithT(t)
	c := testConfig()
	c.Mesh.Proxy.OpaquePorts = []int32{3306}
	c.Mesh.Proxy.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("20Mi")},
	}
	c.Mesh.Injection.SkipOutboundPorts = []int32{5432}
	ns := Namespace{Name: "app", Annotations: map[string]string{
		meshv1.InjectAnnotation:     Enabled,
		ProxyLogLevelAnnotation:     "debug",
		SkipInboundPortsAnnotation:  "9000",
		ProxyMemoryLimitAnnotation:  "128Mi",
		SkipOutboundPortsAnnotation: "25",
	}}
	meta, spec := appPod(map[string]string{
		ProxyCPURequestAnnotation:   "250m",
		ProxyCPULimitAnnotation:     "1",
		ProxyLogLevelAnnotation:     "trace", // the pod's wins over its namespace's
		SkipOutboundPortsAnnotation: "6379,7000-7002",
		OpaquePortsAnnotation:       "25",
		ScrapeAnnotation:            "false", // the user's own scrape settings stay
	})
	_, err := c.Inject(meta, spec, ns)
	g.Expect(err).NotTo(HaveOccurred())
	init, proxy := spec.InitContainers[0], spec.InitContainers[1]
	g.Expect(init.Args).To(ContainElements("--skip-inbound-ports", "4190-4191,9000", "--skip-outbound-ports", "5432,6379,7000-7002"))
	g.Expect(env(proxy)).To(HaveKeyWithValue("SKEIN_LOG_LEVEL", "trace"))
	g.Expect(env(proxy)).To(HaveKeyWithValue("SKEIN_OPAQUE_PORTS", "25,3306"))
	g.Expect(proxy.Resources.Requests.Cpu().String()).To(Equal("250m"))
	g.Expect(proxy.Resources.Requests.Memory().String()).To(Equal("20Mi"))
	g.Expect(proxy.Resources.Limits.Cpu().String()).To(Equal("1"))
	g.Expect(proxy.Resources.Limits.Memory().String()).To(Equal("128Mi"))
	g.Expect(meta.Annotations).NotTo(HaveKey(PortAnnotation))
	// MeshConfig's own resources are not changed through the copy.
	g.Expect(c.Mesh.Proxy.Resources.Limits).To(BeNil())
}

func TestBadOverridesAreRefused(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		wantErr     string
	}{
		{"cpu", map[string]string{ProxyCPURequestAnnotation: "lots"}, `annotation config.mesh.skein.dev/proxy-cpu-request: "lots"`},
		{"zero memory", map[string]string{ProxyMemoryLimitAnnotation: "0"}, "proxy-memory-limit: \"0\": must be a positive quantity"},
		{"log level", map[string]string{ProxyLogLevelAnnotation: "loud"}, "proxy-log-level: \"loud\": must be one of error, warn, info, debug, trace"},
		{"ports", map[string]string{SkipInboundPortsAnnotation: "80,,81"}, "skip-inbound-ports"},
		{"port range", map[string]string{SkipOutboundPortsAnnotation: "70000"}, "skip-outbound-ports"},
		{"opaque", map[string]string{OpaquePortsAnnotation: "mysql"}, "opaque-ports"},
		{"unknown", map[string]string{ConfigPrefix + "proxy-cpu-requst": "1"}, "config.mesh.skein.dev/proxy-cpu-requst: \"1\": not a Skein setting"},
		{"request over limit", map[string]string{ProxyCPURequestAnnotation: "2", ProxyCPULimitAnnotation: "1"}, "cpu request 2 exceeds its limit 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			tt.annotations[meshv1.InjectAnnotation] = Enabled
			meta, spec := appPod(tt.annotations)
			before := spec.DeepCopy()
			_, err := testConfig().Inject(meta, spec, Namespace{Name: "app"})
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			g.Expect(spec).To(Equal(before), "a refused pod is left as it was")
		})
	}
}

func TestInjectNeedsTheTrustBundle(t *testing.T) {
	g := NewWithT(t)
	c := testConfig()
	c.TrustAnchors = ""
	meta, spec := appPod(enabled)
	_, err := c.Inject(meta, spec, Namespace{Name: "app"})
	g.Expect(err).To(MatchError(ContainSubstring("skein-system/skein-trust-bundle")))
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
