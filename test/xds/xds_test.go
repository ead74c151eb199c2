package xds_test

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/internal/xds"
	"github.com/skeinmesh/skein/internal/xdsnames"
	"github.com/skeinmesh/skein/test/framework"
)

const ns = "shop"

func id(sa string) spiffe.ID {
	return spiffe.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
}

// meshedPod creates a pod with the proxy container, as the injector would leave it.
func meshedPod(name, sa string) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{
			{Name: "app", Image: "app"}, {Name: meshv1.ProxyContainerName, Image: "skein-proxy"},
		}},
	}
	Expect(k8s.Create(ctx, pod)).To(Succeed())
}

func endpoints(pods ...string) []discoveryv1.Endpoint {
	var eps []discoveryv1.Endpoint
	for i, p := range pods {
		eps = append(eps, discoveryv1.Endpoint{
			Addresses: []string{"10.1.0." + string(rune('1'+i))},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p},
		})
	}
	return eps
}

// deltaStream is a delta ADS client that sees every response.
type deltaStream struct {
	stream    discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node      *corev3.Node
	responses chan *discovery.DeltaDiscoveryResponse
	err       chan error
}

func openDelta(who spiffe.ID, node string) *deltaStream {
	s, err := dial(who).DeltaAggregatedResources(ctx)
	Expect(err).NotTo(HaveOccurred())
	d := &deltaStream{stream: s, node: &corev3.Node{Id: node}, responses: make(chan *discovery.DeltaDiscoveryResponse, 64), err: make(chan error, 1)}
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				d.err <- err
				return
			}
			d.responses <- r
		}
	}()
	DeferCleanup(s.CloseSend)
	return d
}

func (d *deltaStream) subscribe(typ string, names ...string) {
	Expect(d.stream.Send(&discovery.DeltaDiscoveryRequest{Node: d.node, TypeUrl: typ, ResourceNamesSubscribe: names})).To(Succeed())
}

// next waits for the next response of typ, ACKing (or NACKing, with a reason) it.
func (d *deltaStream) next(typ string, nack ...string) *discovery.DeltaDiscoveryResponse {
	GinkgoHelper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-d.responses:
			req := &discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce}
			if len(nack) > 0 && r.TypeUrl == typ {
				req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: nack[0]}
			}
			Expect(d.stream.Send(req)).To(Succeed())
			if r.TypeUrl == typ {
				return r
			}
		case err := <-d.err:
			Fail("the stream ended: " + err.Error())
		case <-timeout:
			Fail("no " + typ + " response within 10s")
		}
	}
}

// quiet asserts that no response comes for a while.
func (d *deltaStream) quiet(within time.Duration) {
	GinkgoHelper()
	select {
	case r := <-d.responses:
		Fail(fmt.Sprintf("unexpected %s response with %d resources", r.TypeUrl, len(r.Resources)))
	case <-time.After(within):
	}
}

func resources[T proto.Message](r *discovery.DeltaDiscoveryResponse, into func() T) map[string]T {
	out := map[string]T{}
	for _, res := range r.Resources {
		m := into()
		Expect(res.Resource.UnmarshalTo(m)).To(Succeed())
		out[res.Name] = m
	}
	return out
}

var _ = Describe("Configuration push", Ordered, func() {
	authority := xdsnames.Authority("web", ns, 80)
	var svc *corev1.Service
	var slice *discoveryv1.EndpointSlice

	BeforeAll(func() {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		for _, p := range []struct{ name, sa string }{{"client-1", "client"}, {"web-1", "web"}, {"web-2", "web"}, {"web-3", "web"}} {
			meshedPod(p.name, p.sa)
		}
		svc = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intOrString(8080)}}},
		}
		Expect(k8s.Create(ctx, svc)).To(Succeed())
		slice = &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
			Endpoints:   endpoints("web-1", "web-2"),
		}
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		// Clients connect once the Service is compiled with its endpoints, so that their first
		// responses are what is asserted.
		Eventually(func() int {
			cla, _ := cp.XDS.Cache.Get(resource.EndpointType, authority).(*endpointv3.ClusterLoadAssignment)
			n := 0
			for _, loc := range cla.GetEndpoints() {
				n += len(loc.GetLbEndpoints())
			}
			return n
		}, 10*time.Second, 50*time.Millisecond).Should(Equal(2))
	})

	It("sends a client the Service's resources, then an endpoint change alone", func() {
		d := openDelta(id("client"), xdsnames.NodeID("client-1", ns))
		d.subscribe(resource.ListenerType, "*")
		listeners := resources(d.next(resource.ListenerType), func() *listenerv3.Listener { return &listenerv3.Listener{} })
		Expect(listeners).To(HaveKey(authority))
		Expect(listeners[authority].GetAddress().GetSocketAddress().GetAddress()).To(Equal(svc.Spec.ClusterIP))

		d.subscribe(resource.RouteType, authority)
		routes := resources(d.next(resource.RouteType), func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
		Expect(routes[authority].GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster()).To(Equal(authority))

		d.subscribe(resource.EndpointType, authority)
		cla := resources(d.next(resource.EndpointType), func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} })[authority]
		Expect(cla.GetEndpoints()[0].GetLbEndpoints()).To(HaveLen(2))
		for _, lb := range cla.GetEndpoints()[0].GetLbEndpoints() {
			Expect(lb.GetMetadata().GetFilterMetadata()[xdsnames.MetadataKey].GetFields()[xdsnames.FieldIdentity].GetStringValue()).To(Equal(id("web").String()))
			Expect(lb.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()).To(BeEquivalentTo(8080))
		}
		d.quiet(300 * time.Millisecond)

		By("scaling the Service up")
		slice.Endpoints = endpoints("web-1", "web-2", "web-3")
		Expect(k8s.Update(ctx, slice)).To(Succeed())
		r := d.next(resource.EndpointType)
		Expect(r.Resources).To(HaveLen(1), "only the changed ClusterLoadAssignment is sent")
		cla = resources(r, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} })[authority]
		Expect(cla.GetEndpoints()[0].GetLbEndpoints()).To(HaveLen(3))
		d.quiet(300 * time.Millisecond)

		By("splitting the Service's traffic")
		backendSlices := map[string]*discoveryv1.EndpointSlice{}
		for i, backend := range []string{"web-v1", "web-v2"} {
			Expect(k8s.Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: backend},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
			})).To(Succeed())
			backendSlices[backend] = &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: backend, Labels: map[string]string{discoveryv1.LabelServiceName: backend}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
				Endpoints:   endpoints([]string{"web-1", "web-2"}[i]),
			}
			Expect(k8s.Create(ctx, backendSlices[backend])).To(Succeed())
		}
		Expect(k8s.Create(ctx, &meshv1.TrafficSplit{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-canary"},
			Spec:       meshv1.TrafficSplitSpec{Service: "web", Backends: []meshv1.TrafficSplitBackend{{Service: "web-v1", Weight: 95}, {Service: "web-v2", Weight: 5}}},
		})).To(Succeed())
		weighted := func(g Gomega) []*routev3.WeightedCluster_ClusterWeight {
			r := d.next(resource.RouteType)
			rc := resources(r, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })[authority]
			return rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters()
		}
		Eventually(func(g Gomega) { g.Expect(weighted(g)).To(HaveLen(2)) }).Should(Succeed())

		By("taking every endpoint away from one backend: its share goes to the other")
		backendSlices["web-v2"].Endpoints = nil
		Expect(k8s.Update(ctx, backendSlices["web-v2"])).To(Succeed())
		Eventually(func(g Gomega) {
			w := weighted(g)
			g.Expect(w).To(HaveLen(1))
			g.Expect(w[0].GetName()).To(Equal(xdsnames.Authority("web-v1", ns, 80)))
		}).Should(Succeed())
	})

	It("gives an ExternalWorkload's endpoints its identity, and follows it when it changes", func() {
		ew := &meshv1.ExternalWorkload{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-vm-1"},
			Spec: meshv1.ExternalWorkloadSpec{
				MeshTLS:     meshv1.MeshTLS{Identity: id("billing").String(), ServerName: "billing-vm-1.shop.cluster.local"},
				WorkloadIPs: []meshv1.WorkloadIP{{IP: "192.0.2.20"}},
			},
		}
		Expect(k8s.Create(ctx, ew)).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intOrString(8080)}}},
		})).To(Succeed())
		Expect(k8s.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "billing-ew", Labels: map[string]string{discoveryv1.LabelServiceName: "billing"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
			Endpoints: []discoveryv1.Endpoint{{
				Addresses: []string{"192.0.2.20"},
				TargetRef: &corev1.ObjectReference{Kind: "ExternalWorkload", Namespace: ns, Name: ew.Name},
			}},
		})).To(Succeed())
		billing := xdsnames.Authority("billing", ns, 80)
		d := openDelta(id("client"), xdsnames.NodeID("client-1", ns))
		d.subscribe(resource.EndpointType, billing)
		// The next assignment sent for billing, until it has its endpoint: the Service may be compiled
		// before its EndpointSlice is seen.
		identity := func() string {
			cla := resources(d.next(resource.EndpointType), func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} })[billing]
			for _, loc := range cla.GetEndpoints() {
				for _, lb := range loc.GetLbEndpoints() {
					return lb.GetMetadata().GetFilterMetadata()[xdsnames.MetadataKey].GetFields()[xdsnames.FieldIdentity].GetStringValue()
				}
			}
			return ""
		}
		Eventually(identity).Should(Equal(id("billing").String()))

		// A patch, as kubectl makes: the ExternalWorkload controller has added its finalizer meanwhile.
		before := ew.DeepCopy()
		ew.Spec.MeshTLS.Identity = id("billing-v2").String()
		Expect(k8s.Patch(ctx, ew, client.MergeFrom(before))).To(Succeed())
		Expect(identity()).To(Equal(id("billing-v2").String()))
	})

	It("gives a mirrored Service's gateway endpoint its Link's gateway identity and target, and follows the Link", func() {
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "links"}}))).To(Succeed())
		gatewayID := func(domain string) string { return "spiffe://" + domain + "/ns/skein-system/sa/" + meshv1.GatewayName }
		gatewaySPIFFE := func(domain string) spiffe.ID {
			return spiffe.ID{TrustDomain: domain, Namespace: framework.SystemNamespace, ServiceAccount: meshv1.GatewayName}
		}
		// The Link controller probes the gateway and withdraws its endpoint while it does not
		// answer as the Link says: a stand-in answers.
		gw, err := framework.StartGateway(cp, roots, gatewaySPIFFE("east.example"))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gw.Stop)
		link := &meshv1.Link{
			ObjectMeta: metav1.ObjectMeta{Namespace: "links", Name: "east"},
			Spec: meshv1.LinkSpec{TargetClusterName: "east", ClusterCredentialsSecret: "east-credentials",
				GatewayAddress: gw.Host, GatewayPort: gw.TLSPort, GatewayIdentity: gatewayID("east.example"),
				ProbeSpec: meshv1.ProbeSpec{Port: gw.AdminPort}},
		}
		mirrored := map[string]string{meshv1.MirroredFromLabel: "east", meshv1.LinkLabel: "links.east"}
		Expect(k8s.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-east", Labels: mirrored,
				Annotations: map[string]string{meshv1.RemoteServiceAnnotation: "web.shop"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
		})).To(Succeed())
		sliceLabels := map[string]string{discoveryv1.LabelServiceName: "web-east"}
		for k, v := range mirrored {
			sliceLabels[k] = v
		}
		Expect(k8s.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "web-east", Labels: sliceLabels},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(gw.TLSPort)}},
			Endpoints: []discoveryv1.Endpoint{{
				Addresses: []string{gw.Host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Link", Namespace: "links", Name: "east"},
			}},
		})).To(Succeed())
		// The Link last: its controller keeps the endpoints of the mirrors it finds, and would
		// otherwise race this test to create the EndpointSlice of the Service just made.
		Expect(k8s.Create(ctx, link)).To(Succeed())
		webEast := xdsnames.Authority("web-east", ns, 8080)
		d := openDelta(id("client"), xdsnames.NodeID("client-1", ns))
		d.subscribe(resource.EndpointType, webEast)
		// The identity and target of the gateway endpoint in the next assignment sent for web-east.
		gateway := func() []string {
			cla := resources(d.next(resource.EndpointType), func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} })[webEast]
			for _, loc := range cla.GetEndpoints() {
				for _, lb := range loc.GetLbEndpoints() {
					f := lb.GetMetadata().GetFilterMetadata()[xdsnames.MetadataKey].GetFields()
					return []string{lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(), f[xdsnames.FieldIdentity].GetStringValue(), f[xdsnames.FieldGatewayTarget].GetStringValue()}
				}
			}
			return nil
		}
		Eventually(gateway).Should(Equal([]string{gw.Host, gatewayID("east.example"), xdsnames.Authority("web", "shop", 8080)}))

		Expect(gw.PresentAs(cp, gatewaySPIFFE("east-2.example"))).To(Succeed())
		before := link.DeepCopy()
		link.Spec.GatewayIdentity = gatewayID("east-2.example")
		Expect(k8s.Patch(ctx, link, client.MergeFrom(before))).To(Succeed())
		// The endpoint may go while the Link's prober restarts; it comes back with the new identity.
		Eventually(gateway).Should(Equal([]string{gw.Host, gatewayID("east-2.example"), xdsnames.Authority("web", "shop", 8080)}))
	})

	It("serves state-of-the-world clients too", func() {
		s, err := dial(id("client")).StreamAggregatedResources(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(s.CloseSend)
		Expect(s.Send(&discovery.DiscoveryRequest{Node: &corev3.Node{Id: xdsnames.NodeID("client-1", ns)}, TypeUrl: resource.ClusterType})).To(Succeed())
		r, err := s.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(r.TypeUrl).To(Equal(resource.ClusterType))
		Expect(len(r.Resources)).To(BeNumerically(">=", 3), "web, web-v1 and web-v2 each have a cluster")
	})

	It("refuses a node that the certificate does not speak for", func() {
		d := openDelta(id("client"), xdsnames.NodeID("web-1", ns))
		d.subscribe(resource.ListenerType, "*")
		var err error
		Eventually(d.err, 10*time.Second).Should(Receive(&err))
		Expect(status.Code(err)).To(Equal(codes.PermissionDenied))
		Expect(err.Error()).To(ContainSubstring("runs as ServiceAccount web"))
		Expect(d.responses).To(BeEmpty(), "nothing was sent before the refusal")

		d = openDelta(id("client"), xdsnames.NodeID("nobody", ns))
		d.subscribe(resource.ListenerType, "*")
		Eventually(d.err, 10*time.Second).Should(Receive(&err))
		Expect(status.Code(err)).To(Equal(codes.PermissionDenied))
	})

	It("reports configuration a proxy rejects as an event on its pod", func() {
		d := openDelta(id("client"), xdsnames.NodeID("client-1", ns))
		d.subscribe(resource.EndpointType, authority)
		d.next(resource.EndpointType, "endpoint 10.1.0.1:8080: unsupported address")
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(k8s.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var notes []string
			for _, e := range events.Items {
				if e.Regarding.Name == "client-1" && e.Reason == xds.ReasonConfigRejected {
					notes = append(notes, e.Note)
				}
			}
			g.Expect(notes).To(ContainElement(ContainSubstring("unsupported address")))
		}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	})
})

func intOrString(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }
