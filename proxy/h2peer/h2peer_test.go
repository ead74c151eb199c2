package h2peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// roundTripper is a client connection under test.
type roundTripper interface {
	RoundTrip(*http.Request) (*http.Response, error)
}

// pair is a client and a server: this package's on both sides, and each against x/net/http2's, so
// that both sides are held to what a standard peer expects.
type pair struct {
	name   string
	client func(t *testing.T, nc net.Conn) roundTripper
	server func(nc net.Conn, h http.Handler)
}

var pairs = []pair{
	{"ours-ours", ourClient, (&Server{}).ServeConn},
	{"ours-xnet", ourClient, func(nc net.Conn, h http.Handler) {
		(&http2.Server{}).ServeConn(nc, &http2.ServeConnOpts{Handler: h})
	}},
	{"xnet-ours", func(t *testing.T, nc net.Conn) roundTripper {
		cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(nc)
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}, (&Server{}).ServeConn},
}

func ourClient(t *testing.T, nc net.Conn) roundTripper {
	cc, err := NewClientConn(nc, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// listen accepts loopback TCP connections until the test ends, serving each on a goroutine of its
// own, and returns the address.
func listen(t *testing.T, serve func(nc net.Conn)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			nc, err := lis.Accept()
			if err != nil {
				return
			}
			go serve(nc)
		}
	}()
	return lis.Addr().String()
}

// connect serves h on one end of a loopback TCP connection and returns a client on the other.
func connect(t *testing.T, p pair, h http.Handler) roundTripper {
	t.Helper()
	addr := listen(t, func(nc net.Conn) { p.server(nc, h) })
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return p.client(t, nc)
}

func each(t *testing.T, test func(t *testing.T, p pair)) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) { test(t, p) })
	}
}

func request(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestRequestAndResponseArriveWhole(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Seen", fmt.Sprintf("%s %s %s %q %q", r.Method, r.Host, r.URL.RequestURI(), r.Header.Values("X-Multi"), r.Header.Get("Content-Length")))
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "short and stout")
		}))
		req := request(t, http.MethodGet, "http://web.shop:8080/a/b?c=d&e", nil)
		req.Header.Add("X-Multi", "one")
		req.Header.Add("X-Multi", "two")
		res, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusTeapot || string(got) != "short and stout" {
			t.Fatalf("got %d %q", res.StatusCode, got)
		}
		if want := `GET web.shop:8080 /a/b?c=d&e ["one" "two"] ""`; res.Header.Get("X-Seen") != want {
			t.Fatalf("server saw %q, want %q", res.Header.Get("X-Seen"), want)
		}
		if got := res.Header.Values("Set-Cookie"); len(got) != 2 {
			t.Fatalf("Set-Cookie %q", got)
		}
	})
}

// Bodies larger than every window make both sides wait for window updates.
func TestLargeBodiesBothWays(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
			w.Write(b)
			w.Write(b)
		}))
		payload := make([]byte, 3*streamWindow+12345)
		rand.Read(payload)
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := rt.RoundTrip(request(t, http.MethodPost, "http://web/upload", bytes.NewReader(payload)))
				if err != nil {
					t.Error(err)
					return
				}
				defer res.Body.Close()
				got, err := io.ReadAll(res.Body)
				if err != nil || !bytes.Equal(got, append(payload[:len(payload):len(payload)], payload...)) {
					t.Errorf("echo: %d bytes, err %v", len(got), err)
				}
				if res.Header.Get("X-Length") != fmt.Sprint(len(payload)) {
					t.Errorf("server saw content-length %s", res.Header.Get("X-Length"))
				}
			}()
		}
		wg.Wait()
	})
}

func TestTrailersBothWays(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Trailer", "X-Declared")
			w.Header().Set("X-Request-Trailer", r.Trailer.Get("X-Sent"))
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "body")
			w.Header().Set("X-Declared", "d")
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		}))
		req := request(t, http.MethodPost, "http://web/", io.NopCloser(strings.NewReader("hello")))
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Sent": nil}
		req.Body = &trailerSetter{ReadCloser: req.Body, set: func() { req.Trailer.Set("X-Sent", "s") }}
		res, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "body" || res.Trailer.Get("X-Declared") != "d" || res.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("body %q trailers %v", b, res.Trailer)
		}
		if res.Header.Get("X-Request-Trailer") != "s" {
			t.Fatalf("the server saw request trailer %q", res.Header.Get("X-Request-Trailer"))
		}
	})
}

// trailerSetter fills in a request's trailer when its body ends, as a streaming client does.
type trailerSetter struct {
	io.ReadCloser
	set func()
}

func (t *trailerSetter) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		t.set()
	}
	return n, err
}

func TestConcurrentRequestsShareTheConnection(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(10 * time.Millisecond)
			io.WriteString(w, r.URL.Path)
		}))
		var wg sync.WaitGroup
		for i := range 90 { // under x/net's client's first guess of the stream limit, 100
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := fmt.Sprintf("/%d", i)
				res, err := rt.RoundTrip(request(t, http.MethodGet, "http://web"+path, nil))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if string(b) != path {
					t.Errorf("%s got %q", path, b)
				}
			}()
		}
		wg.Wait()
	})
}

func TestCancellationReachesTheHandler(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		canceled := make(chan error, 1)
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			canceled <- r.Context().Err()
		}))
		ctx, cancel := context.WithCancel(context.Background())
		res, err := rt.RoundTrip(request(t, http.MethodGet, "http://web/", nil).WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := io.ReadAll(res.Body); err == nil {
			t.Fatal("reading the body of a canceled request succeeded")
		}
		select {
		case err := <-canceled:
			if !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's context was not canceled")
		}
		// The connection still serves.
		res, err = rt.RoundTrip(request(t, http.MethodGet, "http://web/", nil))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	})
}

func TestAPanickingHandlerResetsOnlyItsStream(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/panic" {
				panic(http.ErrAbortHandler)
			}
			io.WriteString(w, "fine")
		}))
		if res, err := rt.RoundTrip(request(t, http.MethodGet, "http://web/panic", nil)); err == nil {
			_, err = io.ReadAll(res.Body)
			if err == nil {
				t.Fatal("a panicking handler's response read whole")
			}
		}
		res, err := rt.RoundTrip(request(t, http.MethodGet, "http://web/", nil))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		if string(b) != "fine" {
			t.Fatalf("got %q", b)
		}
	})
}

// Shutdown lets a request under way finish; the client sends nothing more on that connection, and
// its Transport dials another for the next request.
func TestShutdownFinishesRequestsUnderWay(t *testing.T) {
	var mu sync.Mutex
	srv := &Server{} // the server of new connections
	first := srv
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	})
	served := make(chan struct{}, 4)
	addr := listen(t, func(nc net.Conn) {
		mu.Lock()
		s := srv
		mu.Unlock()
		s.ServeConn(nc, h)
		served <- struct{}{}
	})
	dials := 0
	tr := &Transport{Dial: func(ctx context.Context) (net.Conn, string, error) {
		dials++
		nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return nc, ALPN, err
	}}
	slow := make(chan string, 1)
	go func() {
		res, err := tr.RoundTrip(request(t, http.MethodGet, "http://web/slow", nil))
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		slow <- string(b)
	}()
	<-started
	mu.Lock()
	srv = &Server{}
	mu.Unlock()
	first.Shutdown()
	time.Sleep(50 * time.Millisecond) // the GOAWAY reaches the client
	close(release)
	if got := <-slow; got != "done /slow" {
		t.Fatalf("the request under way got %q", got)
	}
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return once its last request was done")
	}
	res, err := tr.RoundTrip(request(t, http.MethodGet, "http://web/after", nil))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "done /after" || dials != 2 {
		t.Fatalf("got %q after %d dials, want a second connection", b, dials)
	}
}

// A request refused by a server going away is not processed, and says so.
func TestADrainingServerRefusesNewStreams(t *testing.T) {
	srv := &Server{}
	srv.Shutdown()
	rt := connect(t, pair{client: ourClient, server: srv.ServeConn}, http.NotFoundHandler())
	_, err := rt.RoundTrip(request(t, http.MethodGet, "http://web/", nil))
	if err == nil {
		t.Fatal("a draining server took a new request")
	}
	if !errors.Is(err, ErrUnprocessed) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset by peer") {
		t.Fatalf("got %v", err)
	}
}

func TestContentLengthMismatchFails(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		if p.name == "xnet-ours" {
			t.Skip("x/net's client checks the length of what it sends")
		}
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "12345")
		}))
		res, err := rt.RoundTrip(request(t, http.MethodGet, "http://web/", nil))
		if err != nil {
			return
		}
		if b, err := io.ReadAll(res.Body); err == nil {
			t.Fatalf("read %q whole where content-length said 10", b)
		}
	})
}

// A peer that stops answering is found out by the ping, and the requests waiting on it fail.
func TestASilentPeerIsLeft(t *testing.T) {
	addr := listen(t, func(nc net.Conn) {
		io.Copy(io.Discard, nc) // reads everything, answers nothing
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewClientConn(nc, 100*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := cc.RoundTrip(request(t, http.MethodGet, "http://web/", nil))
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "did not answer a ping") {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request still waits on a silent peer")
	}
	if cc.CanTakeNewRequest() {
		t.Fatal("the connection still takes requests")
	}
}

// A peer of an older version chooses "h2": the Transport speaks x/net/http2's HTTP/2 to it.
func TestTheTransportFallsBackForAnOlderPeer(t *testing.T) {
	addr := listen(t, func(nc net.Conn) {
		(&http2.Server{}).ServeConn(nc, &http2.ServeConnOpts{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "old peer")
		})})
	})
	tr := &Transport{
		Dial: func(ctx context.Context) (net.Conn, string, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return nc, "h2", err
		},
		Fallback: &http2.Transport{AllowHTTP: true},
	}
	for range 3 {
		res, err := tr.RoundTrip(request(t, http.MethodGet, "http://web/", nil))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "old peer" {
			t.Fatalf("got %q", b)
		}
	}
	if _, ok := tr.conns[0].(fallbackConn); !ok || len(tr.conns) != 1 {
		t.Fatalf("connections %v, want one of x/net's", tr.conns)
	}
}

func TestCancellationWhileWaitingForTheAnswer(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		canceled := make(chan error, 1)
		rt := connect(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			canceled <- r.Context().Err()
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := rt.RoundTrip(request(t, http.MethodGet, "http://web/", nil).WithContext(ctx)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the context's error", err)
		}
		select {
		case <-canceled:
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's context was not canceled")
		}
	})
}

func TestAConnectionEndingCancelsItsRequests(t *testing.T) {
	each(t, func(t *testing.T, p pair) {
		started, canceled := make(chan struct{}), make(chan error, 1)
		addr := listen(t, func(nc net.Conn) {
			p.server(nc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done()
				canceled <- r.Context().Err()
			}))
		})
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		rt := p.client(t, nc)
		go rt.RoundTrip(request(t, http.MethodGet, "http://web/", nil))
		<-started
		nc.Close()
		select {
		case err := <-canceled:
			if !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's context outlived its connection")
		}
	})
}
