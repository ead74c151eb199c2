package outbound_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawExchange writes raw bytes to the proxy and returns what comes back before it closes or 3s pass.
func rawExchange(t *testing.T, addr, raw string) string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(conn)
	return string(b)
}

// healthy checks that the proxy still serves a well-formed request.
func healthy(t *testing.T, addr string) {
	t.Helper()
	got := rawExchange(t, addr, "GET /ok HTTP/1.1\r\nHost: server.shop.svc.cluster.local\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("the proxy stopped serving others: %q", got)
	}
}

func TestMalformedHTTP1GetsAClearAnswer(t *testing.T) {
	out, _ := pair(t, echoApp(t))
	tests := []struct {
		name, raw, want string
	}{
		{"a bad request line", "GET /\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"a malformed version", "GET / HTTP/9.9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"oversized headers", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", "HTTP/1.1 431"},
		{"a NUL in a header value", "GET / HTTP/1.1\r\nHost: x\r\nX-Evil: a\x00b\r\n\r\n", "HTTP/1.1 400"},
		{"a bare CR in a header value", "GET / HTTP/1.1\r\nHost: x\r\nX-Evil: a\rInjected: b\r\n\r\n", "HTTP/1.1 400"},
		{"a header without a colon", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", "HTTP/1.1 400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawExchange(t, out, tt.raw); !strings.HasPrefix(got, tt.want) {
				t.Errorf("answered %.80q, want %q", got, tt.want)
			}
			healthy(t, out)
		})
	}
}

func TestSlowlorisIsCutOff(t *testing.T) {
	out, _ := pair(t, echoApp(t))
	conn, err := net.Dial("tcp", out)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the end of the headers
	healthy(t, out)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("the slow client was not cut off: %v", err)
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Errorf("cut off after %s", waited)
	}
}

// TestHTTP2RapidResetKeepsServing opens and cancels streams as fast as a client can (CVE-2023-44487):
// the proxy keeps serving others and its memory stays bounded.
func TestHTTP2RapidResetKeepsServing(t *testing.T) {
	out, _ := pair(t, echoApp(t))
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	conn, err := net.Dial("tcp", out)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bw := bufio.NewWriter(conn)
	io.WriteString(bw, http2.ClientPreface)
	fr := http2.NewFramer(bw, conn)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "server.shop.svc.cluster.local"}, {":path", "/reset"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	go io.Copy(io.Discard, conn) // the proxy's answers
	const streams = 20000
	for i := uint32(0); i < streams; i++ {
		id := 2*i + 1
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			break // the proxy may close a connection that abuses it
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	bw.Flush()

	healthy(t, out)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB after %d reset streams", grew>>20, streams)
	}
}
