// Package inbound is the proxy's server side: it terminates mTLS from peer proxies on the inbound port,
// where iptables redirects every connection to the pod, and forwards each to the application on
// localhost at the port the peer dialled. A peer without a certificate from the trust bundle is refused.
package inbound

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/proxy/accept"
	"github.com/skeinmesh/skein/proxy/forward"
	"github.com/skeinmesh/skein/proxy/h2peer"
	"github.com/skeinmesh/skein/proxy/metrics"
	"github.com/skeinmesh/skein/proxy/mtls"
	"github.com/skeinmesh/skein/proxy/splice"
)

// Headers between proxies and to the application.
const (
	// OrigProtoHeader tells the inbound proxy that a request was HTTP/1 at the client, so that it is
	// sent to the application as HTTP/1 again.
	OrigProtoHeader = "Skein-Orig-Proto"
	// ClientIDHeader tells the application the verified identity of the calling workload: behind a
	// multicluster gateway, the gateway's.
	ClientIDHeader = "Skein-Client-Id"
	// ForwardedClientIDHeader, set by a multicluster gateway, is the verified identity of the
	// workload in the linked cluster that called the gateway. Only gateways set it (every other
	// proxy removes it), so it is to be believed when ClientIDHeader is a gateway's identity.
	ForwardedClientIDHeader = "Skein-Forwarded-Client-Id"
)

// Proxy serves the inbound port.
type Proxy struct {
	TLS         *tls.Config
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// Port is the inbound port itself: a connection addressed to it is not forwarded anywhere.
	Port uint16
	// AppHost is where the application listens, normally 127.0.0.1.
	AppHost string
	Log     *slog.Logger
	Metrics *metrics.Proxy

	HandshakeTimeout time.Duration

	once  sync.Once
	app   appClient
	http1 *http.Transport
	h2c   *http2.Transport
	conns accept.HTTP2
	peers h2peer.Server // HTTP/2 from proxies of this version
}

func (p *Proxy) init() {
	p.once.Do(func() {
		// No compression: the application gets the Accept-Encoding its client sent, not gzip.
		p.app = appClient{maxIdle: 100, idleTimeout: 90 * time.Second}
		p.http1 = &http.Transport{MaxIdleConnsPerHost: 100, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
		p.h2c = &http2.Transport{AllowHTTP: true, DisableCompression: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		p.peers.Log = p.Log
		p.peers.ConnContext = forward.WithOwnedHeaders
		if p.HandshakeTimeout == 0 {
			p.HandshakeTimeout = 10 * time.Second
		}
	})
}

// Serve accepts connections until the listener is closed.
func (p *Proxy) Serve(lis net.Listener) error {
	p.init()
	return p.conns.Serve(lis, p.handle)
}

// Drain tells HTTP/2 connections to go away once their requests are done, and waits for the
// connections under way to finish, up to ctx. The listener must be closed first.
func (p *Proxy) Drain(ctx context.Context) {
	p.peers.Shutdown()
	p.conns.Drain(ctx)
}

func (p *Proxy) handle(conn net.Conn) {
	defer conn.Close()
	dst, err := p.OriginalDst(conn)
	if err != nil || dst.Port() == p.Port {
		// Not redirected by iptables: a client that dialled the inbound port itself has nowhere to go.
		p.Log.Debug("Refusing a connection with no original destination", "peer", conn.RemoteAddr(), "err", err)
		return
	}
	tc := tls.Server(conn, p.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), p.HandshakeTimeout)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.Log.Debug("Refusing a connection that failed mTLS", "peer", conn.RemoteAddr(), "err", err)
		return
	}
	state := tc.ConnectionState()
	peer := mtls.PeerIdentity(state)
	app := net.JoinHostPort(p.AppHost, strconv.Itoa(int(dst.Port())))
	counted, done := p.Metrics.TCPOpen(metrics.Inbound, true, "", tc)
	defer done()
	switch state.NegotiatedProtocol {
	case h2peer.ALPN:
		p.peers.ServeConn(counted, p.peerHandler(app, peer))
	case mtls.ProtoHTTP2:
		p.conns.ServeConn(counted, grownStack(p.peerHandler(app, peer)))
	default:
		up, err := net.DialTimeout("tcp", app, 5*time.Second)
		if err != nil {
			p.Log.Info("Application unreachable", "app", app, "err", err)
			return
		}
		splice.Both(counted, up)
	}
}

// peerHandler serves the requests of one peer proxy.
func (p *Proxy) peerHandler(app, peer string) http.Handler {
	return p.Metrics.HTTP(metrics.Inbound, metrics.Labels{TLS: true, ClientID: peer}, p.httpHandler(app, peer))
}

// grownStack runs each request's handler on a stack grown at once to the size forwarding a request
// needs. x/net/http2 runs every request on a new goroutine, whose small stack otherwise grows by
// doubling several times, each time copying the ever deeper stack of the reverse proxy and the HTTP
// client: profiles put that copying at about a tenth of the inbound proxy's CPU. (h2peer's workers
// keep their stacks from one request to the next.)
func grownStack(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		growStack(0)
		h.ServeHTTP(w, r)
	})
}

// growStack has a frame of 16 KiB, which makes the runtime grow the goroutine's stack to 32 KiB
// while it is still shallow and cheap to copy.
//
//go:noinline
func growStack(i int) byte {
	var frame [16 << 10]byte
	frame[i] = 1
	return frame[i/2]
}

// httpHandler forwards requests to the application in the protocol the client spoke.
func (p *Proxy) httpHandler(app, peer string) http.Handler {
	return &forward.Handler{
		// Requests that were HTTP/1 at the client go to the application as HTTP/1.
		Narrow: func(r *http.Request) bool { return r.Header.Get(OrigProtoHeader) != "" },
		Rewrite: func(out, in *http.Request) {
			out.URL.Scheme, out.URL.Host = "http", app
			out.Host = in.Host
			// OrigProtoHeader stays on the outgoing request until the transport has read it.
			out.Header.Set(ClientIDHeader, peer)
		},
		Transport: roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			// The request's header is the forwarder's copy, the proxy's own to change.
			http1 := req.Header.Get(OrigProtoHeader) != ""
			req.Header.Del(OrigProtoHeader)
			switch {
			case http1 && p.app.takes(req):
				return p.app.RoundTrip(req)
			case http1:
				return p.http1.RoundTrip(req)
			}
			return p.h2c.RoundTrip(req)
		}),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.Log.Info("Application request failed", "app", app, "err", err)
			http.Error(w, fmt.Sprintf("skein-proxy: the application at %s did not answer: %v", app, err), http.StatusBadGateway)
		},
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
