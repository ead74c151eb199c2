package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// harness serves a loopback listener with a Server whose fallback is net/http's server, counting
// the connections handed to it.
type harness struct {
	t         *testing.T
	srv       *Server
	addr      string
	fallbacks atomic.Int32
}

func serve(t *testing.T, h http.Handler) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{t: t, addr: lis.Addr().String()}
	hs.srv = &Server{HeaderTimeout: 300 * time.Millisecond, Fallback: func(conn net.Conn, h http.Handler) {
		hs.fallbacks.Add(1)
		ServeOne(&http.Server{Handler: h, ReadHeaderTimeout: time.Second}, conn)
	}}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				hs.srv.ServeConn(conn, h)
			}()
		}
	}()
	return hs
}

// get is a GET of / by a Go client, whose connection is closed at the test's end.
func (hs *harness) get() (*http.Response, error) {
	tr := &http.Transport{}
	hs.t.Cleanup(tr.CloseIdleConnections)
	return (&http.Client{Transport: tr}).Get("http://" + hs.addr + "/")
}

// client is a raw connection to the harness, to send exact bytes and read responses one by one.
type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (hs *harness) dial() *client {
	conn, err := net.Dial("tcp", hs.addr)
	if err != nil {
		hs.t.Fatal(err)
	}
	hs.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: hs.t, conn: conn, br: bufio.NewReader(conn)}
}

// roundTrip sends raw and reads one response to a request of method; the body is read whole.
func (c *client) roundTrip(method, raw string) (*http.Response, string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatal(err)
	}
	res, err := http.ReadResponse(c.br, &http.Request{Method: method})
	for err == nil && res.StatusCode == http.StatusContinue {
		res, err = http.ReadResponse(c.br, &http.Request{Method: method})
	}
	if err != nil {
		c.t.Fatalf("reading the response to %q: %v", raw, err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("reading the body of the response to %q: %v", raw, err)
	}
	return res, string(b)
}

// closed says whether the server closed the connection (it reads EOF).
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.br.ReadByte()
	return err == io.EOF
}

func TestAPlainRequestIsParsedAsNetHTTPWould(t *testing.T) {
	var got *http.Request
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		io.WriteString(w, "hello")
	}))
	c := hs.dial()
	res, body := c.roundTrip("GET", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: svc.ns:8080\r\nuser-agent: t\r\nX-Multi: 1\r\nx-multi:  2 \r\n\r\n")
	if res.StatusCode != 200 || body != "hello" || res.ContentLength != 5 || res.Header.Get("Date") == "" {
		t.Fatalf("response %d %q, Content-Length %d, Date %q; want 200 \"hello\", 5 and a date", res.StatusCode, body, res.ContentLength, res.Header.Get("Date"))
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"method", got.Method, "GET"},
		{"path", got.URL.Path, "/a/b"},
		{"query", got.URL.RawQuery, "x=1&y=2"},
		{"request URI", got.RequestURI, "/a/b?x=1&y=2"},
		{"host", got.Host, "svc.ns:8080"},
		{"Host in the header map", got.Header.Get("Host"), ""},
		{"canonicalized name", got.Header.Get("User-Agent"), "t"},
		{"repeated field", strings.Join(got.Header["X-Multi"], ","), "1,2"},
		{"proto", got.Proto, "HTTP/1.1"},
		{"remote address", got.RemoteAddr, c.conn.LocalAddr().String()},
		{"body", got.Body, http.NoBody},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	// The same connection serves the next request, escapes and all.
	_, body = c.roundTrip("GET", "GET /%7Ea%20b HTTP/1.1\r\nHost: x\r\n\r\n")
	if want, _ := url.ParseRequestURI("/%7Ea%20b"); body != "hello" || *got.URL != *want {
		t.Fatalf("second request: body %q, URL %#v; want hello, %#v", body, got.URL, want)
	}
	if n := hs.fallbacks.Load(); n != 0 {
		t.Fatalf("%d connections went to net/http", n)
	}
}

func TestBodiesAreReadOrSkippedAndTheConnectionGoesOn(t *testing.T) {
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				t.Errorf("reading the body: %v", err)
			}
			fmt.Fprintf(w, "%d:%s", r.ContentLength, b)
			return
		}
		io.WriteString(w, "ignored the body")
	}))
	c := hs.dial()
	if _, body := c.roundTrip("POST", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"); body != "5:abcde" {
		t.Fatalf("echo answered %q", body)
	}
	if _, body := c.roundTrip("POST", "POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"); body != "ignored the body" {
		t.Fatalf("skip answered %q", body)
	}
	// The unread body was skipped: this is read as the next request, not as "xyz...".
	if _, body := c.roundTrip("POST", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"); body != "2:ok" {
		t.Fatalf("echo after a skipped body answered %q", body)
	}
}

func TestAResponseOfUnknownLengthIsChunkedWithItsTrailers(t *testing.T) {
	big := strings.Repeat("z", 3*bufSize)
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Announced")
		io.WriteString(w, big)
		w.Header().Set("X-Announced", "a")
		w.Header().Set(http.TrailerPrefix+"X-Unannounced", "u")
	}))
	res, err := hs.get()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || string(body) != big {
		t.Fatalf("body of %d bytes (%v), want %d", len(body), err, len(big))
	}
	if len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("Transfer-Encoding %v, want chunked", res.TransferEncoding)
	}
	if a, u := res.Trailer.Get("X-Announced"), res.Trailer.Get("X-Unannounced"); a != "a" || u != "u" {
		t.Fatalf("trailers %v, want X-Announced: a and X-Unannounced: u", res.Trailer)
	}
}

func TestFlushSendsTheHeaderAtOnce(t *testing.T) {
	release := make(chan struct{})
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Stream", "yes")
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second")
	}))
	res, err := hs.get()
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Header.Get("X-Stream") != "yes" || string(body) != "first second" {
		t.Fatalf("got %v %q", res.Header, body)
	}
}

func TestHeadAndNoContentHaveNoBody(t *testing.T) {
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(http.StatusNoContent)
			if _, err := io.WriteString(w, "no"); !errors.Is(err, http.ErrBodyNotAllowed) {
				t.Errorf("a 204's body write returned %v", err)
			}
			return
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}))
	c := hs.dial()
	res, body := c.roundTrip("HEAD", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res.ContentLength != 5 || body != "" {
		t.Fatalf("HEAD: Content-Length %d, body %q", res.ContentLength, body)
	}
	res, body = c.roundTrip("GET", "GET /204 HTTP/1.1\r\nHost: x\r\n\r\n")
	if res.StatusCode != 204 || body != "" {
		t.Fatalf("204: %d %q", res.StatusCode, body)
	}
	if _, body = c.roundTrip("GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); body != "hello" {
		t.Fatalf("after HEAD and 204 the connection answered %q", body)
	}
}

func TestAnAbortedResponseIsCutShort(t *testing.T) {
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		panic(http.ErrAbortHandler)
	}))
	c := hs.dial()
	io.WriteString(c.conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(res.Body); err != io.ErrUnexpectedEOF || string(b) != "partial" {
		t.Fatalf("read %q, %v; want \"partial\" and an unexpected EOF", b, err)
	}
}

func TestConnectionCloseIsHonoured(t *testing.T) {
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "bye") }))
	c := hs.dial()
	res, _ := c.roundTrip("GET", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !res.Close || !c.closed() {
		t.Fatalf("Connection: close in the response %v; connection closed %v", res.Close, c.closed())
	}
}

// Everything this package does not take on reaches net/http with the bytes already read, and is
// answered there as before: the request itself, or net/http's error.
func TestWhatItDoesNotTakeOnGoesToNetHTTP(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.URL.Path, b)
	})
	for _, tt := range []struct {
		name, raw  string
		wantStatus int
		wantBody   string
	}{
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: x\r\n\r\n", 200, "HTTP/1.0 /old "},
		{"chunked body", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, "HTTP/1.1 /c abc"},
		{"Expect", "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 200, "HTTP/1.1 /e hi"},
		{"header over the buffer", "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", bufSize) + "\r\n\r\n", 200, "HTTP/1.1 /big "},
		{"absolute form", "GET http://x/abs HTTP/1.1\r\nHost: x\r\n\r\n", 200, "HTTP/1.1 /abs "},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, ""},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, ""},
		{"bad request line", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, ""},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, ""},
		{"CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, ""},
		{"space in a name", "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400, ""},
		{"two lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, ""},
		{"bad length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hs := serve(t, echo)
			c := hs.dial()
			method, _, _ := strings.Cut(tt.raw, " ")
			res, body := c.roundTrip(method, tt.raw)
			if res.StatusCode != tt.wantStatus || tt.wantBody != "" && body != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", res.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if n := hs.fallbacks.Load(); n != 1 {
				t.Fatalf("%d connections went to net/http, want 1", n)
			}
		})
	}
}

func TestASlowHeaderClosesTheConnection(t *testing.T) {
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := hs.dial()
	io.WriteString(c.conn, "GET / HTTP/1.1\r\nHo")
	start := time.Now()
	if !c.closed() {
		t.Fatal("a header that never ends kept its connection open")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before the header timeout", d)
	}
}

func TestShutdownClosesIdleConnectionsAndEndsBusyOnesAfterTheirResponse(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	idle, busy := hs.dial(), hs.dial()
	idle.roundTrip("GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	io.WriteString(busy.conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	hs.srv.Shutdown()
	if !idle.closed() {
		t.Fatal("Shutdown left an idle connection open")
	}
	close(release)
	res, err := http.ReadResponse(busy.br, nil)
	if err != nil {
		t.Fatalf("the request under way got no response: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	if string(body) != "done" || !res.Close || !busy.closed() {
		t.Fatalf("busy connection: body %q, Connection: close %v", body, res.Close)
	}
}

func TestCanonical(t *testing.T) {
	for name, want := range map[string]bool{"Host": true, "Content-Length": true, "X-B3-Traceid": true, "host": false, "Content-length": false, "X-ID": false, "Www-Authenticate": true} {
		if got := canonical(name); got != want {
			t.Errorf("canonical(%q) = %v, want %v", name, got, want)
		}
	}
}

// A client that leaves while its request runs cancels the request's context (after watchAfter):
// whether or not the request had a body, once that is read.
func TestAClientLeavingCancelsItsRequest(t *testing.T) {
	for _, raw := range []string{
		"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
	} {
		cancelled := make(chan error, 1)
		hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			select {
			case <-r.Context().Done():
				cancelled <- r.Context().Err()
			case <-time.After(5 * time.Second):
				cancelled <- nil
			}
		}))
		c := hs.dial()
		io.WriteString(c.conn, raw)
		time.Sleep(20 * time.Millisecond)
		c.conn.Close()
		if err := <-cancelled; err == nil {
			t.Fatalf("%q: the client left, and its request ran on for 5 s", raw)
		}
	}
}

// A request sent while another runs, after the watch has started reading, is served after it,
// whole: the byte the watch read is kept.
func TestARequestSentDuringALongOneIsServedAfterIt(t *testing.T) {
	hs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(watchAfter + 200*time.Millisecond)
		}
		io.WriteString(w, r.URL.Path)
	}))
	c := hs.dial()
	io.WriteString(c.conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(watchAfter + 50*time.Millisecond)
	io.WriteString(c.conn, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"/slow", "/next"} {
		res, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		if string(body) != want {
			t.Fatalf("answered %q, want %q", body, want)
		}
	}
}
