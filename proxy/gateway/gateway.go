// Package gateway is skein-proxy's multicluster gateway mode: it lets workloads of linked clusters
// reach this cluster's exported Services (labelled mesh.skein.dev/exported=true), and nothing else.
//
// The wire form. A client proxy reaches a gateway endpoint (one whose xDS metadata has a
// gatewayTarget) on the gateway port, 4143, with mTLS, checking the gateway's SPIFFE ID as for any
// peer, and ALPN h2 (HTTP, multiplexed) or skein.opaque (a TCP stream). Right after the handshake,
// before the HTTP/2 preface or the stream's first byte, it sends a preamble (package preamble): the
// byte 1, the target's length as one byte, and the target, the authority
// "<service>.<namespace>.svc.cluster.local:<port>" of the service in the gateway's cluster. So one
// connection serves one target, and a client keeps its gateway connections apart by target.
//
// The gateway refuses, by closing the connection, a peer without a certificate from the trust
// bundle, a preamble it cannot read, and a target that is not an exported service it knows; each is
// logged at debug level and counted in gateway_refused_total. Otherwise it forwards through the
// proxy's outbound machinery: HTTP per request, balanced over the service's endpoints, and an
// opaque stream spliced to one endpoint, with mTLS to their proxies.
//
// What the workload sees. Its proxy verifies the gateway as the client, so Skein-Client-Id is the
// gateway's identity. For HTTP, the gateway adds Skein-Forwarded-Client-Id, the identity its own
// peer verifiably presented (the calling workload in the linked cluster); only gateways set that
// header, every other proxy removes it. An opaque stream carries no such identity.
package gateway

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/skeinmesh/skein/proxy/accept"
	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/gateway/preamble"
	"github.com/skeinmesh/skein/proxy/inbound"
	"github.com/skeinmesh/skein/proxy/metrics"
	"github.com/skeinmesh/skein/proxy/mtls"
	"github.com/skeinmesh/skein/proxy/outbound"
)

// Gateway serves the gateway port.
type Gateway struct {
	// TLS is the server side of mTLS: mtls.Server with both ALPN protocols.
	TLS *tls.Config
	// Outbound forwards; its Destinations say which services are exported.
	Outbound *outbound.Proxy
	Log      *slog.Logger
	Metrics  *metrics.Proxy
	// HandshakeTimeout bounds the handshake and the preamble.
	HandshakeTimeout time.Duration

	conns accept.HTTP2
}

// Serve accepts connections until the listener is closed.
func (g *Gateway) Serve(lis net.Listener) error {
	if g.HandshakeTimeout == 0 {
		g.HandshakeTimeout = 10 * time.Second
	}
	return g.conns.Serve(lis, g.handle)
}

// Drain tells HTTP/2 connections to go away once their requests are done, and waits for the
// connections under way to finish, up to ctx. The listener must be closed first.
func (g *Gateway) Drain(ctx context.Context) { g.conns.Drain(ctx) }

func (g *Gateway) handle(conn net.Conn) {
	defer conn.Close()
	tc := tls.Server(conn, g.TLS)
	_ = conn.SetDeadline(time.Now().Add(g.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		g.refuse(metrics.RefusedTLS, "Refusing a connection that failed mTLS", conn, "err", err)
		return
	}
	target, err := preamble.Read(tc)
	if err != nil {
		g.refuse(metrics.RefusedPreamble, "Refusing a connection without a valid target", conn, "err", err)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	state := tc.ConnectionState()
	peer := mtls.PeerIdentity(state)
	if !exported(g.Outbound.Destinations.Snapshot(), target) {
		g.refuse(metrics.RefusedNotExported, "Refusing a target that is no exported service", conn, "target", target, "client", peer)
		return
	}
	service := metrics.ServiceName(target)
	switch state.NegotiatedProtocol {
	case mtls.ProtoHTTP2:
		counted, done := g.Metrics.TCPOpen(metrics.Gateway, true, service, tc)
		defer done()
		forward := g.Outbound.Forward(target, peer)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(inbound.OrigProtoHeader) != "" {
				// HTTP/1 at the caller: the proxy behind the gateway is to say so again.
				r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
			}
			forward.ServeHTTP(w, r)
		})
		g.conns.ServeConn(counted, g.Metrics.HTTP(metrics.Gateway, metrics.Labels{TLS: true, ClientID: peer}, h))
	case mtls.ProtoOpaque:
		counted, done := g.Metrics.TCPOpen(metrics.Gateway, true, service, tc)
		defer done()
		g.Outbound.ForwardOpaque(counted, target)
	default:
		g.refuse(metrics.RefusedPreamble, "Refusing a connection without ALPN h2 or skein.opaque", conn, "alpn", state.NegotiatedProtocol)
	}
}

func (g *Gateway) refuse(reason, msg string, conn net.Conn, kv ...any) {
	g.Metrics.GatewayRefused(reason)
	g.Log.Debug(msg, append([]any{"peer", conn.RemoteAddr()}, kv...)...)
}

// exported tells whether target is the authority of a service of this cluster that is exported.
func exported(snap *destinations.Snapshot, target string) bool {
	svc := snap.ByAuthority(target)
	return svc != nil && svc.Exported && svc.Authority == target
}
