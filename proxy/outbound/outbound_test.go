package outbound_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/inbound"
	"github.com/skeinmesh/skein/proxy/internal/testpki"
	"github.com/skeinmesh/skein/proxy/metrics"
	"github.com/skeinmesh/skein/proxy/mtls"
	"github.com/skeinmesh/skein/proxy/outbound"
)

const (
	clientID = "spiffe://cluster.local/ns/shop/sa/client"
	serverID = "spiffe://cluster.local/ns/shop/sa/server"
)

func listen(t testing.TB) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func addrOf(l net.Listener) netip.AddrPort { return netip.MustParseAddrPort(l.Addr().String()) }

// pair runs a client-side and a server-side proxy on loopback, wired as iptables would wire them:
// the outbound proxy takes every connection as bound for the server's endpoint, and the inbound
// proxy takes every connection as bound for the application's port.
func pair(t *testing.T, app netip.AddrPort) (outboundAddr string, inboundAddr netip.AddrPort) {
	out, in, _ := pairWithMetrics(t, app)
	return out, in
}

func pairWithMetrics(t *testing.T, app netip.AddrPort) (outboundAddr string, inboundAddr netip.AddrPort, reg *prometheus.Registry) {
	return pairFull(t, app, func(*outbound.Proxy) {})
}

func pairOpts(t *testing.T, app netip.AddrPort, opts func(*outbound.Proxy)) (outboundAddr string, inboundAddr netip.AddrPort) {
	out, in, _ := pairFull(t, app, opts)
	return out, in
}

func pairFull(t testing.TB, app netip.AddrPort, opts func(*outbound.Proxy), alpn ...string) (outboundAddr string, inboundAddr netip.AddrPort, reg *prometheus.Registry) {
	reg = prometheus.NewRegistry()
	m := metrics.New(reg, 100)
	pki := testpki.New(t)
	clientCert, serverCert := pki.Workload(t, clientID), pki.Workload(t, serverID)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	inLis := listen(t)
	in := &inbound.Proxy{
		TLS:         mtls.Server(func() *tls.Certificate { return serverCert }, pki.Roots, append(alpn, mtls.ProtoHTTP2, mtls.ProtoOpaque)...),
		OriginalDst: func(net.Conn) (netip.AddrPort, error) { return app, nil },
		Port:        4143, AppHost: "127.0.0.1", Log: log, Metrics: m,
	}
	go in.Serve(inLis)

	endpoint := addrOf(inLis)
	snap, err := destinations.NewSnapshot([]destinations.Service{{
		Authority: "server.shop.svc.cluster.local:80",
		Endpoints: []destinations.Endpoint{{Addr: endpoint, Identity: serverID}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	outLis := listen(t)
	out := &outbound.Proxy{
		Destinations: destinations.NewStatic(snap), Certs: func() *tls.Certificate { return clientCert }, Roots: pki.Roots,
		OriginalDst: func(net.Conn) (netip.AddrPort, error) { return endpoint, nil }, Log: log, DetectTimeout: 200 * time.Millisecond,
		HeaderTimeout: 500 * time.Millisecond,
		Metrics:       m,
	}
	opts(out)
	go out.Serve(outLis)
	return outLis.Addr().String(), endpoint, reg
}

// echoApp answers HTTP with what it saw: protocol, host, path and the client's identity.
func echoApp(t *testing.T) netip.AddrPort {
	l := listen(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s from %s", r.Proto, r.Host, r.URL.Path, r.Header.Get(inbound.ClientIDHeader))
	})
	go (&http.Server{Handler: h2cHandler(h)}).Serve(l)
	return addrOf(l)
}

func TestHTTP1ThroughTwoProxies(t *testing.T) {
	out, _, reg := pairWithMetrics(t, echoApp(t))
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", out)
	}}}
	for i := range 3 {
		resp, err := c.Get("http://server.shop.svc.cluster.local/hello")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "HTTP/1.1 server.shop.svc.cluster.local /hello from " + clientID
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
	}
	expected := `
# HELP request_total HTTP requests received.
# TYPE request_total counter
request_total{authority="server.shop.svc.cluster.local",client_id="` + clientID + `",direction="inbound",dst_backend="",dst_service="",route="",server_id="",tls="true"} 3
request_total{authority="server.shop.svc.cluster.local",client_id="",direction="outbound",dst_backend="",dst_service="",route="",server_id="` + serverID + `",tls="true"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "request_total"); err != nil {
		t.Error(err)
	}
}

func TestHTTP2PriorKnowledgeThroughTwoProxies(t *testing.T) {
	out, _ := pair(t, echoApp(t))
	c := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", out)
	}}}
	resp, err := c.Get("http://server.shop.svc.cluster.local/grpc.Service/Method")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := "HTTP/2.0 server.shop.svc.cluster.local /grpc.Service/Method from " + clientID
	if string(body) != want {
		t.Fatalf("got %q, want %q", body, want)
	}
}

func TestOpaqueTCPThroughTwoProxies(t *testing.T) {
	l := listen(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // a server that speaks first, then echoes lines
				defer c.Close()
				fmt.Fprintln(c, "hello from the server")
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintln(c, "echo:", s.Text())
				}
			}()
		}
	}()
	out, _ := pair(t, addrOf(l))
	conn, err := net.Dial("tcp", out)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil || line != "hello from the server\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	fmt.Fprintln(conn, "ping")
	if line, _ = r.ReadString('\n'); line != "echo: ping\n" {
		t.Fatalf("got %q", line)
	}
}

// TestOpaquePortsSkipDetection: on a port configured opaque, a server that speaks first is heard at
// once rather than after the detection timeout.
func TestOpaquePortsSkipDetection(t *testing.T) {
	l := listen(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "220 smtp.example ready")
			c.Close()
		}
	}()
	for _, tt := range []struct {
		opaque  bool
		atLeast time.Duration
	}{{false, 200 * time.Millisecond}, {true, 0}} {
		out, _ := pairOpts(t, addrOf(l), func(p *outbound.Proxy) {
			p.DetectTimeout = 200 * time.Millisecond
			if tt.opaque {
				// The port the client dialled, which here is the server proxy's.
				dst, _ := p.OriginalDst(nil)
				p.OpaquePorts = map[uint16]bool{dst.Port(): true}
			}
		})
		start := time.Now()
		conn, err := net.Dial("tcp", out)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		waited := time.Since(start)
		if err != nil || line != "220 smtp.example ready\n" {
			t.Fatalf("opaque=%v: %q, %v", tt.opaque, line, err)
		}
		if waited < tt.atLeast || tt.opaque && waited >= 200*time.Millisecond {
			t.Errorf("opaque=%v: the greeting took %s", tt.opaque, waited)
		}
	}
}

// TestResponseTimeout: an endpoint that does not answer in time gets the client a 504, while one
// that answers at once may stream its body for longer than the timeout.
func TestResponseTimeout(t *testing.T) {
	l := listen(t)
	go (&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stuck" {
			time.Sleep(2 * time.Second)
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "streamed")
	})}).Serve(l)
	out, _ := pairOpts(t, addrOf(l), func(p *outbound.Proxy) { p.ResponseTimeout = 300 * time.Millisecond })
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", out)
	}}}
	start := time.Now()
	resp, err := c.Get("http://server.shop.svc.cluster.local/stuck")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("a stuck endpoint: %d after %s, want 504 after about 300ms", resp.StatusCode, time.Since(start))
	}
	resp, err = c.Get("http://server.shop.svc.cluster.local/streams")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "streamed" {
		t.Errorf("a streaming endpoint: %d %q", resp.StatusCode, body)
	}
}

func TestInboundRefusesAPlainClient(t *testing.T) {
	_, inboundAddr := pair(t, echoApp(t))
	conn, err := net.Dial("tcp", inboundAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	if strings.Contains(string(b), "HTTP/1.1 200") {
		t.Fatalf("a plain client got an answer: %q", b)
	}
}

// TestAPeerGoneSilentIsLeft: when the connection to a peer proxy stops carrying anything, without
// being closed (the peer's node lost, the network cut), the outbound proxy's ping finds it dead
// and the request waiting on it, safe to retry, goes again on a new connection.
func TestAPeerGoneSilentIsLeft(t *testing.T) {
	var freeze func()
	out, _ := pairOpts(t, echoApp(t), func(p *outbound.Proxy) {
		p.PeerPingAfter, p.PeerPingTimeout = 200*time.Millisecond, 200*time.Millisecond
		// A relay between the proxies, whose connections can be made to go quiet.
		peer := p.Destinations.Snapshot().ByAuthority("server.shop.svc.cluster.local:80").Endpoints[0]
		var relay netip.AddrPort
		relay, freeze = relayTo(t, peer.Addr.String())
		snap, err := destinations.NewSnapshot([]destinations.Service{{
			Authority: "server.shop.svc.cluster.local:80",
			Endpoints: []destinations.Endpoint{{Addr: relay, Identity: serverID}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		p.Destinations = destinations.NewStatic(snap)
		p.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return relay, nil }
	})
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", out)
	}}}
	get := func() (string, error) {
		resp, err := c.Get("http://server.shop.svc.cluster.local/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b), err
	}
	want := "200 HTTP/1.1 server.shop.svc.cluster.local / from " + clientID
	if got, err := get(); got != want || err != nil {
		t.Fatalf("before: %q, %v", got, err)
	}
	freeze()
	start := time.Now()
	if got, err := get(); got != want || err != nil {
		t.Fatalf("with the connection gone quiet: %q, %v; want %q", got, err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the dead connection took %s to be left", d)
	}
}

// relayTo forwards connections to addr; freeze makes the connections it carries then go quiet:
// they hold what they read, without closing. Later connections carry on.
func relayTo(t *testing.T, addr string) (relay netip.AddrPort, freeze func()) {
	l := listen(t)
	var mu sync.Mutex
	var frozen []*atomic.Bool
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			t.Cleanup(func() { in.Close(); up.Close() })
			quiet := &atomic.Bool{}
			mu.Lock()
			frozen = append(frozen, quiet)
			mu.Unlock()
			pump := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						return
					}
					if quiet.Load() {
						return // hold it: nothing more goes through, and nothing is closed
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
			}
			go pump(up, in)
			go pump(in, up)
		}
	}()
	return addrOf(l), func() {
		mu.Lock()
		defer mu.Unlock()
		for _, q := range frozen {
			q.Store(true)
		}
	}
}
