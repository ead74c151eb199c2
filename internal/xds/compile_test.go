package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/xdsnames"
)

func service(ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"}, Ports: ports},
	}
}

func slice(port int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port)}},
		Endpoints:   eps,
	}
}

func endpoint(ip, pod string, c discoveryv1.EndpointConditions) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: c, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod}}
}

func identityOfPod(ep discoveryv1.Endpoint) string {
	if ep.TargetRef.Name == "plain" {
		return ""
	}
	return "spiffe://cluster.local/ns/shop/sa/" + ep.TargetRef.Name
}

func TestCompileOneServicePort(t *testing.T) {
	g := NewWithT(t)
	res := Compile(ServiceInput{
		Service: service(corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}),
		Slices: []discoveryv1.EndpointSlice{slice(8080,
			endpoint("10.0.0.2", "web", discoveryv1.EndpointConditions{}),
			endpoint("10.0.0.1", "plain", discoveryv1.EndpointConditions{Ready: ptr.To(true)}),
			endpoint("10.0.0.3", "web", discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}),
			endpoint("10.0.0.4", "web", discoveryv1.EndpointConditions{Ready: ptr.To(false)}),
		)},
		Identity: identityOfPod,
		Opaque:   func(int32) bool { return false },
	})
	name := xdsnames.Authority("web", "shop", 80)
	for _, typ := range resourceTypes {
		g.Expect(res[typ]).To(HaveLen(1), typ)
		g.Expect(res[typ]).To(HaveKey(name), typ)
	}

	l := res[resource.ListenerType][name].(*listenerv3.Listener)
	g.Expect(l.GetApiListener()).NotTo(BeNil(), "grpc-go needs an API listener")
	g.Expect(l.GetAddress().GetSocketAddress().GetAddress()).To(Equal("10.96.0.10"))
	g.Expect(l.GetAdditionalAddresses()).To(HaveLen(1))
	g.Expect(l.GetMetadata().GetFilterMetadata()[xdsnames.MetadataKey].GetFields()[xdsnames.FieldOpaque].GetBoolValue()).To(BeFalse())

	rc := res[resource.RouteType][name].(*routev3.RouteConfiguration)
	g.Expect(rc.GetVirtualHosts()[0].GetDomains()).To(ContainElements(name, "web.shop", "web.shop:80"))
	g.Expect(rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster()).To(Equal(name))

	g.Expect(res[resource.ClusterType][name].(*clusterv3.Cluster).GetType()).To(Equal(clusterv3.Cluster_EDS))

	cla := res[resource.EndpointType][name].(*endpointv3.ClusterLoadAssignment)
	g.Expect(cla.GetEndpoints()).To(HaveLen(1))
	g.Expect(cla.GetEndpoints()[0].GetLocality()).NotTo(BeNil(), "grpc-go rejects a locality without one")
	g.Expect(cla.GetEndpoints()[0].GetLoadBalancingWeight().GetValue()).To(BeEquivalentTo(1), "grpc-go ignores a locality without a weight")
	lbs := cla.GetEndpoints()[0].GetLbEndpoints()
	g.Expect(lbs).To(HaveLen(3), "the endpoint neither ready nor serving is left out")
	type seen struct {
		addr, identity string
		health         corev3.HealthStatus
	}
	var got []seen
	for _, lb := range lbs {
		sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
		g.Expect(sa.GetPortValue()).To(BeEquivalentTo(8080), "endpoints are reached on the target port")
		got = append(got, seen{sa.GetAddress(), lb.GetMetadata().GetFilterMetadata()[xdsnames.MetadataKey].GetFields()[xdsnames.FieldIdentity].GetStringValue(), lb.GetHealthStatus()})
	}
	g.Expect(got).To(Equal([]seen{
		{"10.0.0.1", "", corev3.HealthStatus_HEALTHY},
		{"10.0.0.2", "spiffe://cluster.local/ns/shop/sa/web", corev3.HealthStatus_HEALTHY},
		{"10.0.0.3", "spiffe://cluster.local/ns/shop/sa/web", corev3.HealthStatus_DRAINING},
	}), "sorted by address, with identities, terminating endpoints draining")
}

func TestCompileTrafficSplitAndOpaque(t *testing.T) {
	g := NewWithT(t)
	split := &meshv1.TrafficSplit{Spec: meshv1.TrafficSplitSpec{Service: "web", Backends: []meshv1.TrafficSplitBackend{
		{Service: "web-v1", Weight: 90}, {Service: "web-v2", Weight: 10}, {Service: "web-v3", Weight: 0}, {Service: "web-gone", Weight: 50},
	}, Matches: []meshv1.HTTPMatch{
		{Headers: []meshv1.HeaderMatch{{Name: "x-canary", Value: "always"}}, Backend: "web-v2"},
		{PathPrefix: "/old", Backend: "web-gone"},
	}}}
	serving := func(s string) bool { return s != "web-gone" }
	res := Compile(ServiceInput{
		Service:  service(corev1.ServicePort{Name: "http", Port: 8080}, corev1.ServicePort{Name: "db", Port: 5432}, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		Split:    split,
		Serving:  serving,
		Identity: identityOfPod,
		Opaque:   func(p int32) bool { return p == 5432 },
	})
	g.Expect(res[resource.ListenerType]).To(HaveLen(2), "UDP ports are not served")
	db := res[resource.ListenerType][xdsnames.Authority("web", "shop", 5432)].(*listenerv3.Listener)
	g.Expect(db.GetMetadata().GetFilterMetadata()[xdsnames.MetadataKey].GetFields()[xdsnames.FieldOpaque].GetBoolValue()).To(BeTrue())

	rc := res[resource.RouteType][xdsnames.Authority("web", "shop", 8080)].(*routev3.RouteConfiguration)
	routes := rc.GetVirtualHosts()[0].GetRoutes()
	g.Expect(routes).To(HaveLen(2), "the match to a backend that cannot serve is left out")
	g.Expect(routes[0].GetMatch().GetHeaders()[0].GetStringMatch().GetExact()).To(Equal("always"))
	g.Expect(routes[0].GetName()).To(Equal("match-0"), "a match route is named for metrics by its place in the split")
	g.Expect(routes[1].GetName()).To(Equal(DefaultRouteName))
	g.Expect(routes[0].GetRoute().GetCluster()).To(Equal(xdsnames.Authority("web-v2", "shop", 8080)))
	weighted := routes[1].GetRoute().GetWeightedClusters().GetClusters()
	g.Expect(weighted).To(HaveLen(2), "a zero weight backend and one that cannot serve get no share")
	g.Expect(weighted[0].GetName()).To(Equal(xdsnames.Authority("web-v1", "shop", 8080)))
	g.Expect(weighted[0].GetWeight().GetValue()).To(BeEquivalentTo(90))
	g.Expect(weighted[1].GetWeight().GetValue()).To(BeEquivalentTo(10))
	g.Expect(res[resource.EndpointType][xdsnames.Authority("web", "shop", 8080)].(*endpointv3.ClusterLoadAssignment).GetEndpoints()).To(BeEmpty())
}

func TestCompileSplitWithNoBackendServingFallsBackToTheApex(t *testing.T) {
	g := NewWithT(t)
	split := &meshv1.TrafficSplit{Spec: meshv1.TrafficSplitSpec{Service: "web", Backends: []meshv1.TrafficSplitBackend{{Service: "web-v1", Weight: 1}}}}
	res := Compile(ServiceInput{Service: service(corev1.ServicePort{Name: "http", Port: 80}), Split: split,
		Serving: func(string) bool { return false }, Identity: identityOfPod, Opaque: func(int32) bool { return false }})
	name := xdsnames.Authority("web", "shop", 80)
	rc := res[resource.RouteType][name].(*routev3.RouteConfiguration)
	g.Expect(rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster()).To(Equal(name))
}

func TestCompileExternalNameServesNothing(t *testing.T) {
	svc := service(corev1.ServicePort{Port: 80})
	svc.Spec.Type = corev1.ServiceTypeExternalName
	if res := Compile(ServiceInput{Service: svc, Identity: identityOfPod, Opaque: func(int32) bool { return false }}); len(res) != 0 {
		t.Errorf("an ExternalName Service compiled to %d types of resources", len(res))
	}
}

func TestCacheSetSendsOnlyChanges(t *testing.T) {
	g := NewWithT(t)
	c := NewCache()
	updates := map[string]int{}
	c.OnUpdate = func(typ string, changed, removed int) { updates[typ] += changed + removed }
	in := ServiceInput{Service: service(corev1.ServicePort{Name: "http", Port: 80}), Identity: identityOfPod, Opaque: func(int32) bool { return false },
		Slices: []discoveryv1.EndpointSlice{slice(8080, endpoint("10.0.0.1", "web", discoveryv1.EndpointConditions{}))}}
	g.Expect(c.Set("shop/web", Compile(in))).To(Succeed())
	g.Expect(updates).To(HaveLen(4))

	clear(updates)
	g.Expect(c.Set("shop/web", Compile(in))).To(Succeed())
	g.Expect(updates).To(BeEmpty(), "compiling the same Service again changes nothing")

	in.Slices = []discoveryv1.EndpointSlice{slice(8080, endpoint("10.0.0.2", "web", discoveryv1.EndpointConditions{}))}
	g.Expect(c.Set("shop/web", Compile(in))).To(Succeed())
	g.Expect(updates).To(Equal(map[string]int{resource.EndpointType: 1}), "an endpoint change touches only the ClusterLoadAssignment")

	g.Expect(c.Set("shop/web", nil)).To(Succeed())
	for _, typ := range resourceTypes {
		g.Expect(c.Len(typ)).To(BeZero(), "a deleted Service's %s is removed", typ)
	}
}

func TestCompileMirroredServiceAndExportedFlag(t *testing.T) {
	gateway := discoveryv1.Endpoint{Addresses: []string{"192.0.2.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		TargetRef: &corev1.ObjectReference{Kind: "Link", Namespace: "skein-system", Name: "east"}}
	gatewayID := "spiffe://east.example/ns/skein-system/sa/skein-gateway"
	identity := func(ep discoveryv1.Endpoint) string {
		if ep.TargetRef.Kind == "Link" {
			return gatewayID
		}
		return identityOfPod(ep)
	}
	fields := func(res Resources, typ, name string) map[string]any {
		var md *corev3.Metadata
		switch r := res[typ][name].(type) {
		case *listenerv3.Listener:
			md = r.GetMetadata()
		case *endpointv3.ClusterLoadAssignment:
			lbs := r.GetEndpoints()
			if len(lbs) == 0 || len(lbs[0].GetLbEndpoints()) == 0 {
				return nil
			}
			md = lbs[0].GetLbEndpoints()[0].GetMetadata()
		}
		return md.GetFilterMetadata()[xdsnames.MetadataKey].AsMap()
	}
	tests := []struct {
		name       string
		labels     map[string]string
		annotation string
		// wantTarget is the gateway endpoint's target; "" means the endpoint is left out.
		wantTarget   string
		wantExported bool
	}{
		{name: "mirrored", annotation: "web.shop", wantTarget: "web.shop.svc.cluster.local:8080"},
		{name: "mirrored from another namespace", annotation: "web.orders", wantTarget: "web.orders.svc.cluster.local:8080"},
		{name: "no annotation", annotation: ""},
		{name: "annotation without a namespace", annotation: "web"},
		{name: "annotation with too many parts", annotation: "web.shop.svc"},
		{name: "exported", labels: map[string]string{meshv1.ExportedLabel: "true"}, annotation: "web.shop", wantTarget: "web.shop.svc.cluster.local:8080", wantExported: true},
		{name: "exported but mirrored itself", labels: map[string]string{meshv1.ExportedLabel: "true", meshv1.MirroredFromLabel: "east"}, annotation: "web.shop", wantTarget: "web.shop.svc.cluster.local:8080"},
		{name: "export label not true", labels: map[string]string{meshv1.ExportedLabel: "yes"}, annotation: "web.shop", wantTarget: "web.shop.svc.cluster.local:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			svc := service(corev1.ServicePort{Name: "http", Port: 8080})
			svc.Name, svc.Labels = "web-east", tt.labels
			if tt.annotation != "" {
				svc.Annotations = map[string]string{meshv1.RemoteServiceAnnotation: tt.annotation}
			}
			res := Compile(ServiceInput{Service: svc, Slices: []discoveryv1.EndpointSlice{slice(4143, gateway)}, Identity: identity,
				Opaque: func(int32) bool { return false }})
			name := xdsnames.Authority("web-east", "shop", 8080)
			g.Expect(fields(res, resource.ListenerType, name)).To(HaveKeyWithValue(xdsnames.FieldExported, tt.wantExported))
			ep := fields(res, resource.EndpointType, name)
			if tt.wantTarget == "" {
				g.Expect(ep).To(BeNil(), "a gateway endpoint with no target is left out")
				return
			}
			g.Expect(ep).To(HaveKeyWithValue(xdsnames.FieldGatewayTarget, tt.wantTarget))
			g.Expect(ep).To(HaveKeyWithValue(xdsnames.FieldIdentity, gatewayID))
		})
	}
	// A pod's endpoint never carries a target, even in a Service with the annotation.
	g := NewWithT(t)
	svc := service(corev1.ServicePort{Name: "http", Port: 80})
	svc.Annotations = map[string]string{meshv1.RemoteServiceAnnotation: "web.shop"}
	res := Compile(ServiceInput{Service: svc, Slices: []discoveryv1.EndpointSlice{slice(8080, endpoint("10.0.0.2", "web", discoveryv1.EndpointConditions{}))},
		Identity: identity, Opaque: func(int32) bool { return false }})
	g.Expect(fields(res, resource.EndpointType, xdsnames.Authority("web", "shop", 80))).NotTo(HaveKey(xdsnames.FieldGatewayTarget))
}
