package inject

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/proxy/iptables"
)

// ConfigPrefix starts the annotations with which a namespace or a pod overrides MeshConfig's proxy
// settings; a pod's override wins over its namespace's.
const ConfigPrefix = "config.mesh.skein.dev/"

// Override annotations, each ConfigPrefix followed by the name.
const (
	ProxyCPURequestAnnotation    = ConfigPrefix + "proxy-cpu-request"
	ProxyCPULimitAnnotation      = ConfigPrefix + "proxy-cpu-limit"
	ProxyMemoryRequestAnnotation = ConfigPrefix + "proxy-memory-request"
	ProxyMemoryLimitAnnotation   = ConfigPrefix + "proxy-memory-limit"
	ProxyLogLevelAnnotation      = ConfigPrefix + "proxy-log-level"
	SkipInboundPortsAnnotation   = ConfigPrefix + "skip-inbound-ports"
	SkipOutboundPortsAnnotation  = ConfigPrefix + "skip-outbound-ports"
	OpaquePortsAnnotation        = ConfigPrefix + "opaque-ports"
)

// knownOverrides are the annotations under ConfigPrefix that mean something. Any other is refused:
// a misspelt override silently ignored would leave a user wondering why it does not apply.
var knownOverrides = []string{
	ProxyCPURequestAnnotation, ProxyCPULimitAnnotation, ProxyMemoryRequestAnnotation, ProxyMemoryLimitAnnotation,
	ProxyLogLevelAnnotation, SkipInboundPortsAnnotation, SkipOutboundPortsAnnotation, OpaquePortsAnnotation,
}

var logLevels = []string{"error", "warn", "info", "debug", "trace"}

// overrides are the settings a pod's and its namespace's annotations give, already checked.
type overrides struct {
	resources map[string]resource.Quantity // by annotation
	logLevel  meshv1.ProxyLogLevel
	// The port lists add to MeshConfig's.
	skipInbound, skipOutbound, opaque []int
}

// mergeAnnotations lays the pod's annotations over its namespace's, keeping only ConfigPrefix ones.
func mergeAnnotations(namespace, pod map[string]string) map[string]string {
	merged := map[string]string{}
	for _, a := range []map[string]string{namespace, pod} {
		for k, v := range a {
			if strings.HasPrefix(k, ConfigPrefix) {
				merged[k] = v
			}
		}
	}
	return merged
}

// parseOverrides checks every override annotation and returns what they say; an error names the
// first bad annotation (in name order, so the message is stable).
func parseOverrides(annotations map[string]string) (overrides, error) {
	o := overrides{resources: map[string]resource.Quantity{}}
	names := make([]string, 0, len(annotations))
	for k := range annotations {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		value := strings.TrimSpace(annotations[name])
		var err error
		switch name {
		case ProxyCPURequestAnnotation, ProxyCPULimitAnnotation, ProxyMemoryRequestAnnotation, ProxyMemoryLimitAnnotation:
			var q resource.Quantity
			if q, err = resource.ParseQuantity(value); err == nil && q.Sign() <= 0 {
				err = fmt.Errorf("must be a positive quantity")
			}
			o.resources[name] = q
		case ProxyLogLevelAnnotation:
			if !slices.Contains(logLevels, value) {
				err = fmt.Errorf("must be one of %s", strings.Join(logLevels, ", "))
			}
			o.logLevel = meshv1.ProxyLogLevel(value)
		case SkipInboundPortsAnnotation:
			o.skipInbound, err = iptables.ParsePorts(value)
		case SkipOutboundPortsAnnotation:
			o.skipOutbound, err = iptables.ParsePorts(value)
		case OpaquePortsAnnotation:
			o.opaque, err = iptables.ParsePorts(value)
		default:
			err = fmt.Errorf("not a Skein setting; the known ones are %s", strings.Join(knownOverrides, ", "))
		}
		if err != nil {
			return overrides{}, fmt.Errorf("annotation %s: %q: %w", name, annotations[name], err)
		}
	}
	return o, nil
}
