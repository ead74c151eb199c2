package outbound

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/proxy/destinations"
	"github.com/skeinmesh/skein/proxy/metrics"
)

// FuzzOutbound sends arbitrary bytes to the outbound port, where detection and HTTP parsing meet
// untrusted input. The proxy must not crash, and what it answers to a client detected as HTTP/1 must
// be an HTTP/1.x response or nothing.
func FuzzOutbound(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"\x16\x03\x01\x00\x05hello",
	} {
		f.Add([]byte(s))
	}
	// Every endpoint is a closed port: requests that parse are answered 502 by the proxy itself.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	dead := netip.MustParseAddrPort(closed.Addr().String())
	closed.Close()
	snap, _ := destinations.NewSnapshot(nil)
	p := &Proxy{
		Destinations: destinations.NewStatic(snap), OriginalDst: func(net.Conn) (netip.AddrPort, error) { return dead, nil },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics.New(prometheus.NewRegistry(), 10),
		DetectTimeout: 50 * time.Millisecond, HeaderTimeout: 200 * time.Millisecond, ConnectTimeout: 200 * time.Millisecond,
	}
	p.init()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer lis.Close()
	go p.Serve(lis)

	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write(in)
		_ = conn.(*net.TCPConn).CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		out, _ := io.ReadAll(conn)
		if bytes.HasPrefix(in, []byte("GET ")) && len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.")) {
			t.Fatalf("answered %q to %q", out, in)
		}
	})
}
