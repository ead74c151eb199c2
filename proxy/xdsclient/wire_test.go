package xdsclient

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/proxy/destinations"
)

// The hand-written encoding must read as Envoy's own types do.
func TestRequestWireForm(t *testing.T) {
	req := &deltaRequest{node: &node{id: "web-1.default", cluster: "skein-proxy", userAgentName: "skein-proxy"}, typeURL: clusterType,
		subscribe: []string{"*"}, initialResourceVersions: map[string]string{"a": "1", "b": "2"}, responseNonce: "n7",
		errorDetail: &status{code: 3, message: "Cluster \"a\": bad"}}
	got := &discoveryv3.DeltaDiscoveryRequest{}
	if err := proto.Unmarshal(req.marshal(), got); err != nil {
		t.Fatal(err)
	}
	want := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "web-1.default", Cluster: "skein-proxy", UserAgentName: "skein-proxy"},
		TypeUrl: clusterType, ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: map[string]string{"a": "1", "b": "2"},
		ResponseNonce: "n7"}
	if got.ErrorDetail.GetCode() != 3 || got.ErrorDetail.GetMessage() != "Cluster \"a\": bad" {
		t.Errorf("error_detail = %v", got.ErrorDetail)
	}
	got.ErrorDetail = nil
	if !proto.Equal(got, want) {
		t.Errorf("request = %v, want %v", got, want)
	}
}

func TestResponseWireForm(t *testing.T) {
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: endpointType, Nonce: "n1", RemovedResources: []string{"old"},
		Resources: []*discoveryv3.Resource{{Name: web, Version: "v3", Resource: mustAny(newAssignment(web, ep{addr: "10.0.0.1:8080"}))}, {Name: "empty"}}}
	got, err := unmarshalResponse(mustMarshal(resp))
	if err != nil {
		t.Fatal(err)
	}
	if got.typeURL != endpointType || got.nonce != "n1" || !slices.Equal(got.removed, []string{"old"}) || len(got.resources) != 2 {
		t.Fatalf("response = %+v", got)
	}
	r := got.resources[0]
	if r.name != web || r.version != "v3" || r.resource == nil || r.resource.typeURL != endpointType || !slices.Equal(r.resource.value, mustMarshal(newAssignment(web, ep{addr: "10.0.0.1:8080"}))) {
		t.Errorf("resource = %+v", r)
	}
	if got.resources[1].resource != nil {
		t.Errorf("a resource without a body got one: %+v", got.resources[1])
	}
	if _, err := unmarshalResponse([]byte{0x12, 0x05, 0x1a}); err == nil || !strings.Contains(err.Error(), "DeltaDiscoveryResponse") {
		t.Errorf("a truncated response: %v", err)
	}
}

func TestGatewayTarget(t *testing.T) {
	const target = "web.shop.svc.cluster.local:80"
	cla := newAssignment(web, ep{addr: "10.0.0.1:4143", identity: "spiffe://cluster.local/ns/skein-system/sa/skein-gateway"})
	md := cla.Endpoints[0].LbEndpoints[0].Metadata.FilterMetadata[xdsnames.MetadataKey]
	md.Fields[xdsnames.FieldGatewayTarget] = structpb.NewStringValue(target)
	got, err := decodeAssignment(web, mustAny(cla))
	if err != nil {
		t.Fatal(err)
	}
	want := []destinations.Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:4143"), Identity: "spiffe://cluster.local/ns/skein-system/sa/skein-gateway", GatewayTarget: target}}
	if eps := got.(assignment).endpoints; !slices.Equal(eps, want) {
		t.Errorf("endpoints = %v, want %v", eps, want)
	}

	md.Fields[xdsnames.FieldGatewayTarget] = structpb.NewStringValue("web")
	if _, err := decodeAssignment(web, mustAny(cla)); err == nil || !strings.Contains(err.Error(), "gatewayTarget") {
		t.Errorf("a gateway target that is no authority: %v", err)
	}
	md.Fields[xdsnames.FieldGatewayTarget] = structpb.NewBoolValue(true)
	if _, err := decodeAssignment(web, mustAny(cla)); err == nil || !strings.Contains(err.Error(), "not a string") {
		t.Errorf("a gateway target that is no string: %v", err)
	}
}

// More of what the proxy cannot apply, each named in the error.
func TestDecodeRejectsMore(t *testing.T) {
	rc := newRoute(web, []string{web})
	rc.VirtualHosts[0].Routes[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}
	rc.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/api"}
	if _, err := virtualHosts(mustMarshal(rc)); err == nil || !strings.Contains(err.Error(), "exact value only") {
		t.Errorf("a presence header match: %v", err)
	}
	cla := newAssignment(web, ep{addr: "10.0.0.1:8080"})
	cla.Endpoints[0].LbEndpoints[0].HostIdentifier = &endpointv3.LbEndpoint_EndpointName{EndpointName: "named"}
	if _, err := decodeAssignment(web, mustAny(cla)); err == nil || !strings.Contains(err.Error(), "not an inline endpoint") {
		t.Errorf("a named endpoint: %v", err)
	}
	udp := newAssignment(web, ep{addr: "10.0.0.1:8080"})
	udp.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
	if _, err := decodeAssignment(web, mustAny(udp)); err == nil || !strings.Contains(err.Error(), "not TCP") {
		t.Errorf("a UDP endpoint: %v", err)
	}
	if _, err := decodeAssignment(web, mustAny(newCluster(web))); err == nil || !strings.Contains(err.Error(), "not a type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment") {
		t.Errorf("a cluster sent as an assignment: %v", err)
	}
}
