package outbound_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/skeinmesh/skein/proxy/h2peer"
	"github.com/skeinmesh/skein/proxy/outbound"
)

// BenchmarkRequest sends GETs one at a time from a Go client to a net/http backend, directly and
// through two proxies speaking h2peer's HTTP/2 over mTLS, in one process: what the proxies add is
// the difference, in time and, with -benchmem, in allocations (a profile of a run says where).
// test/bench/proxy measures the proxies as the mesh runs them, against a reference.
func BenchmarkRequest(b *testing.B) {
	l := listen(b)
	go (&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the backend\n")
	})}).Serve(l)
	app := addrOf(l)
	out, _, _ := pairFull(b, app, func(*outbound.Proxy) {}, h2peer.ALPN)
	for _, path := range []struct{ name, addr string }{{"direct", app.String()}, {"two-proxies", out}} {
		b.Run(path.name, func(b *testing.B) {
			tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", path.addr)
			}}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			b.ReportAllocs()
			for b.Loop() {
				res, err := c.Get("http://server.shop.svc.cluster.local/bench")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}
