package xdsclient

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

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
		b, err := body(a, routeType, name)
		if err != nil {
			return nil, err
		}
		return virtualHosts(b)
	},
	clusterType:  decodeCluster,
	endpointType: decodeAssignment,
}

// body is a resource's message, once checked to be of type typ and to carry (in field 1, where
// every type the proxy reads keeps it) the name the response gives it.
func body(a *anypb.Any, typ, name string) ([]byte, error) {
	if a == nil {
		return nil, errors.New("the resource has no body")
	}
	// As anypb's UnmarshalTo: what comes before the last '/' does not matter.
	if got := a.GetTypeUrl(); got[strings.LastIndexByte(got, '/')+1:] != typ[strings.LastIndexByte(typ, '/')+1:] {
		return nil, fmt.Errorf("the resource is a %s, not a %s", got, typ)
	}
	inner := ""
	err := fields(a.GetValue(), func(num protowire.Number, v []byte) error {
		if num == 1 {
			inner = string(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if inner != name {
		return nil, fmt.Errorf("the resource is named %q inside", inner)
	}
	return a.GetValue(), nil
}

// Listener: address 2, metadata 6, api_listener 19 (ApiListener: api_listener 1, an Any),
// additional_addresses 33 (AdditionalAddress: address 1).
func decodeListener(name string, a *anypb.Any) (any, error) {
	b, err := body(a, listenerType, name)
	if err != nil {
		return nil, err
	}
	// The name is the service's authority, which the proxy matches requests' Host against.
	if host, port, err := net.SplitHostPort(name); err != nil || host == "" || port == "" {
		return nil, errors.New("the name is not an authority host:port")
	}
	out := &listener{}
	var addr, metadata, api []byte
	var extra [][]byte
	err = fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 2:
			addr = v
		case 6:
			metadata = v
		case 19:
			return fields(v, func(num protowire.Number, v []byte) error {
				if num == 1 {
					api = v
				}
				return nil
			})
		case 33:
			return fields(v, func(num protowire.Number, v []byte) error {
				if num == 1 {
					extra = append(extra, v)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if addr != nil {
		ap, err := socketAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
		out.addrs = append(out.addrs, ap)
	}
	for _, e := range extra {
		ap, err := socketAddr(e)
		if err != nil {
			return nil, fmt.Errorf("additional address: %w", err)
		}
		out.addrs = append(out.addrs, ap)
	}
	md, err := skeinFields(metadata, xdsnames.MetadataKey)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	for name, dst := range map[string]*bool{xdsnames.FieldOpaque: &out.opaque, xdsnames.FieldExported: &out.exported} {
		if v := md[name]; v != nil {
			if v.kind != "bool" {
				return nil, fmt.Errorf("metadata %s.%s is not a bool: %v", xdsnames.MetadataKey, name, v)
			}
			*dst = v.b
		}
	}

	if api == nil {
		return nil, errors.New("it has no api_listener; the proxy needs an HTTP connection manager there")
	}
	hcm, err := readAny(api)
	if err != nil {
		return nil, fmt.Errorf("api_listener: %w", err)
	}
	if hcm.typeURL != hcmTypeURL {
		return nil, fmt.Errorf("its api_listener is %s, not an HTTP connection manager", hcm.typeURL)
	}
	rds, inline, err := routeSpecifier(hcm.value)
	if err != nil {
		return nil, fmt.Errorf("api_listener: %w", err)
	}
	switch {
	case rds != nil:
		if rds.name == "" {
			return nil, errors.New("its HTTP connection manager names no route_config_name")
		}
		if !rds.ads {
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
	ads  bool
	name string
}

// routeSpecifier reads the HttpConnectionManager's rds (3: config_source 1, route_config_name 2)
// and route_config (4), the last one present winning as for a oneof.
func routeSpecifier(b []byte) (*rdsRef, []byte, error) {
	var rds *rdsRef
	var inline []byte
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 3:
			rds, inline = &rdsRef{ads: true}, nil
			return fields(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					ads, err := overADS(v)
					rds.ads = ads
					return err
				case 2:
					rds.name = string(v)
				}
				return nil
			})
		case 4:
			rds, inline = nil, v
			if inline == nil {
				inline = []byte{}
			}
		case 31:
			return errors.New("scoped_routes: the proxy takes rds or route_config")
		}
		return nil
	})
	return rds, inline, err
}

// virtualHosts reads a RouteConfiguration (virtual_hosts 2; VirtualHost: name 1, domains 2,
// routes 3); every route must forward to a cluster or weighted clusters, since a redirect or a
// direct response is something the proxy does not do.
func virtualHosts(rc []byte) ([]virtualHost, error) {
	var out []virtualHost
	err := fields(rc, func(num protowire.Number, b []byte) error {
		if num != 2 {
			return nil
		}
		var vhName string
		var v virtualHost
		var routes [][]byte
		err := fields(b, func(num protowire.Number, b []byte) error {
			switch num {
			case 1:
				vhName = string(b)
			case 2:
				v.domains = append(v.domains, string(b))
			case 3:
				routes = append(routes, b)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, r := range routes {
			rt, err := readRoute(r)
			if err != nil {
				return fmt.Errorf("virtual host %q route %d: %w", vhName, i, err)
			}
			if rt.action != 2 {
				return fmt.Errorf("virtual host %q route %d: action %s is not a route to a cluster", vhName, i, actionName(rt.action))
			}
			c, weighted, err := routeTarget(rt.route)
			if err != nil {
				return fmt.Errorf("virtual host %q route %d: %w", vhName, i, err)
			}
			m, err := routeMatch(rt.match)
			if err != nil {
				return fmt.Errorf("virtual host %q route %d: %w", vhName, i, err)
			}
			if m.pathPrefix == "/" && len(m.headers) == 0 {
				// Every request matches: this route takes the rest, and any after it is unreachable.
				v.cluster, v.weighted = c, weighted
				break
			}
			if c == "" {
				return fmt.Errorf("virtual host %q route %d: a matching route must name one cluster", vhName, i)
			}
			m.cluster, m.name = c, rt.name
			v.matches = append(v.matches, m)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// route is what the proxy reads of a Route: match 1, name 14, and its action, a oneof of route 2,
// redirect 3, direct_response 7, filter_action 17 and non_forwarding_action 18.
type route struct {
	name   string
	match  []byte
	action protowire.Number
	route  []byte
}

func readRoute(b []byte) (route, error) {
	var r route
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			r.match = v
		case 14:
			r.name = string(v)
		case 2, 3, 7, 17, 18:
			r.action, r.route = num, v
		}
		return nil
	})
	return r, err
}

func actionName(n protowire.Number) string {
	switch n {
	case 0:
		return "(none)"
	case 3:
		return "redirect"
	case 7:
		return "direct_response"
	case 17:
		return "filter_action"
	case 18:
		return "non_forwarding_action"
	}
	return fmt.Sprint("field ", n)
}

// routeMatch reads what the proxy understands of a RouteMatch: a path prefix (1) and headers (6)
// with exact values. Other path specifiers (path 2, safe_regex 10, connect_matcher 12,
// path_separated_prefix 14, path_match_policy 15) and other conditions (query_parameters 7, grpc 8,
// runtime_fraction 9, dynamic_metadata 13) are refused.
func routeMatch(b []byte) (match, error) {
	m := match{pathPrefix: "/"}
	var spec protowire.Number
	var other []string
	var headers [][]byte
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			spec = 1
			if len(v) > 0 {
				m.pathPrefix = string(v)
			} else {
				m.pathPrefix = "/"
			}
		case 2, 10, 12, 14, 15:
			spec = num
		case 6:
			headers = append(headers, v)
		case 7, 8, 9, 13:
			other = append(other, fmt.Sprint(num))
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	if spec != 1 {
		return m, fmt.Errorf("the route matches paths by %s; the proxy understands prefixes only", pathSpecName(spec))
	}
	if len(other) > 0 {
		return m, errors.New("the route matches on more than the path prefix and headers")
	}
	for _, h := range headers {
		hm, err := headerMatch(h)
		if err != nil {
			return m, err
		}
		m.headers = append(m.headers, hm)
	}
	return m, nil
}

func pathSpecName(n protowire.Number) string {
	switch n {
	case 0:
		return "nothing"
	case 2:
		return "exact path"
	case 10:
		return "regex"
	case 12:
		return "CONNECT"
	case 14:
		return "path-separated prefix"
	case 15:
		return "path match policy"
	}
	return fmt.Sprint("field ", n)
}

// headerMatch reads a HeaderMatcher: name 1, invert_match 8, and the only matcher the proxy takes,
// string_match 13 (StringMatcher: exact 1, ignore_case 6) with an exact value.
func headerMatch(b []byte) (destinations.HeaderMatch, error) {
	var name, exact string
	var invert, ignoreCase, other bool
	err := walk(b, func(num protowire.Number, _ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 1:
			name = string(v)
		case 8:
			invert = x != 0
		case 13:
			exact, ignoreCase, other = "", false, false
			return walk(v, func(num protowire.Number, _ protowire.Type, v []byte, x uint64) error {
				switch num {
				case 1:
					exact = string(v)
				case 6:
					ignoreCase = x != 0
				default:
					other = true
				}
				return nil
			})
		case 4, 6, 7, 9, 10, 11, 12:
			other = true
		}
		return nil
	})
	if err != nil {
		return destinations.HeaderMatch{}, err
	}
	if exact == "" || invert || ignoreCase || other {
		return destinations.HeaderMatch{}, fmt.Errorf("header %q: the proxy matches headers by exact value only", name)
	}
	return destinations.HeaderMatch{Name: name, Value: exact}, nil
}

// routeTarget reads a RouteAction's cluster specifier, a oneof of cluster 1, cluster_header 2,
// weighted_clusters 3 (clusters 1; ClusterWeight: name 1, weight 2, a UInt32Value),
// cluster_specifier_plugin 37 and inline_cluster_specifier_plugin 39.
func routeTarget(b []byte) (string, []destinations.Backend, error) {
	var spec protowire.Number
	var name string
	var clusters [][]byte
	err := fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			spec, name = num, string(v)
		case 3:
			spec, clusters = num, nil
			return fields(v, func(num protowire.Number, v []byte) error {
				if num == 1 {
					clusters = append(clusters, v)
				}
				return nil
			})
		case 2, 37, 39:
			spec = num
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	switch spec {
	case 1:
		if name == "" {
			return "", nil, errors.New("the route names an empty cluster")
		}
		return name, nil, nil
	case 3:
		var backends []destinations.Backend
		for _, c := range clusters {
			var bk destinations.Backend
			err := fields(c, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					bk.Name = string(v)
				case 2:
					return walk(v, func(num protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
						if num == 1 {
							bk.Weight = uint32(x)
						}
						return nil
					})
				}
				return nil
			})
			if err != nil {
				return "", nil, err
			}
			if bk.Name == "" {
				return "", nil, errors.New("a weighted cluster has no name")
			}
			backends = append(backends, bk)
		}
		if len(backends) == 0 {
			return "", nil, errors.New("weighted_clusters lists no cluster")
		}
		return "", backends, nil
	case 0:
		return "", nil, errors.New("the route names no cluster, which the proxy does not understand")
	default:
		return "", nil, fmt.Errorf("the route picks its cluster by field %d, which the proxy does not understand", spec)
	}
}

// Cluster: its discovery type is a oneof of type 2 (EDS is 3) and cluster_type 38;
// eds_cluster_config 3 (eds_config 1, service_name 2).
func decodeCluster(name string, a *anypb.Any) (any, error) {
	b, err := body(a, clusterType, name)
	if err != nil {
		return nil, err
	}
	var discovery protowire.Number
	var typ uint64
	var edsConfig, serviceName []byte
	err = walk(b, func(num protowire.Number, _ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 2:
			discovery, typ = num, x
		case 38:
			discovery = num
		case 3:
			return fields(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 1:
					edsConfig = v
				case 2:
					serviceName = v
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if discovery != 2 || typ != 3 {
		return nil, errors.New("it is not an EDS cluster")
	}
	ads, err := overADS(edsConfig)
	if err != nil {
		return nil, err
	}
	if !ads {
		return nil, errors.New("its endpoints are not served over ADS")
	}
	cla := string(serviceName)
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

// Health statuses of an LbEndpoint (core.v3.HealthStatus).
const (
	healthUnhealthy = 2
	healthDraining  = 3
	healthTimeout   = 4
)

// decodeAssignment keeps the endpoints that may take new requests, at the lowest priority that has
// any (higher priorities are failover), and those draining. ClusterLoadAssignment: endpoints 2;
// LocalityLbEndpoints: lb_endpoints 2, priority 5.
func decodeAssignment(name string, a *anypb.Any) (any, error) {
	b, err := body(a, endpointType, name)
	if err != nil {
		return nil, err
	}
	var out, draining []destinations.Endpoint
	best := ^uint32(0)
	n := 0
	err = fields(b, func(num protowire.Number, loc []byte) error {
		if num != 2 {
			return nil
		}
		var priority uint32
		var lbs [][]byte
		err := walk(loc, func(num protowire.Number, _ protowire.Type, v []byte, x uint64) error {
			switch num {
			case 2:
				lbs = append(lbs, v)
			case 5:
				priority = uint32(x)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, lb := range lbs {
			n++
			ep, health, err := endpoint(lb)
			if err != nil {
				return fmt.Errorf("endpoint %d: %w", n, err)
			}
			switch health {
			case healthDraining:
				draining = append(draining, ep)
				continue
			case healthUnhealthy, healthTimeout:
				continue
			}
			switch {
			case priority < best:
				best, out = priority, []destinations.Endpoint{ep}
			case priority == best:
				out = append(out, ep)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return assignment{endpoints: out, draining: draining}, nil
}

// endpoint reads an LbEndpoint: endpoint 1 (Endpoint: address 1), health_status 2, metadata 3.
func endpoint(lb []byte) (destinations.Endpoint, uint64, error) {
	var inline bool
	var addr, metadata []byte
	var health uint64
	err := walk(lb, func(num protowire.Number, _ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 1:
			inline = true
			return fields(v, func(num protowire.Number, v []byte) error {
				if num == 1 {
					addr = v
				}
				return nil
			})
		case 2:
			health = x
		case 3:
			metadata = v
		case 5:
			inline = false
		}
		return nil
	})
	if err != nil {
		return destinations.Endpoint{}, 0, err
	}
	if !inline {
		return destinations.Endpoint{}, 0, errors.New("it is not an inline endpoint")
	}
	ap, err := socketAddr(addr)
	if err != nil {
		return destinations.Endpoint{}, 0, err
	}
	ep := destinations.Endpoint{Addr: ap}
	md, err := skeinFields(metadata, xdsnames.MetadataKey)
	if err != nil {
		return ep, 0, fmt.Errorf("%s: metadata: %w", ap, err)
	}
	if v := md[xdsnames.FieldIdentity]; v != nil {
		if v.kind != "string" {
			return ep, 0, fmt.Errorf("%s: metadata %s.%s is not a string: %v", ap, xdsnames.MetadataKey, xdsnames.FieldIdentity, v)
		}
		if _, err := spiffe.Parse(v.str); err != nil {
			return ep, 0, fmt.Errorf("%s: %w", ap, err)
		}
		ep.Identity = v.str
	}
	if v := md[xdsnames.FieldGatewayTarget]; v != nil {
		if v.kind != "string" {
			return ep, 0, fmt.Errorf("%s: metadata %s.%s is not a string: %v", ap, xdsnames.MetadataKey, xdsnames.FieldGatewayTarget, v)
		}
		if _, err := xdsnames.ParseAuthority(v.str); err != nil {
			return ep, 0, fmt.Errorf("%s: metadata %s.%s: %w", ap, xdsnames.MetadataKey, xdsnames.FieldGatewayTarget, err)
		}
		if ep.Identity == "" {
			// The gateway is reached over mTLS only: without an identity it could not be checked.
			return ep, 0, fmt.Errorf("%s: a gateway endpoint (%s) has no %s", ap, xdsnames.FieldGatewayTarget, xdsnames.FieldIdentity)
		}
		ep.GatewayTarget = v.str
	}
	return ep, health, nil
}

// socketAddr reads an IP address and port: the proxy connects to what it is given, without
// resolving. Address: socket_address 1 (SocketAddress: protocol 1, TCP being 0; address 2;
// port_value 3, named_port 4), pipe 2, envoy_internal_address 3.
func socketAddr(b []byte) (netip.AddrPort, error) {
	var kind protowire.Number
	var sa []byte
	err := fields(b, func(num protowire.Number, v []byte) error {
		kind = num
		if num == 1 {
			sa = v
		}
		return nil
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	switch kind {
	case 1:
	case 0:
		return netip.AddrPort{}, errors.New("the address is empty")
	default:
		return netip.AddrPort{}, fmt.Errorf("the address is not a socket address (field %d)", kind)
	}
	var protocol, port uint64
	var hasPort bool
	var host string
	err = walk(sa, func(num protowire.Number, _ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 1:
			protocol = x
		case 2:
			host = string(v)
		case 3:
			port, hasPort = x, true
		case 4:
			hasPort = false
		}
		return nil
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if protocol != 0 {
		return netip.AddrPort{}, fmt.Errorf("%s is not TCP", host)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address", host)
	}
	if !hasPort || port == 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%s has no port number", host)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// overADS tells whether a ConfigSource points back at this stream: its specifier, a oneof of path 1,
// api_config_source 2, ads 3, self 5 and path_config_source 8, is ads, self or absent.
func overADS(cs []byte) (bool, error) {
	var spec protowire.Number
	err := fields(cs, func(num protowire.Number, _ []byte) error {
		switch num {
		case 1, 2, 3, 5, 8:
			spec = num
		}
		return nil
	})
	return spec == 0 || spec == 3 || spec == 5, err
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
