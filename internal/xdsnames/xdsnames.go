// Package xdsnames is the contract between the control plane's xDS server and its clients
// (skein-proxy, and grpc-go's xds resolver): how resources are named and what Skein puts in their
// metadata. Both sides import it; it imports neither.
//
// For each port of a Service, the control plane serves four resources under one name, the
// service's authority "<service>.<namespace>.svc.cluster.local:<port>":
//   - a Listener with an HTTP connection manager as api_listener (what grpc-go asks for), whose
//     address and additional addresses are the ClusterIPs, and whose metadata says whether the port
//     is opaque;
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
