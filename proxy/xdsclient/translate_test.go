package xdsclient

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/proxy/destinations"
)

const web = "web.default.svc.cluster.local:80"

func TestDecodeRejects(t *testing.T) {
	// change returns a copy of m changed by f.
	change := func(m proto.Message, f func(proto.Message)) proto.Message {
		m = proto.Clone(m)
		f(m)
		return m
	}
	tests := []struct {
		name    string
		typ     string
		res     proto.Message
		as      string // the name the response gives the resource; web when empty
		wantErr string
	}{
		{name: "listener without api_listener", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).ApiListener = nil
		}), wantErr: "no api_listener"},
		{name: "api_listener is not an HTTP connection manager", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).ApiListener.ApiListener = mustAny(newCluster(web))
		}), wantErr: "not an HTTP connection manager"},
		{name: "scoped routes", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).ApiListener.ApiListener = mustAny(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_ScopedRoutes{}})
		}), wantErr: "scoped_routes"},
		{name: "no route specifier", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).ApiListener.ApiListener = mustAny(&hcmv3.HttpConnectionManager{StatPrefix: "web"})
		}), wantErr: "neither rds nor route_config"},
		{name: "a garbled HTTP connection manager", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).ApiListener.ApiListener.Value = []byte{0x1a, 0xff}
		}), wantErr: "api_listener"},
		{name: "listener name is not an authority", typ: listenerType, res: newListener("web", false), as: "web", wantErr: "not an authority"},
		{name: "listener address is a pipe", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/s"}}}
		}), wantErr: "not a socket address"},
		{name: "opaque is not a bool", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).Metadata = skeinMetadata(xdsnames.FieldOpaque, "yes")
		}), wantErr: "not a bool"},
		{name: "redirect", typ: routeType, res: change(newRoute(web, []string{web}), func(m proto.Message) {
			m.(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{}}
		}), wantErr: "not a route to a cluster"},
		{name: "direct response", typ: routeType, res: change(newRoute(web, []string{web}), func(m proto.Message) {
			m.(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}}
		}), wantErr: "not a route to a cluster"},
		{name: "cluster from a header", typ: routeType, res: change(newRoute(web, []string{web}), func(m proto.Message) {
			m.(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
		}), wantErr: "does not understand"},
		{name: "not EDS", typ: clusterType, res: change(newCluster(web), func(m proto.Message) {
			m.(*clusterv3.Cluster).ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		}), wantErr: "not an EDS cluster"},
		{name: "EDS not over ADS", typ: clusterType, res: change(newCluster(web), func(m proto.Message) {
			m.(*clusterv3.Cluster).EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/eds"}}
		}), wantErr: "not served over ADS"},
		{name: "endpoint is a pipe", typ: endpointType, res: change(newAssignment(web, ep{addr: "10.0.0.1:8080"}), func(m proto.Message) {
			m.(*endpointv3.ClusterLoadAssignment).Endpoints[0].LbEndpoints[0].GetEndpoint().Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/s"}}}
		}), wantErr: "not a socket address"},
		{name: "endpoint is a host name", typ: endpointType, res: change(newAssignment(web, ep{addr: "10.0.0.1:8080"}), func(m proto.Message) {
			m.(*endpointv3.ClusterLoadAssignment).Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Address = "web.example"
		}), wantErr: "not an IP address"},
		{name: "endpoint port out of range", typ: endpointType, res: change(newAssignment(web, ep{addr: "10.0.0.1:8080"}), func(m proto.Message) {
			m.(*endpointv3.ClusterLoadAssignment).Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 70000}
		}), wantErr: "no port number"},
		{name: "bad identity", typ: endpointType, res: newAssignment(web, ep{addr: "10.0.0.1:8080", identity: "spiffe://cluster.local/web"}), wantErr: "not a workload identity"},
		{name: "identity is not a string", typ: endpointType, res: change(newAssignment(web, ep{addr: "10.0.0.1:8080"}), func(m proto.Message) {
			m.(*endpointv3.ClusterLoadAssignment).Endpoints[0].LbEndpoints[0].Metadata = skeinMetadata(xdsnames.FieldIdentity, 1.0)
		}), wantErr: "not a string"},
		{name: "exported is not a bool", typ: listenerType, res: change(newListener(web, false), func(m proto.Message) {
			m.(*listenerv3.Listener).Metadata = skeinMetadata(xdsnames.FieldExported, "true")
		}), wantErr: "exported is not a bool"},
		{name: "gateway target is not a string", typ: endpointType, res: change(newAssignment(web, ep{addr: "10.0.0.1:4143"}), func(m proto.Message) {
			m.(*endpointv3.ClusterLoadAssignment).Endpoints[0].LbEndpoints[0].Metadata = metadataOf(map[string]any{
				xdsnames.FieldIdentity: gatewayID, xdsnames.FieldGatewayTarget: true})
		}), wantErr: "gatewayTarget is not a string"},
		{name: "gateway target is not an authority", typ: endpointType, res: change(newAssignment(web, ep{addr: "10.0.0.1:4143"}), func(m proto.Message) {
			m.(*endpointv3.ClusterLoadAssignment).Endpoints[0].LbEndpoints[0].Metadata = metadataOf(map[string]any{
				xdsnames.FieldIdentity: gatewayID, xdsnames.FieldGatewayTarget: "web.shop:8080"})
		}), wantErr: `gatewayTarget: authority "web.shop:8080" does not end in .svc.cluster.local`},
		{name: "gateway without identity", typ: endpointType, res: change(newAssignment(web, ep{addr: "10.0.0.1:4143"}), func(m proto.Message) {
			m.(*endpointv3.ClusterLoadAssignment).Endpoints[0].LbEndpoints[0].Metadata = skeinMetadata(xdsnames.FieldGatewayTarget, "web.shop.svc.cluster.local:8080")
		}), wantErr: "has no identity"},
		{name: "resource named otherwise inside", typ: clusterType, res: newCluster("other.default.svc.cluster.local:80"), wantErr: "named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := tt.as
			if as == "" {
				as = web
			}
			_, err := decoders[tt.typ](as, mustAny(tt.res))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one that says %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeAssignment(t *testing.T) {
	cla := newAssignment(web,
		ep{addr: "10.0.0.1:8080", identity: "spiffe://cluster.local/ns/default/sa/web", health: corev3.HealthStatus_HEALTHY},
		ep{addr: "10.0.0.2:8080", health: corev3.HealthStatus_UNKNOWN},
		ep{addr: "10.0.0.3:8080", health: corev3.HealthStatus_DRAINING},
		ep{addr: "10.0.0.4:8080", health: corev3.HealthStatus_UNHEALTHY},
		ep{addr: "10.0.0.5:8080", health: corev3.HealthStatus_TIMEOUT},
	)
	// A failover priority is used only when the first has no endpoint that takes requests.
	cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{Priority: 1, LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(ep{addr: "10.0.1.1:8080"})}})
	got, err := decodeAssignment(web, mustAny(cla))
	if err != nil {
		t.Fatal(err)
	}
	want := []destinations.Endpoint{
		{Addr: netip.MustParseAddrPort("10.0.0.1:8080"), Identity: "spiffe://cluster.local/ns/default/sa/web"},
		{Addr: netip.MustParseAddrPort("10.0.0.2:8080")},
	}
	if !slices.Equal(got.(assignment).endpoints, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
	if draining := got.(assignment).draining; len(draining) != 1 || draining[0].Addr != netip.MustParseAddrPort("10.0.0.3:8080") {
		t.Errorf("draining = %v, want the one draining endpoint, still known", draining)
	}

	for _, lb := range cla.Endpoints[0].LbEndpoints {
		lb.HealthStatus = corev3.HealthStatus_DRAINING
	}
	got, err = decodeAssignment(web, mustAny(cla))
	if err != nil {
		t.Fatal(err)
	}
	if want := []destinations.Endpoint{{Addr: netip.MustParseAddrPort("10.0.1.1:8080")}}; !slices.Equal(got.(assignment).endpoints, want) {
		t.Errorf("with priority 0 draining, endpoints = %v, want %v", got, want)
	}
}

func TestMatchingRoutesComeFirst(t *testing.T) {
	rc := newRoute(web, []string{web}, weight(web, 90), weight(canary, 10))
	vh := rc.VirtualHosts[0]
	toCanary := &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: canary}}}
	vh.Routes = append([]*routev3.Route{{
		Name: "match-0",
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"},
			Headers: []*routev3.HeaderMatcher{{Name: "x-canary", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
				StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "always"}},
			}}},
		},
		Action: toCanary,
	}}, vh.Routes...)
	vhs, err := virtualHosts(mustMarshal(rc))
	if err != nil {
		t.Fatal(err)
	}
	want := []match{{name: "match-0", pathPrefix: "/api", headers: []destinations.HeaderMatch{{Name: "x-canary", Value: "always"}}, cluster: canary}}
	if got := vhs[0].matches; !slices.EqualFunc(got, want, func(a, b match) bool {
		return a.name == b.name && a.pathPrefix == b.pathPrefix && a.cluster == b.cluster && slices.Equal(a.headers, b.headers)
	}) {
		t.Errorf("matches = %+v, want %+v", got, want)
	}
	if len(vhs[0].weighted) != 2 {
		t.Errorf("the catch-all route's weighted clusters = %v", vhs[0].weighted)
	}

	vh.Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/api.*"}}
	if _, err := virtualHosts(mustMarshal(rc)); err == nil || !strings.Contains(err.Error(), "prefixes only") {
		t.Errorf("a regex path match was accepted: %v", err)
	}
}

func TestListenerWithInlineRoutes(t *testing.T) {
	l := newListener(web, false, "10.96.0.10:80")
	l.ApiListener.ApiListener = mustAny(&hcmv3.HttpConnectionManager{
		StatPrefix:     web,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: newRoute(web, []string{web, "web.default:80"}, weight(web, 1), weight(canary, 3))},
	})
	got, err := decodeListener(web, mustAny(l))
	if err != nil {
		t.Fatal(err)
	}
	inline := got.(*listener).inline
	if got.(*listener).routeName != "" || len(inline) != 1 || len(inline[0].weighted) != 2 || inline[0].weighted[1].Weight != 3 {
		t.Errorf("inline routes = %+v", got)
	}
}

const gatewayID = "spiffe://east.example/ns/skein-system/sa/skein-gateway"

func metadataOf(fields map[string]any) *corev3.Metadata {
	s, err := structpb.NewStruct(fields)
	if err != nil {
		panic(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{xdsnames.MetadataKey: s}}
}

func TestMirroredServiceThroughAGateway(t *testing.T) {
	name := "web-east.shop.svc.cluster.local:8080"
	l := newListener(name, false, "10.96.0.20:8080")
	l.Metadata = metadataOf(map[string]any{xdsnames.FieldOpaque: false, xdsnames.FieldExported: true})
	cla := newAssignment(name, ep{addr: "192.0.2.7:4143"})
	cla.Endpoints[0].LbEndpoints[0].Metadata = metadataOf(map[string]any{
		xdsnames.FieldIdentity: gatewayID, xdsnames.FieldGatewayTarget: "web.shop.svc.cluster.local:8080"})
	held := map[string]map[string]resource{}
	for typ, m := range map[string]proto.Message{listenerType: l, routeType: newRoute(name, []string{name}), clusterType: newCluster(name), endpointType: cla} {
		v, err := decoders[typ](name, mustAny(m))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		held[typ] = map[string]resource{name: {value: v}}
	}
	snap, err := snapshot(held)
	if err != nil {
		t.Fatal(err)
	}
	svc := snap.ByAuthority(name)
	if svc == nil || !svc.Exported {
		t.Fatalf("service = %+v, want it exported", svc)
	}
	want := []destinations.Endpoint{{Addr: netip.MustParseAddrPort("192.0.2.7:4143"), Identity: gatewayID, GatewayTarget: "web.shop.svc.cluster.local:8080"}}
	if !slices.Equal(svc.Endpoints, want) {
		t.Errorf("endpoints = %+v, want %+v", svc.Endpoints, want)
	}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}
