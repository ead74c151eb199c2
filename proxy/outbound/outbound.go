// Package outbound is the proxy's client side: iptables redirects the application's outgoing
// connections to the outbound port; the proxy reads where each was going, detects its protocol, and
// carries it to an endpoint, with mTLS when the endpoint has a proxy. HTTP is routed per request.
package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/proxy/accept"
	"github.com/skeinmesh/skein/proxy/coalesce"
	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/detect"
	"github.com/skeinmesh/skein/proxy/forward"
	"github.com/skeinmesh/skein/proxy/gateway/preamble"
	"github.com/skeinmesh/skein/proxy/h2peer"
	"github.com/skeinmesh/skein/proxy/http1"
	"github.com/skeinmesh/skein/proxy/inbound"
	"github.com/skeinmesh/skein/proxy/metrics"
	"github.com/skeinmesh/skein/proxy/mtls"
	"github.com/skeinmesh/skein/proxy/rawtcp"
	"github.com/skeinmesh/skein/proxy/splice"
)

// maxHeaderBytes bounds an HTTP/1 request's headers; larger ones are answered 431.
const maxHeaderBytes = 64 << 10

// Proxy serves the outbound port.
type Proxy struct {
	Destinations destinations.Source
	Certs        mtls.Certificates
	Roots        *x509.CertPool
	OriginalDst  func(net.Conn) (netip.AddrPort, error)
	Log          *slog.Logger
	Metrics      *metrics.Proxy

	// DetectTimeout is how long a client may stay silent before its connection is taken as opaque.
	DetectTimeout time.Duration
	// OpaquePorts are destination ports carried as TCP without detection: protocols where the
	// server speaks first would otherwise wait DetectTimeout on every connection.
	OpaquePorts map[uint16]bool
	// ConnectTimeout bounds connecting to an endpoint.
	ConnectTimeout time.Duration
	// HeaderTimeout bounds reading an HTTP/1 request's headers, against slow clients.
	HeaderTimeout time.Duration
	// ResponseTimeout, when set, bounds the wait for a response's headers from an endpoint; the
	// body may stream for as long as it takes. A request that times out is answered 504.
	ResponseTimeout time.Duration
	// PeerPingAfter and PeerPingTimeout check a quiet HTTP/2 connection to a peer proxy: after
	// PeerPingAfter without a frame from the peer it is pinged, and closed if no answer comes within
	// PeerPingTimeout, so that a peer gone without a word (its node lost, the network cut) does not
	// keep requests waiting on a dead connection. 30 s and 10 s when zero.
	PeerPingAfter, PeerPingTimeout time.Duration

	once       sync.Once
	h2         *http2.Server
	base       *http.Server // tracks the HTTP/2 client connections, for Drain
	h1         *http1.Server
	http1      map[*http.Server]struct{} // net/http's, serving what h1 does not
	mu         sync.Mutex
	transports map[transportKey]http.RoundTripper
	balancer   balancer
	conns      accept.Loop
}

type transportKey struct {
	addr     netip.AddrPort
	identity string
	// target is the gateway target: a gateway's connections each serve one target.
	target string
	h2c    bool
}

func (p *Proxy) init() {
	p.once.Do(func() {
		p.h2 = &http2.Server{}
		p.base = &http.Server{}
		_ = http2.ConfigureServer(p.base, p.h2)
		p.http1 = map[*http.Server]struct{}{}
		p.transports = map[transportKey]http.RoundTripper{}
		if p.DetectTimeout == 0 {
			p.DetectTimeout = time.Second
		}
		if p.ConnectTimeout == 0 {
			p.ConnectTimeout = 5 * time.Second
		}
		if p.HeaderTimeout == 0 {
			p.HeaderTimeout = 10 * time.Second
		}
		if p.PeerPingAfter == 0 {
			p.PeerPingAfter = 30 * time.Second
		}
		if p.PeerPingTimeout == 0 {
			p.PeerPingTimeout = 10 * time.Second
		}
		p.h1 = &http1.Server{HeaderTimeout: p.HeaderTimeout, Fallback: p.serveHTTP1, Log: p.Log, ConnContext: func(ctx context.Context) context.Context {
			return forward.WithOwnedHeaders(metrics.WithSerialLabels(ctx))
		}}
	})
}

// Serve accepts redirected connections until the listener is closed.
func (p *Proxy) Serve(lis net.Listener) error {
	p.init()
	return p.conns.Serve(lis, p.handle)
}

// Drain lets the requests under way finish, closing each client connection once it is idle (HTTP/2
// clients are told to go away), and waits for the connections to end, up to ctx. The listener must
// be closed first.
func (p *Proxy) Drain(ctx context.Context) {
	p.init()
	p.h1.Shutdown()
	p.mu.Lock()
	servers := []*http.Server{p.base}
	for s := range p.http1 {
		servers = append(servers, s)
	}
	p.mu.Unlock()
	for _, s := range servers {
		go s.Shutdown(ctx)
	}
	p.conns.Wait(ctx)
}

func (p *Proxy) handle(conn net.Conn) {
	defer conn.Close()
	dst, err := p.OriginalDst(conn)
	if err != nil {
		p.Log.Info("Dropping a connection with no original destination", "peer", conn.RemoteAddr(), "err", err)
		return
	}
	snap := p.Destinations.Snapshot()
	svc := snap.ByAddr(dst)
	var dstService string
	if svc != nil {
		dstService = metrics.ServiceName(svc.Authority)
	}
	conn, done := p.Metrics.TCPOpen(metrics.Outbound, false, dstService, conn)
	defer done()
	if p.OpaquePorts[dst.Port()] || svc != nil && svc.Opaque {
		p.opaque(conn, dst, "", snap)
		return
	}
	proto, conn, err := detect.Detect(conn, p.DetectTimeout)
	if err != nil && proto == detect.Opaque {
		return
	}
	switch proto {
	case detect.HTTP1:
		p.h1.ServeConn(conn, p.Metrics.HTTP(metrics.Outbound, metrics.Labels{}, p.router(dst, "", "")))
	case detect.HTTP2:
		p.h2.ServeConn(conn, &http2.ServeConnOpts{BaseConfig: p.base, Handler: p.Metrics.HTTP(metrics.Outbound, metrics.Labels{}, p.router(dst, "", ""))})
	default:
		p.opaque(conn, dst, "", snap)
	}
}

// serveHTTP1 serves a connection with net/http, from the first request that package http1 does
// not take on.
func (p *Proxy) serveHTTP1(conn net.Conn, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: p.HeaderTimeout, MaxHeaderBytes: maxHeaderBytes}
	p.mu.Lock()
	p.http1[srv] = struct{}{}
	p.mu.Unlock()
	http1.ServeOne(srv, conn)
	p.mu.Lock()
	delete(p.http1, srv)
	p.mu.Unlock()
}

// ForwardOpaque carries a TCP stream to one endpoint of the service with this authority, as for a
// redirected connection to it. The multicluster gateway forwards with it.
func (p *Proxy) ForwardOpaque(conn net.Conn, authority string) {
	p.init()
	p.opaque(conn, netip.AddrPort{}, authority, p.Destinations.Snapshot())
}

// Forward routes each request it serves to the service with this authority, whatever the request's
// Host, as for a request to it from the application, telling the endpoint in
// inbound.ForwardedClientIDHeader that forwardedFor made it. The multicluster gateway forwards with it.
func (p *Proxy) Forward(authority, forwardedFor string) http.Handler {
	p.init()
	return p.router(netip.AddrPort{}, authority, forwardedFor)
}

// maxAttempts bounds the endpoints tried for one connection or request.
const maxAttempts = 3

// opaque carries a TCP stream to one endpoint, trying another when one cannot be reached.
func (p *Proxy) opaque(conn net.Conn, dst netip.AddrPort, authority string, snap *destinations.Snapshot) {
	eps := p.endpoints(dst, authority, nil, snap).Endpoints
	avoid := map[netip.AddrPort]bool{}
	for range maxAttempts {
		ep := p.balancer.pick(eps, avoid)
		up, err := p.dial(context.Background(), ep, mtls.ProtoOpaque)
		if err == nil {
			splice.Both(conn, up)
			return
		}
		p.Log.Info("Endpoint unreachable", "endpoint", ep.Addr, "err", err)
		avoid[ep.Addr] = true
	}
}

// dial connects to an endpoint: mTLS when it has an identity, plain TCP otherwise. A linked
// cluster's gateway is then told the service the connection is for.
func (p *Proxy) dial(ctx context.Context, ep destinations.Endpoint, alpn ...string) (net.Conn, error) {
	if p.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.ConnectTimeout)
		defer cancel()
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", ep.Addr.String())
	if err != nil {
		return nil, err
	}
	raw = rawtcp.Wrap(raw)
	if ep.Identity == "" {
		return raw, nil
	}
	tc := tls.Client(raw, mtls.Client(p.Certs, p.Roots, ep.Identity, alpn...))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	conn := net.Conn(tc)
	if ep.GatewayTarget == "" {
		return conn, nil
	}
	if err := preamble.Write(conn, ep.GatewayTarget); err != nil {
		conn.Close()
		return nil, fmt.Errorf("gateway %s: %w", ep.Addr, err)
	}
	return conn, nil
}

// endpoints are the candidates for traffic to dst (and, for an HTTP request, authority): the
// service's endpoints, or the original destination itself when it is no known service. The choice
// also names the service, route and backend, for metrics.
func (p *Proxy) endpoints(dst netip.AddrPort, authority string, req *http.Request, snap *destinations.Snapshot) choice {
	svc := snap.ByAuthority(authority)
	if svc == nil {
		svc = snap.ByAddr(dst)
	}
	var c choice
	if svc != nil {
		c.service = svc.Authority
		if req != nil {
			c.Choice = svc.Route(req.URL.Path, req.Header, rand.Float64())
		} else {
			c.Choice = destinations.Choice{Route: destinations.DefaultRoute, Backend: svc.Authority, Endpoints: svc.Pick(rand.Float64())}
		}
		if len(c.Endpoints) > 0 {
			return c
		}
	}
	if ep, ok := snap.Endpoint(dst); ok {
		c.Endpoints = []destinations.Endpoint{ep}
		return c
	}
	c.Endpoints = []destinations.Endpoint{{Addr: dst}}
	return c
}

// choice is where traffic goes: the service addressed ("" when none is known) and the choice made
// among its routes and backends.
type choice struct {
	service string
	destinations.Choice
}

// label fills in a request's metric labels from the choice and the endpoint tried.
func (c *choice) label(l *metrics.Labels, ep destinations.Endpoint) {
	if l == nil {
		return
	}
	if c.service != "" {
		l.DstService, l.DstBackend, l.Route = metrics.ServiceName(c.service), metrics.ServiceName(c.Backend), c.Route
	}
	l.ServerID, l.TLS = ep.Identity, ep.Identity != ""
}

// router forwards the requests of one client connection, each to the endpoint the balancer picks
// among those of the service the request names or, when authority is set, of that service.
// forwardedFor, set by a gateway only, is the identity of its peer.
func (p *Proxy) router(dst netip.AddrPort, authority, forwardedFor string) http.Handler {
	return &forward.Handler{
		Narrow: func(r *http.Request) bool { return r.ProtoMajor == 1 },
		Rewrite: func(out, in *http.Request) {
			out.URL.Scheme, out.URL.Host = "http", in.Host
			out.Host = in.Host
			out.Header.Del(inbound.ClientIDHeader)
			out.Header.Del(inbound.OrigProtoHeader)
			// Only a gateway says who called it: an application cannot claim another's identity.
			out.Header.Del(inbound.ForwardedClientIDHeader)
			if forwardedFor != "" {
				out.Header.Set(inbound.ForwardedClientIDHeader, forwardedFor)
			}
		},
		Transport: &routeTransport{p: p, dst: dst, authority: authority},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.Log.Info("Request failed", "authority", r.Host, "err", err)
			status := http.StatusBadGateway
			if errors.Is(err, errResponseTimeout) {
				status = http.StatusGatewayTimeout
			}
			http.Error(w, fmt.Sprintf("skein-proxy: no endpoint of %s answered: %v", r.Host, err), status)
		},
	}
}

// routeTransport sends a request to an endpoint, and to another when the first could not take it
// and retrying is safe: the connection failed before anything was sent, or the request is
// idempotent and has no body to replay.
type routeTransport struct {
	p   *Proxy
	dst netip.AddrPort
	// authority, when set, is the service every request goes to.
	authority string
}

func (rt *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rt.p
	authority := rt.authority
	if authority == "" {
		authority = req.Host
	}
	c := p.endpoints(rt.dst, authority, req, p.Destinations.Snapshot())
	eps := c.Endpoints
	labels := metrics.LabelsFrom(req.Context())
	var avoid map[netip.AddrPort]bool // made on the first failure only: most requests need none
	var err error
	for range maxAttempts {
		ep := p.balancer.pick(eps, avoid)
		c.label(labels, ep)
		// ReverseProxy already gave us a request of our own to change.
		r := req
		r.URL.Host = ep.Addr.String()
		if ep.Identity != "" && req.ProtoMajor == 1 {
			r.Header.Set(inbound.OrigProtoHeader, "HTTP/1")
		} else {
			r.Header.Del(inbound.OrigProtoHeader)
		}
		load := p.balancer.load(ep.Addr)
		load.start()
		start := time.Now()
		var resp *http.Response
		resp, err = p.roundTrip(ep, r)
		if err == nil {
			load.done(time.Since(start), time.Now())
			return resp, nil
		}
		load.done(penaltyRTT, time.Now())
		if errors.Is(err, errResponseTimeout) {
			break
		}
		if !retryable(req, err) {
			break
		}
		p.Log.Debug("Retrying on another endpoint", "endpoint", ep.Addr, "err", err)
		if avoid == nil {
			avoid = map[netip.AddrPort]bool{}
		}
		avoid[ep.Addr] = true
	}
	return nil, err
}

var errResponseTimeout = errors.New("no response within the response timeout")

// roundTrip sends one attempt, cancelling it if ResponseTimeout passes before the response's headers.
func (p *Proxy) roundTrip(ep destinations.Endpoint, r *http.Request) (*http.Response, error) {
	t := p.transport(ep, r.ProtoMajor == 2)
	if p.ResponseTimeout == 0 {
		return t.RoundTrip(r)
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	timer := time.AfterFunc(p.ResponseTimeout, func() { cancel(errResponseTimeout) })
	resp, err := t.RoundTrip(r.WithContext(ctx))
	if !timer.Stop() || err != nil {
		if err == nil {
			resp.Body.Close() // too late: the client is answered 504
		}
		cancel(nil)
		if errors.Is(context.Cause(ctx), errResponseTimeout) {
			return nil, errResponseTimeout
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

// cancelOnClose releases a request's context once its response body is done.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func retryable(req *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // nothing was sent
	}
	if req.Context().Err() != nil {
		return false
	}
	noBody := req.Body == nil || req.Body == http.NoBody
	if errors.Is(err, h2peer.ErrUnprocessed) && noBody {
		return true // the peer refused it, or was going away before it: safe whatever the method
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return noBody
	}
	return false
}

// transport is the client for an endpoint, kept so that connections are reused: HTTP/2 over mTLS
// to a proxy (every request multiplexed on one connection), else what the client spoke.
func (p *Proxy) transport(ep destinations.Endpoint, h2 bool) http.RoundTripper {
	key := transportKey{addr: ep.Addr, identity: ep.Identity, target: ep.GatewayTarget, h2c: h2}
	if ep.Identity != "" {
		key.h2c = false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.transports[key]; ok {
		return t
	}
	// DisableCompression everywhere: Go's transports otherwise ask for gzip on a request that did
	// not, and unzip the answer, so the application would see a header its client never sent.
	var t http.RoundTripper
	switch {
	case ep.Identity != "" && ep.GatewayTarget == "":
		// A peer proxy: its inbound side speaks h2peer's HTTP/2, or, if older, plain "h2".
		t = &h2peer.Transport{
			Dial: func(ctx context.Context) (net.Conn, string, error) {
				conn, err := p.dial(ctx, ep, h2peer.ALPN, mtls.ProtoHTTP2)
				if err != nil {
					return nil, "", err
				}
				return conn, conn.(*tls.Conn).ConnectionState().NegotiatedProtocol, nil
			},
			Fallback:  &http2.Transport{AllowHTTP: true, DisableCompression: true, ReadIdleTimeout: p.PeerPingAfter, PingTimeout: p.PeerPingTimeout},
			PingAfter: p.PeerPingAfter, PingTimeout: p.PeerPingTimeout,
		}
	case ep.Identity != "":
		// A linked cluster's gateway, told the target service first.
		// The request URL says http; the connection underneath is mTLS, made by dial.
		t = &http2.Transport{AllowHTTP: true, DisableCompression: true, ReadIdleTimeout: p.PeerPingAfter, PingTimeout: p.PeerPingTimeout,
			DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
				conn, err := p.dial(ctx, ep, mtls.ProtoHTTP2)
				if err != nil {
					return nil, err
				}
				// Requests sent together, by the application's connections, share a write.
				return coalesce.New(conn), nil
			}}
	case h2:
		t = &http2.Transport{AllowHTTP: true, DisableCompression: true, DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return p.dial(ctx, ep, "")
		}}
	default:
		t = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return p.dial(ctx, ep, "") },
			MaxIdleConnsPerHost: 100, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	}
	p.transports[key] = t
	return t
}
