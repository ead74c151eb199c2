package xdsclient

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/proxy/destinations"
)

// Type URLs of the resources the client consumes.
const (
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// listener is what the proxy uses of a Listener: one service.
type listener struct {
	addrs            []netip.AddrPort
	opaque, exported bool
	// routeName is the RouteConfiguration to ask for; "" when the route configuration is inline.
	routeName string
	inline    []virtualHost
}

// virtualHost is a RouteConfiguration's virtual host: its matching routes, each to one cluster,
// then the route that takes every other request.
type virtualHost struct {
	domains []string
	matches []match
	// cluster takes the other requests, unless weighted is set.
	cluster  string
	weighted []destinations.Backend
}

// match is a route that sends the requests it matches to one cluster.
type match struct {
	name       string
	pathPrefix string
	headers    []destinations.HeaderMatch
	cluster    string
}

// cluster is an EDS cluster: the name of its ClusterLoadAssignment.
type cluster struct{ assignment string }

// decoders read each type into what the proxy uses of it, or say why the proxy cannot apply it.
var decoders = map[string]func(name string, a *anypb.Any) (any, error){
	listenerType: decodeListener,
	routeType: func(name string, a *anypb.Any) (any, error) {
		rc := &routev3.RouteConfiguration{}
		if err := unmarshal(a, rc, name, rc.GetName); err != nil {
			return nil, err
		}
		return virtualHosts(rc)
	},
	clusterType:  decodeCluster,
	endpointType: decodeAssignment,
}

// unmarshal reads a into m and checks that it carries the name the response gives it.
func unmarshal(a *anypb.Any, m proto.Message, name string, inner func() string) error {
	if a == nil {
		return errors.New("the resource has no body")
	}
	if err := a.UnmarshalTo(m); err != nil {
		return err
	}
	if inner() != name {
		return fmt.Errorf("the resource is named %q inside", inner())
	}
	return nil
}

func decodeListener(name string, a *anypb.Any) (any, error) {
	l := &listenerv3.Listener{}
	if err := unmarshal(a, l, name, l.GetName); err != nil {
		return nil, err
	}
	// The name is the service's authority, which the proxy matches requests' Host against.
	if host, port, err := net.SplitHostPort(name); err != nil || host == "" || port == "" {
		return nil, errors.New("the name is not an authority host:port")
	}
	out := &listener{}
	if l.GetAddress() != nil {
		ap, err := socketAddr(l.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
		out.addrs = append(out.addrs, ap)
	}
	for _, extra := range l.GetAdditionalAddresses() {
		ap, err := socketAddr(extra.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("additional address: %w", err)
		}
		out.addrs = append(out.addrs, ap)
	}
	for name, dst := range map[string]*bool{xdsnames.FieldOpaque: &out.opaque, xdsnames.FieldExported: &out.exported} {
		if v := field(l.GetMetadata(), name); v != nil {
			b, ok := v.GetKind().(*structpb.Value_BoolValue)
			if !ok {
				return nil, fmt.Errorf("metadata %s.%s is not a bool: %v", xdsnames.MetadataKey, name, v)
			}
			*dst = b.BoolValue
		}
	}

	api := l.GetApiListener().GetApiListener()
	if api == nil {
		return nil, errors.New("it has no api_listener; the proxy needs an HTTP connection manager there")
	}
	if api.GetTypeUrl() != hcmTypeURL {
		return nil, fmt.Errorf("its api_listener is %s, not an HTTP connection manager", api.GetTypeUrl())
	}
	rds, inline, err := routeSpecifier(api.GetValue())
	if err != nil {
		return nil, fmt.Errorf("api_listener: %w", err)
	}
	switch {
	case rds != nil:
		if rds.name == "" {
			return nil, errors.New("its HTTP connection manager names no route_config_name")
		}
		if !overADS(rds.source) {
			return nil, errors.New("its route configuration is not served over ADS")
		}
		out.routeName = rds.name
	case inline != nil:
		vhs, err := virtualHosts(inline)
		if err != nil {
			return nil, fmt.Errorf("inline route_config: %w", err)
		}
		out.inline = vhs
	default:
		return nil, errors.New("its HTTP connection manager has neither rds nor route_config; the proxy takes one of them")
	}
	return out, nil
}

// hcmTypeURL is the type of the HTTP connection manager in an api_listener.
const hcmTypeURL = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

// rdsRef is an HTTP connection manager's rds field: where its route configuration comes from.
type rdsRef struct {
	source *corev3.ConfigSource
	name   string
}

// routeSpecifier reads the only fields of an HttpConnectionManager the proxy uses from its wire form:
// rds (3) and route_config (4), the last one present winning as for a oneof. Reading them by hand
// spares every proxy the manager's Go package, which links access logging, tracing and more: a few
// MB of memory each.
func routeSpecifier(b []byte) (*rdsRef, *routev3.RouteConfiguration, error) {
	var rds *rdsRef
	var inline *routev3.RouteConfiguration
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 3:
			rds, inline = &rdsRef{}, nil
			return fields(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					rds.source = &corev3.ConfigSource{}
					return proto.Unmarshal(v, rds.source)
				case 2:
					rds.name = string(v)
				}
				return nil
			})
		case 4:
			rds, inline = nil, &routev3.RouteConfiguration{}
			return proto.Unmarshal(v, inline)
		case 31:
			return errors.New("scoped_routes: the proxy takes rds or route_config")
		}
		return nil
	})
	return rds, inline, err
}

// fields calls f with each length-delimited field of a message; others are skipped.
func fields(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if err := f(num, v); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// virtualHosts reads a route configuration; every route must forward to a cluster or weighted
// clusters, since a redirect or a direct response is something the proxy does not do.
func virtualHosts(rc *routev3.RouteConfiguration) ([]virtualHost, error) {
	var out []virtualHost
	for _, vh := range rc.GetVirtualHosts() {
		v := virtualHost{domains: vh.GetDomains()}
		for i, r := range vh.GetRoutes() {
			ra, ok := r.GetAction().(*routev3.Route_Route)
			if !ok {
				return nil, fmt.Errorf("virtual host %q route %d: action %T is not a route to a cluster", vh.GetName(), i, r.GetAction())
			}
			c, weighted, err := routeTarget(ra.Route)
			if err != nil {
				return nil, fmt.Errorf("virtual host %q route %d: %w", vh.GetName(), i, err)
			}
			m, err := routeMatch(r.GetMatch())
			if err != nil {
				return nil, fmt.Errorf("virtual host %q route %d: %w", vh.GetName(), i, err)
			}
			if m.pathPrefix == "/" && len(m.headers) == 0 {
				// Every request matches: this route takes the rest, and any after it is unreachable.
				v.cluster, v.weighted = c, weighted
				break
			}
			if c == "" {
				return nil, fmt.Errorf("virtual host %q route %d: a matching route must name one cluster", vh.GetName(), i)
			}
			m.cluster, m.name = c, r.GetName()
			v.matches = append(v.matches, m)
		}
		out = append(out, v)
	}
	return out, nil
}

// routeMatch reads what the proxy understands of a route's match: a path prefix and headers with
// exact values.
func routeMatch(rm *routev3.RouteMatch) (match, error) {
	m := match{pathPrefix: "/"}
	switch ps := rm.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if ps.Prefix != "" {
			m.pathPrefix = ps.Prefix
		}
	default:
		return m, fmt.Errorf("the route matches paths by %T; the proxy understands prefixes only", ps)
	}
	if len(rm.GetQueryParameters()) > 0 || rm.GetRuntimeFraction() != nil || len(rm.GetDynamicMetadata()) > 0 || rm.GetGrpc() != nil {
		return m, errors.New("the route matches on more than the path prefix and headers")
	}
	for _, h := range rm.GetHeaders() {
		exact := h.GetStringMatch().GetExact()
		if exact == "" || h.GetInvertMatch() || h.GetStringMatch().GetIgnoreCase() {
			return m, fmt.Errorf("header %q: the proxy matches headers by exact value only", h.GetName())
		}
		m.headers = append(m.headers, destinations.HeaderMatch{Name: h.GetName(), Value: exact})
	}
	return m, nil
}

func routeTarget(ra *routev3.RouteAction) (string, []destinations.Backend, error) {
	switch cs := ra.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return "", nil, errors.New("the route names an empty cluster")
		}
		return cs.Cluster, nil, nil
	case *routev3.RouteAction_WeightedClusters:
		var backends []destinations.Backend
		for _, w := range cs.WeightedClusters.GetClusters() {
			if w.GetName() == "" {
				return "", nil, errors.New("a weighted cluster has no name")
			}
			backends = append(backends, destinations.Backend{Name: w.GetName(), Weight: w.GetWeight().GetValue()})
		}
		if len(backends) == 0 {
			return "", nil, errors.New("weighted_clusters lists no cluster")
		}
		return "", backends, nil
	default:
		return "", nil, fmt.Errorf("the route picks its cluster by %T, which the proxy does not understand", cs)
	}
}

func decodeCluster(name string, a *anypb.Any) (any, error) {
	c := &clusterv3.Cluster{}
	if err := unmarshal(a, c, name, c.GetName); err != nil {
		return nil, err
	}
	if _, ok := c.GetClusterDiscoveryType().(*clusterv3.Cluster_Type); !ok || c.GetType() != clusterv3.Cluster_EDS {
		return nil, errors.New("it is not an EDS cluster")
	}
	if !overADS(c.GetEdsClusterConfig().GetEdsConfig()) {
		return nil, errors.New("its endpoints are not served over ADS")
	}
	cla := c.GetEdsClusterConfig().GetServiceName()
	if cla == "" {
		cla = name
	}
	return &cluster{assignment: cla}, nil
}

// assignment is what the proxy uses of a ClusterLoadAssignment.
type assignment struct {
	// endpoints may take new requests.
	endpoints []destinations.Endpoint
	// draining still serve what they have but take no new requests; they stay known by address,
	// so that a client dialling one directly still reaches it over mTLS.
	draining []destinations.Endpoint
}

// decodeAssignment keeps the endpoints that may take new requests, at the lowest priority that has
// any (higher priorities are failover), and those draining.
func decodeAssignment(name string, a *anypb.Any) (any, error) {
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := unmarshal(a, cla, name, cla.GetClusterName); err != nil {
		return nil, err
	}
	var out, draining []destinations.Endpoint
	best := ^uint32(0)
	n := 0
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			n++
			ep, err := endpoint(lb)
			if err != nil {
				return nil, fmt.Errorf("endpoint %d: %w", n, err)
			}
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_DRAINING:
				draining = append(draining, ep)
				continue
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_TIMEOUT:
				continue
			}
			switch p := loc.GetPriority(); {
			case p < best:
				best, out = p, []destinations.Endpoint{ep}
			case p == best:
				out = append(out, ep)
			}
		}
	}
	return assignment{endpoints: out, draining: draining}, nil
}

func endpoint(lb *endpointv3.LbEndpoint) (destinations.Endpoint, error) {
	if lb.GetEndpoint() == nil {
		return destinations.Endpoint{}, errors.New("it is not an inline endpoint")
	}
	ap, err := socketAddr(lb.GetEndpoint().GetAddress())
	if err != nil {
		return destinations.Endpoint{}, err
	}
	ep := destinations.Endpoint{Addr: ap}
	if v := field(lb.GetMetadata(), xdsnames.FieldIdentity); v != nil {
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return ep, fmt.Errorf("%s: metadata %s.%s is not a string: %v", ap, xdsnames.MetadataKey, xdsnames.FieldIdentity, v)
		}
		if _, err := spiffe.Parse(s.StringValue); err != nil {
			return ep, fmt.Errorf("%s: %w", ap, err)
		}
		ep.Identity = s.StringValue
	}
	if v := field(lb.GetMetadata(), xdsnames.FieldGatewayTarget); v != nil {
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return ep, fmt.Errorf("%s: metadata %s.%s is not a string: %v", ap, xdsnames.MetadataKey, xdsnames.FieldGatewayTarget, v)
		}
		if _, err := xdsnames.ParseAuthority(s.StringValue); err != nil {
			return ep, fmt.Errorf("%s: metadata %s.%s: %w", ap, xdsnames.MetadataKey, xdsnames.FieldGatewayTarget, err)
		}
		if ep.Identity == "" {
			// The gateway is reached over mTLS only: without an identity it could not be checked.
			return ep, fmt.Errorf("%s: a gateway endpoint (%s) has no %s", ap, xdsnames.FieldGatewayTarget, xdsnames.FieldIdentity)
		}
		ep.GatewayTarget = s.StringValue
	}
	return ep, nil
}

// socketAddr reads an IP address and port: the proxy connects to what it is given, without resolving.
func socketAddr(a *corev3.Address) (netip.AddrPort, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return netip.AddrPort{}, fmt.Errorf("address {%v} is not a socket address", a)
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return netip.AddrPort{}, fmt.Errorf("%s is not TCP", sa.GetProtocol())
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address", sa.GetAddress())
	}
	port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	if !ok || port.PortValue == 0 || port.PortValue > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%s has no port number", sa.GetAddress())
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port.PortValue)), nil
}

// field is one of Skein's metadata fields, or nil.
func field(md *corev3.Metadata, name string) *structpb.Value {
	return md.GetFilterMetadata()[xdsnames.MetadataKey].GetFields()[name]
}

// overADS tells whether a config source points back at this stream.
func overADS(cs *corev3.ConfigSource) bool {
	switch cs.GetConfigSourceSpecifier().(type) {
	case nil, *corev3.ConfigSource_Ads, *corev3.ConfigSource_Self:
		return true
	}
	return false
}

// snapshot builds the destinations from what is held: one service per listener, with whatever of its
// route, clusters and endpoints has arrived.
func snapshot(held map[string]map[string]resource) (*destinations.Snapshot, error) {
	listeners := held[listenerType]
	names := make([]string, 0, len(listeners))
	for name := range listeners {
		names = append(names, name)
	}
	slices.Sort(names)
	assigned := func(clusterName string) assignment {
		c, ok := held[clusterType][clusterName]
		if !ok {
			return assignment{}
		}
		a, _ := held[endpointType][c.value.(*cluster).assignment].value.(assignment)
		return a
	}
	services := make([]destinations.Service, 0, len(names))
	for _, name := range names {
		l := listeners[name].value.(*listener)
		svc := destinations.Service{Authority: name, Addrs: l.addrs, Opaque: l.opaque, Exported: l.exported}
		vhs := l.inline
		if l.routeName != "" {
			vhs, _ = held[routeType][l.routeName].value.([]virtualHost)
		}
		if vh := hostFor(vhs, name); vh != nil {
			for _, d := range vh.domains {
				// A wildcard domain is a pattern, not a name a request could be looked up by.
				if !strings.EqualFold(d, name) && !strings.Contains(d, "*") {
					svc.Aliases = append(svc.Aliases, d)
				}
			}
			if vh.weighted == nil {
				a := assigned(vh.cluster)
				svc.Endpoints, svc.Draining = a.endpoints, a.draining
			}
			for _, m := range vh.matches {
				svc.Matches = append(svc.Matches, destinations.Match{Name: m.name, PathPrefix: m.pathPrefix, Headers: m.headers,
					Backend: destinations.Backend{Name: m.cluster, Endpoints: assigned(m.cluster).endpoints}})
			}
			for _, b := range vh.weighted {
				a := assigned(b.Name)
				b.Endpoints = a.endpoints
				svc.Backends = append(svc.Backends, b)
				svc.Draining = append(svc.Draining, a.draining...)
			}
		}
		services = append(services, svc)
	}
	return destinations.NewSnapshot(services)
}

// hostFor is the virtual host that serves the authority, or the only one.
func hostFor(vhs []virtualHost, authority string) *virtualHost {
	for i := range vhs {
		if slices.ContainsFunc(vhs[i].domains, func(d string) bool { return strings.EqualFold(d, authority) }) {
			return &vhs[i]
		}
	}
	if len(vhs) == 1 {
		return &vhs[0]
	}
	return nil
}
