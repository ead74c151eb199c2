// Package xdsclient is skein-proxy's side of the control plane: it follows the Aggregated Discovery
// Service with the incremental (delta) protocol, and turns the Listeners, RouteConfigurations,
// Clusters and ClusterLoadAssignments it is sent into the destinations the outbound proxy reads.
//
// What it cannot apply it rejects one resource at a time: the response is NACKed with a message that
// names each rejected resource and its problem, each rejected resource keeps its last good version
// (or stays absent), and the rest of the response applies. A bad endpoint in one service then does
// not freeze the configuration of all the others.
package xdsclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skeinmesh/skein/proxy/destinations"
)

// Config says where the control plane is, how to trust it and how to name the proxy to it.
type Config struct {
	// Addrs are the control plane's host:port addresses. The client starts with a random one, so
	// that proxies spread over the replicas, and moves to the next when a stream ends.
	Addrs []string
	// ServerName is the DNS name the control plane's certificate must carry.
	ServerName string
	// Roots are the trust anchors the control plane's certificate must chain to.
	Roots *x509.CertPool
	// Certificate is the proxy's workload certificate, its client certificate; the client does not
	// dial while there is none.
	Certificate func() *tls.Certificate
	// NodeID names the proxy to the control plane: xdsnames.NodeID(pod, namespace).
	NodeID string
	// Log hears what is applied and rejected; slog.Default() when nil.
	Log *slog.Logger
	// Metrics, when set, gets xds_updates_total and xds_connected.
	Metrics prometheus.Registerer

	// MinBackoff and MaxBackoff bound the wait between streams; 100ms and 10s when zero.
	MinBackoff, MaxBackoff time.Duration
}

// Client keeps a destinations snapshot current from the control plane. It is a destinations.Source.
type Client struct {
	cfg     Config
	node    *node
	creds   credentials.TransportCredentials
	updates *prometheus.CounterVec

	current   atomic.Pointer[destinations.Snapshot]
	ready     chan struct{}
	connected atomic.Bool
	// lastErr is why the last stream ended, for Waiting.
	lastErr atomic.Pointer[string]

	// mu guards what follows.
	mu sync.Mutex
	// held is what has been applied, by type URL and name.
	held map[string]map[string]resource
	// answered are the types a response has come for.
	answered  map[string]bool
	published bool
}

// resource is one applied resource: its version, to tell the server on reconnect, and what the
// proxy uses of it.
type resource struct {
	version string
	value   any
}

// resourceTypes are all subscribed to whole (wildcard): a proxy routes to any service of the mesh, so it
// wants every resource anyway, and a wildcard watch costs the control plane far less than one
// subscription per name (see make bench-xds).
var (
	resourceTypes = []string{listenerType, routeType, clusterType, endpointType}
	labels        = map[string]string{listenerType: "listener", routeType: "route", clusterType: "cluster", endpointType: "endpoint"}
)

// Keepalive pings go after this long without traffic, and a connection whose ping is not answered
// within keepaliveTimeout is closed. The control plane accepts pings 10 s apart or more.
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// New checks the configuration; the client connects when Run is called.
func New(cfg Config) (*Client, error) {
	switch {
	case len(cfg.Addrs) == 0:
		return nil, errors.New("xdsclient: no control plane address")
	case cfg.ServerName == "" || cfg.Roots == nil || cfg.Certificate == nil:
		return nil, errors.New("xdsclient: the server name, trust anchors and certificate are all needed")
	case cfg.NodeID == "":
		return nil, errors.New("xdsclient: no node ID")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	c := &Client{
		cfg:  cfg,
		node: &node{id: cfg.NodeID, cluster: "skein-proxy", userAgentName: "skein-proxy"},
		creds: credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    cfg.Roots,
			ServerName: cfg.ServerName,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert := cfg.Certificate(); cert != nil {
					return cert, nil
				}
				return nil, errors.New("no workload certificate yet")
			},
		}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xds_updates_total", Help: "xDS responses, by resource type and whether they were applied (ack) or not all (nack).",
		}, []string{"type", "result"}),
		ready:    make(chan struct{}),
		held:     map[string]map[string]resource{},
		answered: map[string]bool{},
	}
	for typ := range labels {
		c.held[typ] = map[string]resource{}
	}
	empty, _ := destinations.NewSnapshot(nil)
	c.current.Store(empty)
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(c.updates, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "xds_connected", Help: "Whether the proxy has a live stream to the control plane.",
		}, func() float64 {
			if c.connected.Load() {
				return 1
			}
			return 0
		}))
	}
	return c, nil
}

// Snapshot is the current destinations; empty until Ready.
func (c *Client) Snapshot() *destinations.Snapshot { return c.current.Load() }

// Ready is closed when the first complete snapshot is in force.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Waiting says what the client waits for before its first snapshot, or "" once Ready.
func (c *Client) Waiting() string {
	select {
	case <-c.ready:
		return ""
	default:
	}
	if c.cfg.Certificate() == nil {
		return "a workload certificate to connect with"
	}
	c.mu.Lock()
	var missing []string
	for _, typ := range resourceTypes {
		if !c.answered[typ] {
			missing = append(missing, labels[typ]+"s")
		}
	}
	c.mu.Unlock()
	why := "the control plane's first " + strings.Join(missing, ", ")
	if err := c.lastErr.Load(); err != nil {
		why += " (the last stream failed: " + *err + ")"
	}
	return why
}

// Connected tells whether a stream to the control plane is live.
func (c *Client) Connected() bool { return c.connected.Load() }

// Run follows the control plane until ctx is done. When a stream ends it waits, doubling the wait
// up to MaxBackoff with jitter, and opens one to the next address; the last good snapshot stays in
// force meanwhile.
func (c *Client) Run(ctx context.Context) error {
	next := rand.IntN(len(c.cfg.Addrs))
	failures := 0
	for {
		if err := c.waitForCertificate(ctx); err != nil {
			return err
		}
		addr := c.cfg.Addrs[next]
		c.cfg.Log.Debug("Opening a stream to the control plane", "addr", addr)
		heard, err := c.stream(ctx, addr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if heard {
			failures = 0
		}
		if err != nil {
			msg := fmt.Sprintf("%s: %v", addr, err)
			c.lastErr.Store(&msg)
		}
		failures++
		wait := backoff(failures, c.cfg.MinBackoff, c.cfg.MaxBackoff)
		c.cfg.Log.Warn("Lost the control plane; keeping the last good destinations", "addr", addr, "err", err, "retry_in", wait)
		next = (next + 1) % len(c.cfg.Addrs)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (c *Client) waitForCertificate(ctx context.Context) error {
	t := time.NewTicker(c.cfg.MinBackoff)
	defer t.Stop()
	for c.cfg.Certificate() == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// stream runs one ADS stream to addr until it fails; heard tells whether the server answered.
func (c *Client) stream(ctx context.Context, addr string) (heard bool, err error) {
	// Keepalive pings find a connection that died without a word (a control plane node gone, a
	// reset that never reached us) on a stream that would otherwise wait for a response forever.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c.creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := conn.NewStream(ctx, &adsStream, adsMethod, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return false, err
	}
	recv := func() (*deltaResponse, error) {
		var b []byte
		if err := s.RecvMsg(&b); err != nil {
			return nil, err
		}
		return unmarshalResponse(b)
	}
	send := func(reqs []*deltaRequest) error {
		for _, req := range reqs {
			if err := s.SendMsg(req); err != nil {
				if errors.Is(err, io.EOF) { // the stream's status says why
					_, err = recv()
				}
				return err
			}
		}
		return nil
	}
	c.mu.Lock()
	reqs := c.initialRequests()
	c.mu.Unlock()
	if err := send(reqs); err != nil {
		return false, err
	}
	for {
		resp, err := recv()
		if err != nil {
			return heard, err
		}
		if !heard {
			heard = true
			c.connected.Store(true)
			defer c.connected.Store(false)
			c.cfg.Log.Info("Following the control plane", "addr", addr)
		}
		if err := send(c.handle(resp)); err != nil {
			return heard, err
		}
	}
}

// initialRequests open a stream: everything is subscribed to again, with the versions held, so
// that the server sends only what changed.
func (c *Client) initialRequests() []*deltaRequest {
	var reqs []*deltaRequest
	for _, typ := range resourceTypes {
		req := &deltaRequest{typeURL: typ, subscribe: []string{"*"}, initialResourceVersions: map[string]string{}}
		for name, r := range c.held[typ] {
			req.initialResourceVersions[name] = r.version
		}
		reqs = append(reqs, req)
	}
	reqs[0].node = c.node
	return reqs
}

// The Aggregated Discovery Service's delta method, called without its generated client.
const adsMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

var adsStream = grpc.StreamDesc{StreamName: "DeltaAggregatedResources", ServerStreams: true, ClientStreams: true}

// handle applies a response, publishes the result, and returns the requests to send: the ACK or
// NACK, then any change of subscriptions.
func (c *Client) handle(resp *deltaResponse) []*deltaRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	typ := resp.typeURL
	ack := &deltaRequest{typeURL: typ, responseNonce: resp.nonce}
	decode, ok := decoders[typ]
	if !ok {
		ack.errorDetail = &status{code: int32(codes.InvalidArgument), message: "type " + typ + " was not asked for"}
		return []*deltaRequest{ack}
	}
	var problems []string
	for _, r := range resp.resources {
		name := r.name
		var res *anypb.Any
		if r.resource != nil {
			res = &anypb.Any{TypeUrl: r.resource.typeURL, Value: r.resource.value}
		}
		v, err := decode(name, res)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %q: %v", typ[strings.LastIndexByte(typ, '.')+1:], name, err))
			continue
		}
		c.held[typ][name] = resource{version: r.version, value: v}
	}
	for _, name := range resp.removed {
		delete(c.held[typ], name)
	}
	c.answered[typ] = true

	result := "ack"
	if len(problems) > 0 {
		result = "nack"
		ack.errorDetail = &status{code: int32(codes.InvalidArgument), message: strings.Join(problems, "; ")}
		c.cfg.Log.Warn("Rejected xDS resources; their last good versions stay in force", "type", labels[typ], "problems", ack.errorDetail.message)
	}
	c.cfg.Log.Debug("Applied xDS response", "type", labels[typ], "resources", len(resp.resources)-len(problems), "removed", len(resp.removed))
	c.updates.WithLabelValues(labels[typ], result).Inc()
	c.publish()
	return []*deltaRequest{ack}
}

// publish puts a snapshot of what is held in force. The first one waits until the server has
// answered for every type, so that the proxy does not start with services whose endpoints are on
// the way.
func (c *Client) publish() {
	if !c.published {
		for _, typ := range resourceTypes {
			if !c.answered[typ] {
				return
			}
		}
		c.published = true
		defer close(c.ready)
	}
	snap, err := snapshot(c.held)
	if err != nil {
		c.cfg.Log.Error("Keeping the last good destinations", "err", err)
		return
	}
	c.current.Store(snap)
}

// backoff doubles from lo up to hi with jitter, so that proxies that lost the same server do not
// all come back at once.
func backoff(failures int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}
