package xds

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/xdsnames"
)

// Resources are one Service's xDS resources, by type URL and then by name.
type Resources map[string]map[string]types.Resource

// ServiceInput is what the compiler reads about one Service.
type ServiceInput struct {
	Service *corev1.Service
	// Slices are the Service's EndpointSlices.
	Slices []discoveryv1.EndpointSlice
	// Split is the TrafficSplit whose apex is this Service, if any.
	Split *meshv1.TrafficSplit
	// Serving tells whether a Service of the namespace exists and has a ready endpoint: a split's
	// backend that does not gets no share, which goes to those that do.
	Serving func(service string) bool
	// Identity is the SPIFFE ID of the workload an endpoint points at, or "" when it has no proxy;
	// for a linked cluster's gateway (an endpoint whose TargetRef is a Link), the gateway's.
	Identity func(discoveryv1.Endpoint) string
	// Opaque tells whether a port carries opaque TCP.
	Opaque func(port int32) bool
}

// connectTimeout is what clusters tell clients to allow for a connection.
const connectTimeout = 5 * time.Second

// Compile turns one Service into its resources: for each TCP port, a Listener, a RouteConfiguration,
// a Cluster and a ClusterLoadAssignment, all named by the port's authority (see xdsnames).
func Compile(in ServiceInput) Resources {
	out := Resources{}
	svc := in.Service
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return out
	}
	for _, port := range svc.Spec.Ports {
		if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
			continue
		}
		name := xdsnames.Authority(svc.Name, svc.Namespace, port.Port)
		add(out, name, listener(name, svc, port, in.Opaque(port.Port)))
		add(out, name, routeConfig(name, svc, port, in.Split, in.Serving))
		add(out, name, cluster(name))
		add(out, name, loadAssignment(name, port, in.Slices, in.Identity, gatewayTarget(svc, port)))
	}
	return out
}

// gatewayTarget is, for a Service a Link mirrors, the remote service port its gateway endpoints
// forward to: the Authority of the Service named by its RemoteServiceAnnotation, at the same port.
// An endpoint that is no gateway has none; a gateway endpoint of a Service without a valid
// annotation gets "", and is left out, since the gateway would have nowhere to forward it.
func gatewayTarget(svc *corev1.Service, port corev1.ServicePort) func(discoveryv1.Endpoint) (target string, ok bool) {
	name, namespace, valid := strings.Cut(svc.Annotations[meshv1.RemoteServiceAnnotation], ".")
	valid = valid && name != "" && namespace != "" && !strings.Contains(namespace, ".")
	return func(ep discoveryv1.Endpoint) (string, bool) {
		if ep.TargetRef == nil || ep.TargetRef.Kind != "Link" {
			return "", true
		}
		if !valid {
			return "", false
		}
		return xdsnames.Authority(name, namespace, port.Port), true
	}
}

func add(r Resources, name string, res types.Resource) {
	typ := resource.ListenerType
	switch res.(type) {
	case *routev3.RouteConfiguration:
		typ = resource.RouteType
	case *clusterv3.Cluster:
		typ = resource.ClusterType
	case *endpointv3.ClusterLoadAssignment:
		typ = resource.EndpointType
	}
	if r[typ] == nil {
		r[typ] = map[string]types.Resource{}
	}
	r[typ][name] = res
}

// listener is an API listener, the form grpc-go's resolver asks for, whose addresses are the
// ClusterIPs that skein-proxy matches redirected connections against.
func listener(name string, svc *corev1.Service, port corev1.ServicePort, opaque bool) *listenerv3.Listener {
	manager := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: name,
			ConfigSource:    adsSource(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	l := &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(manager)},
		Metadata: metadata(map[string]any{
			xdsnames.FieldOpaque:   opaque,
			xdsnames.FieldExported: exported(svc),
		}),
	}
	for i, ip := range clusterIPs(svc) {
		addr := socketAddress(ip, uint32(port.Port))
		if i == 0 {
			l.Address = addr
		} else {
			l.AdditionalAddresses = append(l.AdditionalAddresses, &listenerv3.AdditionalAddress{Address: addr})
		}
	}
	return l
}

// exported tells whether linked clusters may reach the Service through the gateway: never a
// mirrored one, which would chain gateways across clusters.
func exported(svc *corev1.Service) bool {
	_, mirrored := svc.Labels[meshv1.MirroredFromLabel]
	return svc.Labels[meshv1.ExportedLabel] == "true" && !mirrored
}

// routeConfig routes every request for the service to its cluster or, under a TrafficSplit, sends
// those its matches select to their backends and shares the others among the backends that can
// serve. When none can, the service's own endpoints serve, rather than nobody.
func routeConfig(name string, svc *corev1.Service, port corev1.ServicePort, split *meshv1.TrafficSplit, serving func(string) bool) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}
	var routes []*routev3.Route
	if split != nil {
		backend := func(service string) string { return xdsnames.Authority(service, svc.Namespace, port.Port) }
		for i, m := range split.Spec.Matches {
			if serving(m.Backend) {
				// Named by its place in the split, so that its metrics keep their route while
				// others are added or stop serving.
				routes = append(routes, &routev3.Route{Name: MatchRouteName(i), Match: routeMatch(m), Action: toCluster(backend(m.Backend))})
			}
		}
		var weighted []*routev3.WeightedCluster_ClusterWeight
		for _, b := range split.Spec.Backends {
			if b.Weight > 0 && serving(b.Service) {
				weighted = append(weighted, &routev3.WeightedCluster_ClusterWeight{Name: backend(b.Service), Weight: wrapperspb.UInt32(uint32(b.Weight))})
			}
		}
		if len(weighted) > 0 {
			action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: weighted}}
		}
	}
	routes = append(routes, &routev3.Route{
		Name:   DefaultRouteName,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	})
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: append([]string{name}, xdsnames.Aliases(svc.Name, svc.Namespace, port.Port)...),
			Routes:  routes,
		}},
	}
}

// DefaultRouteName names the route that takes the requests no match took.
const DefaultRouteName = "default"

// MatchRouteName names the route of a TrafficSplit's i-th match.
func MatchRouteName(i int) string { return "match-" + strconv.Itoa(i) }

// routeMatch is a TrafficSplit match as an xDS route match: a path prefix ("/" when unset) and
// headers with exact values.
func routeMatch(m meshv1.HTTPMatch) *routev3.RouteMatch {
	prefix := m.PathPrefix
	if prefix == "" {
		prefix = "/"
	}
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{Name: h.Name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Value}},
		}})
	}
	return rm
}

func toCluster(name string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}
}

func cluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:       durationpb.New(connectTimeout),
	}
}

// loadAssignment lists the endpoints that serve a port: ready ones as healthy, terminating ones
// that still serve as draining (no new requests, in-flight ones finish).
func loadAssignment(name string, port corev1.ServicePort, slices []discoveryv1.EndpointSlice, identity func(discoveryv1.Endpoint) string,
	gatewayTarget func(discoveryv1.Endpoint) (string, bool)) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	seen := map[netip.AddrPort]bool{}
	for _, slice := range slices {
		if slice.AddressType != discoveryv1.AddressTypeIPv4 && slice.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		target, ok := targetPort(slice, port)
		if !ok {
			continue
		}
		for _, ep := range slice.Endpoints {
			health, ok := healthOf(ep.Conditions)
			if !ok {
				continue
			}
			forward, ok := gatewayTarget(ep)
			if !ok {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || seen[netip.AddrPortFrom(ip, uint16(target))] {
					continue
				}
				seen[netip.AddrPortFrom(ip, uint16(target))] = true
				fields := map[string]any{}
				if id := identity(ep); id != "" {
					fields[xdsnames.FieldIdentity] = id
				}
				if forward != "" {
					fields[xdsnames.FieldGatewayTarget] = forward
				}
				lbs = append(lbs, &endpointv3.LbEndpoint{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip.String(), uint32(target))}},
					HealthStatus:   health,
					Metadata:       metadata(fields),
				})
			}
		}
	}
	// A stable order, so that an unchanged set compiles to an equal resource and is not resent.
	sort.Slice(lbs, func(i, j int) bool {
		a, b := lbs[i].GetEndpoint().GetAddress().GetSocketAddress(), lbs[j].GetEndpoint().GetAddress().GetSocketAddress()
		if a.GetAddress() != b.GetAddress() {
			return a.GetAddress() < b.GetAddress()
		}
		return a.GetPortValue() < b.GetPortValue()
	})
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(lbs) > 0 {
		// grpc-go ignores localities without a weight, and rejects the whole resource when a
		// locality has no Locality message, even an empty one: one locality, "", holds every endpoint.
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
			Locality: &corev3.Locality{}, LbEndpoints: lbs, LoadBalancingWeight: wrapperspb.UInt32(1),
		}}
	}
	return cla
}

// targetPort is the port a slice's endpoints serve the service port on, matched by port name.
func targetPort(slice discoveryv1.EndpointSlice, port corev1.ServicePort) (int32, bool) {
	for _, p := range slice.Ports {
		if p.Port != nil && (p.Name == nil && port.Name == "" || p.Name != nil && *p.Name == port.Name) &&
			(p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
			return *p.Port, true
		}
	}
	return 0, false
}

// healthOf maps EndpointSlice conditions to xDS: ready (unset means ready) is healthy; terminating
// but serving is draining; anything else is left out.
func healthOf(c discoveryv1.EndpointConditions) (corev3.HealthStatus, bool) {
	switch {
	case meshv1.IsReady(c):
		return corev3.HealthStatus_HEALTHY, true
	case c.Terminating != nil && *c.Terminating && c.Serving != nil && *c.Serving:
		return corev3.HealthStatus_DRAINING, true
	}
	return 0, false
}

func clusterIPs(svc *corev1.Service) []string {
	var ips []string
	for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if _, err := netip.ParseAddr(ip); err == nil && !contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	return ips
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// metadata puts Skein's fields under xdsnames.MetadataKey; nil when there are none.
func metadata(fields map[string]any) *corev3.Metadata {
	if len(fields) == 0 {
		return nil
	}
	s, err := structpb.NewStruct(fields)
	if err != nil {
		panic(err) // only strings and bools are put here
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{xdsnames.MetadataKey: s}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}
