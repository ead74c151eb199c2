package xdsclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/internal/testpki"
)

const (
	serverName = "skein-xds.skein-system.svc"
	webID      = "spiffe://cluster.local/ns/default/sa/web"
	canary     = "web-canary.default.svc.cluster.local:80"
	split      = "web-split.default.svc.cluster.local:80"
)

// controlPlane is a go-control-plane ADS server over mTLS on loopback, one LinearCache per type.
type controlPlane struct {
	addr   string
	caches map[string]*cache.LinearCache
	srv    *grpc.Server

	mu       sync.Mutex
	requests []*discoveryv3.DeltaDiscoveryRequest
}

// startControlPlane serves resources on addr ("" for any port) with cert.
func startControlPlane(t *testing.T, pki *testpki.PKI, cert *tls.Certificate, addr string, resources ...proto.Message) *controlPlane {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: lis.Addr().String(), caches: map[string]*cache.LinearCache{}}
	caches := map[string]cache.Cache{}
	for typ := range labels {
		cp.caches[typ] = cache.NewLinearCache(typ)
		caches[typ] = cp.caches[typ]
	}
	cp.set(t, resources...)
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        caches,
	}
	ctx, cancel := context.WithCancel(context.Background())
	xds := serverv3.NewServer(ctx, mux, serverv3.CallbackFuncs{StreamDeltaRequestFunc: func(_ int64, req *discoveryv3.DeltaDiscoveryRequest) error {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		cp.requests = append(cp.requests, proto.Clone(req).(*discoveryv3.DeltaDiscoveryRequest))
		return nil
	}})
	cp.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Roots,
	})))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.srv, xds)
	go func() { _ = cp.srv.Serve(lis) }()
	t.Cleanup(func() {
		cp.srv.Stop()
		cancel()
	})
	return cp
}

// set puts resources in the caches, by the name the protocol gives each.
func (cp *controlPlane) set(t *testing.T, resources ...proto.Message) {
	t.Helper()
	byType := map[string]map[string]types.Resource{}
	for _, r := range resources {
		typ := "type.googleapis.com/" + string(r.ProtoReflect().Descriptor().FullName())
		name := cache.GetResourceName(r)
		if byType[typ] == nil {
			byType[typ] = map[string]types.Resource{}
		}
		byType[typ][name] = r
	}
	for typ, res := range byType {
		if err := cp.caches[typ].UpdateResources(res, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// nacks are the error details of the requests the server has seen.
func (cp *controlPlane) nacks() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []string
	for _, r := range cp.requests {
		if r.GetErrorDetail() != nil {
			out = append(out, r.GetErrorDetail().GetMessage())
		}
	}
	return out
}

// seen are the requests of a type the server has seen.
func (cp *controlPlane) seen(typ string) []*discoveryv3.DeltaDiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []*discoveryv3.DeltaDiscoveryRequest
	for _, r := range cp.requests {
		if r.GetTypeUrl() == typ {
			out = append(out, r)
		}
	}
	return out
}

// logBuffer collects a client's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startClient runs a client of the control planes at addrs until the test ends.
func startClient(t *testing.T, pki *testpki.PKI, cfg Config) (*Client, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cert := pki.Workload(t, webID)
	cfg.ServerName, cfg.Roots = serverName, pki.Roots
	cfg.Certificate = func() *tls.Certificate { return cert }
	cfg.NodeID = "web-0.default"
	cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.MaxBackoff = time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c, logs
}

// webService is one service with its four resources, its endpoints at the addresses.
func webService(name string, endpoints ...string) []proto.Message {
	var eps []ep
	for _, a := range endpoints {
		eps = append(eps, ep{addr: a, identity: webID})
	}
	return []proto.Message{newListener(name, false), newRoute(name, []string{name}), newCluster(name), newAssignment(name, eps...)}
}

func addrs(eps []destinations.Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Addr.String())
	}
	return out
}

// endpointsOf are the endpoint addresses of the service the client knows by authority.
func endpointsOf(c *Client, authority string) []string {
	if svc := c.Snapshot().ByAuthority(authority); svc != nil {
		return addrs(svc.Endpoints)
	}
	return nil
}

func TestSnapshot(t *testing.T) {
	g := NewWithT(t)
	pki := testpki.New(t)
	aliases := []string{"web.default.svc:80", "web.default:80", "web.default.svc.cluster.local", "web.default.svc", "web.default"}
	cp := startControlPlane(t, pki, pki.Server(t, serverName), "",
		newListener(web, true, "10.96.0.10:80", "[fd00::10]:80"),
		newRoute(web, append([]string{web}, aliases...)),
		newCluster(web),
		newAssignment(web,
			ep{addr: "10.0.0.1:8080", identity: webID},
			ep{addr: "10.0.0.2:8080"},
			ep{addr: "10.0.0.3:8080", identity: webID, health: corev3.HealthStatus_DRAINING}),
		newListener(split, false, "10.96.0.11:80"),
		newRoute(split, []string{split}, weight(web, 90), weight(canary, 10)),
		newCluster(split), newAssignment(split),
		newCluster(canary), newAssignment(canary, ep{addr: "10.0.1.1:8080", identity: webID}),
	)
	c, _ := startClient(t, pki, Config{Addrs: []string{cp.addr}})
	g.Eventually(c.Ready()).WithTimeout(10 * time.Second).Should(BeClosed())

	svc := c.Snapshot().ByAddr(netip.MustParseAddrPort("[fd00::10]:80"))
	g.Expect(svc).NotTo(BeNil())
	g.Expect(svc.Authority).To(Equal(web))
	g.Expect(svc.Addrs).To(Equal([]netip.AddrPort{netip.MustParseAddrPort("10.96.0.10:80"), netip.MustParseAddrPort("[fd00::10]:80")}))
	g.Expect(svc.Opaque).To(BeTrue())
	g.Expect(svc.Aliases).To(Equal(aliases))
	g.Expect(svc.Endpoints).To(Equal([]destinations.Endpoint{
		{Addr: netip.MustParseAddrPort("10.0.0.1:8080"), Identity: webID},
		{Addr: netip.MustParseAddrPort("10.0.0.2:8080")},
	}), "the draining endpoint is left out")
	if known, ok := c.Snapshot().Endpoint(netip.MustParseAddrPort("10.0.0.3:8080")); !ok || known.Identity != webID {
		t.Errorf("the draining endpoint is not known by address with its identity: %v %v", known, ok)
	}
	g.Expect(c.Snapshot().ByAuthority("web.default:80")).To(BeIdenticalTo(svc))

	s := c.Snapshot().ByAuthority(split)
	g.Expect(s).NotTo(BeNil())
	g.Expect(s.Backends).To(HaveLen(2))
	g.Expect(s.Backends[0].Name).To(Equal(web))
	g.Expect(s.Backends[0].Weight).To(Equal(uint32(90)))
	g.Expect(addrs(s.Backends[0].Endpoints)).To(Equal([]string{"10.0.0.1:8080", "10.0.0.2:8080"}))
	g.Expect(s.Backends[1].Name).To(Equal(canary))
	g.Expect(s.Backends[1].Weight).To(Equal(uint32(10)))
	g.Expect(s.Backends[1].Endpoints).To(Equal([]destinations.Endpoint{{Addr: netip.MustParseAddrPort("10.0.1.1:8080"), Identity: webID}}))
	g.Expect(c.Connected()).To(BeTrue())

	// An endpoint change reaches the snapshot.
	if err := cp.caches[endpointType].UpdateResource(web, newAssignment(web, ep{addr: "10.0.0.4:8080", identity: webID})); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func() []string { return endpointsOf(c, web) }).WithTimeout(10 * time.Second).Should(Equal([]string{"10.0.0.4:8080"}))

	// A service that goes away leaves the snapshot.
	if err := cp.caches[clusterType].DeleteResource(canary); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func() []destinations.Endpoint { return c.Snapshot().ByAuthority(split).Backends[1].Endpoints }).WithTimeout(10 * time.Second).Should(BeEmpty())
	g.Expect(cp.nacks()).To(BeEmpty())
}

func TestRejectsWhatItCannotApply(t *testing.T) {
	g := NewWithT(t)
	pki := testpki.New(t)
	cp := startControlPlane(t, pki, pki.Server(t, serverName), "", append(webService(web, "10.0.0.1:8080"), webService(canary, "10.0.1.1:8080")...)...)
	c, _ := startClient(t, pki, Config{Addrs: []string{cp.addr}})
	g.Eventually(c.Ready()).WithTimeout(10 * time.Second).Should(BeClosed())

	// A listener whose api_listener is not an HTTP connection manager.
	bad := newListener(web, true)
	bad.ApiListener.ApiListener = mustAny(newCluster(web))
	cp.set(t, bad)
	g.Eventually(cp.nacks).WithTimeout(10 * time.Second).Should(ContainElement(And(ContainSubstring(`Listener "`+web+`"`), ContainSubstring("not an HTTP connection manager"))))
	g.Expect(c.Snapshot().ByAuthority(web).Opaque).To(BeFalse(), "the last good listener stays in force")

	// An endpoint with a pipe address, in the same response as a good change to another service:
	// the bad assignment is rejected, the good one applies.
	pipe := newAssignment(web, ep{addr: "10.0.0.9:8080"})
	pipe.Endpoints[0].LbEndpoints[0].GetEndpoint().Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/web.sock"}}}
	if err := cp.caches[endpointType].UpdateResources(map[string]types.Resource{
		web: pipe, canary: newAssignment(canary, ep{addr: "10.0.1.2:8080", identity: webID}),
	}, nil); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func() []string { return endpointsOf(c, canary) }).WithTimeout(10 * time.Second).Should(Equal([]string{"10.0.1.2:8080"}))
	g.Eventually(cp.nacks).Should(ContainElement(And(ContainSubstring(`ClusterLoadAssignment "`+web+`"`), ContainSubstring("not a socket address"))))
	g.Expect(endpointsOf(c, web)).To(Equal([]string{"10.0.0.1:8080"}), "the last good endpoints stay in force")
}

func TestReconnects(t *testing.T) {
	g := NewWithT(t)
	pki := testpki.New(t)
	cert := pki.Server(t, serverName)
	cp := startControlPlane(t, pki, cert, "", webService(web, "10.0.0.1:8080")...)
	c, _ := startClient(t, pki, Config{Addrs: []string{cp.addr}})
	g.Eventually(c.Ready()).WithTimeout(10 * time.Second).Should(BeClosed())
	g.Expect(c.Waiting()).To(BeEmpty())
	g.Expect(endpointsOf(c, web)).To(Equal([]string{"10.0.0.1:8080"}))

	cp.srv.Stop()
	g.Eventually(c.Connected).WithTimeout(10 * time.Second).Should(BeFalse())
	g.Expect(endpointsOf(c, web)).To(Equal([]string{"10.0.0.1:8080"}), "the last good snapshot stays in force")

	// The same listener and cluster, new endpoints: the client says which versions it holds, so only
	// the assignment that changed comes again.
	cp2 := startControlPlane(t, pki, cert, cp.addr, webService(web, "10.0.0.2:8080")...)
	g.Eventually(func() []string { return endpointsOf(c, web) }).WithTimeout(10 * time.Second).Should(Equal([]string{"10.0.0.2:8080"}))
	g.Expect(cp2.seen(listenerType)[0].GetInitialResourceVersions()).To(HaveKey(web))
	g.Expect(cp2.seen(endpointType)[0].GetInitialResourceVersions()).To(HaveKey(web))
	g.Expect(c.Connected()).To(BeTrue())
}

func TestFailsOver(t *testing.T) {
	g := NewWithT(t)
	pki := testpki.New(t)
	cert := pki.Server(t, serverName)
	a := startControlPlane(t, pki, cert, "", webService(web, "10.0.0.1:8080")...)
	b := startControlPlane(t, pki, cert, "", webService(web, "10.0.0.2:8080")...)
	c, _ := startClient(t, pki, Config{Addrs: []string{a.addr, b.addr}})
	g.Eventually(c.Ready()).WithTimeout(10 * time.Second).Should(BeClosed())

	on, other, want := a, b, "10.0.0.2:8080"
	if endpointsOf(c, web)[0] == "10.0.0.2:8080" {
		on, other, want = b, a, "10.0.0.1:8080"
	}
	g.Expect(other.seen(listenerType)).To(BeEmpty())
	on.srv.Stop()
	g.Eventually(func() []string { return endpointsOf(c, web) }).WithTimeout(10 * time.Second).Should(Equal([]string{want}))
}

func TestRefusesAnUnverifiedServer(t *testing.T) {
	tests := []struct {
		name   string
		server func(pki *testpki.PKI) *tls.Certificate
		want   string
	}{
		{name: "another trust anchor", server: func(*testpki.PKI) *tls.Certificate { return testpki.New(t).Server(t, serverName) }, want: "unknown authority"},
		{name: "another name", server: func(pki *testpki.PKI) *tls.Certificate { return pki.Server(t, "evil.skein-system.svc") }, want: "certificate is valid for evil.skein-system.svc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			pki := testpki.New(t)
			cp := startControlPlane(t, pki, tt.server(pki), "", webService(web, "10.0.0.1:8080")...)
			c, logs := startClient(t, pki, Config{Addrs: []string{cp.addr}})
			g.Eventually(logs.String).WithTimeout(10 * time.Second).Should(ContainSubstring(tt.want))
			g.Expect(c.Ready()).NotTo(BeClosed())
			// What the proxy's /ready reports while it waits.
			g.Expect(c.Waiting()).To(And(
				HavePrefix("the control plane's first listeners, routes, clusters, endpoints (the last stream failed: "+cp.addr),
				ContainSubstring(tt.want)))
			g.Expect(cp.seen(listenerType)).To(BeEmpty())
		})
	}
}
