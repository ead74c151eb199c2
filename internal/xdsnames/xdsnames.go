// Package xdsnames is the contract between the control plane's xDS server and its clients
// (skein-proxy, and grpc-go's xds resolver): how resources are named and what Skein puts in their
// metadata. Both sides import it; it imports neither.
//
// For each port of a Service, the control plane serves four resources under one name, the
// service's authority "<service>.<namespace>.svc.cluster.local:<port>":
//   - a Listener with an HTTP connection manager as api_listener (what grpc-go asks for), whose
//     address and additional addresses are the ClusterIPs, and whose metadata says whether the port
//     is opaque and whether the Service is exported to linked clusters;
//   - a RouteConfiguration with one virtual host for the authority and its shorter forms, routing
//     to the service's cluster or, under a TrafficSplit, to weighted clusters;
//   - a Cluster of type EDS over ADS;
//   - a ClusterLoadAssignment whose endpoints carry their workload identity in metadata.
package xdsnames

import (
	"fmt"
	"strconv"
	"strings"
)

// ClusterDomain is the DNS suffix of Services.
const ClusterDomain = "cluster.local"

// MetadataKey is the filter_metadata key under which Skein's fields sit.
const MetadataKey = "mesh.skein.dev"

// Fields of Skein's metadata.
const (
	// FieldIdentity on an LbEndpoint is the SPIFFE ID its proxy presents; absent for an endpoint
	// without a proxy, which is reached in plain text.
	FieldIdentity = "identity"
	// FieldOpaque on a Listener is true when the port carries opaque TCP, without protocol detection.
	FieldOpaque = "opaque"
	// FieldGatewayTarget on an LbEndpoint says the endpoint is a linked cluster's multicluster
	// gateway, and names the service port the gateway is to forward to: its Authority in the
	// remote cluster. The endpoint's identity is then the gateway's.
	FieldGatewayTarget = "gatewayTarget"
	// FieldExported on a Listener is true when the Service is exported to linked clusters (labelled
	// mesh.skein.dev/exported=true, and not itself mirrored from another cluster): only then does this
	// cluster's multicluster gateway forward to it.
	FieldExported = "exported"
)

// Authority is the name of a service port's resources, and the host:port its clients use.
func Authority(service, namespace string, port int32) string {
	return service + "." + namespace + ".svc." + ClusterDomain + ":" + strconv.Itoa(int(port))
}

// Aliases are the other names a client in any namespace may give the same service port.
func Aliases(service, namespace string, port int32) []string {
	p := ":" + strconv.Itoa(int(port))
	names := []string{service + "." + namespace + ".svc" + p, service + "." + namespace + p}
	if port == 80 {
		names = append(names, service+"."+namespace+".svc."+ClusterDomain, service+"."+namespace+".svc", service+"."+namespace)
	}
	return names
}

// NodeID is how a proxy names itself to the control plane: its pod (or ExternalWorkload) and namespace.
func NodeID(name, namespace string) string { return name + "." + namespace }

// ParseNodeID reads a node ID made by NodeID.
func ParseNodeID(id string) (name, namespace string, err error) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", "", fmt.Errorf("node ID %q is not <pod>.<namespace>", id)
	}
	return id[:i], id[i+1:], nil
}

// ServicePort is a service port named by its Authority.
type ServicePort struct {
	Service, Namespace string
	Port               int32
}

// ParseAuthority reads an Authority back, strictly: "<service>.<namespace>.svc.cluster.local:<port>"
// with DNS labels and a port in 1-65535. A gateway checks the target a peer names with it.
func ParseAuthority(a string) (ServicePort, error) {
	host, port, ok := strings.Cut(a, ":")
	if !ok {
		return ServicePort{}, fmt.Errorf("authority %q has no :port", a)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || port[0] == '0' || port[0] == '+' {
		return ServicePort{}, fmt.Errorf("authority %q: port %q is not a number in 1-65535", a, port)
	}
	suffix := ".svc." + ClusterDomain
	if !strings.HasSuffix(host, suffix) {
		return ServicePort{}, fmt.Errorf("authority %q does not end in %s:<port>", a, suffix)
	}
	service, namespace, ok := strings.Cut(strings.TrimSuffix(host, suffix), ".")
	if !ok {
		return ServicePort{}, fmt.Errorf("authority %q names no namespace: <service>.<namespace>%s:<port>", a, suffix)
	}
	for what, label := range map[string]string{"service": service, "namespace": namespace} {
		if !isLabel(label) {
			return ServicePort{}, fmt.Errorf("authority %q: %s %q is not a DNS label (a-z, 0-9 and '-', at most 63)", a, what, label)
		}
	}
	return ServicePort{Service: service, Namespace: namespace, Port: int32(p)}, nil
}

// isLabel tells whether s is an RFC 1123 DNS label, as Service and namespace names are.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
