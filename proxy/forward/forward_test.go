package forward

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// front serves a Handler that forwards everything to the backend at addr.
func front(t *testing.T, backend http.Handler, rewrite func(out, in *http.Request)) string {
	t.Helper()
	back := httptest.NewServer(backend)
	t.Cleanup(back.Close)
	addr := strings.TrimPrefix(back.URL, "http://")
	h := &Handler{
		Rewrite: func(out, in *http.Request) {
			out.URL.Scheme, out.URL.Host = "http", addr
			if rewrite != nil {
				rewrite(out, in)
			}
		},
		Transport: &http.Transport{DisableCompression: true},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
	}
	f := httptest.NewServer(h)
	t.Cleanup(f.Close)
	return strings.TrimPrefix(f.URL, "http://")
}

// send sends raw HTTP/1.1 to addr and reads the response's head.
func send(t *testing.T, addr, raw string) (*http.Response, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, raw)
	return http.ReadResponse(bufio.NewReader(conn), nil)
}

// exchange is send, and the whole body.
func exchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	res, err := send(t, addr, raw)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestHeadersPassButHopByHopOnes(t *testing.T) {
	var inHeader http.Header
	addr := front(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range []string{"X-Keep", "X-Forwarded-For", "Te", "User-Agent", "X-Named", "Keep-Alive", "Proxy-Authorization"} {
			w.Header().Add("Seen", k+"="+strings.Join(r.Header.Values(k), "|"))
		}
		w.Header().Set("Connection", "X-Drop-Me")
		w.Header().Set("X-Drop-Me", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Back", "b")
		io.WriteString(w, "ok")
	}), func(out, in *http.Request) { inHeader = in.Header })
	res, body := exchange(t, addr, "GET /p?q=1 HTTP/1.1\r\nHost: web\r\nX-Keep: a\r\nX-Keep: b\r\n"+
		"X-Forwarded-For: 10.0.0.1\r\nTe: trailers\r\nConnection: X-Named, te\r\nX-Named: gone\r\n"+
		"Keep-Alive: timeout=1\r\nProxy-Authorization: secret\r\n\r\n")
	want := []string{"X-Keep=a|b", "X-Forwarded-For=10.0.0.1", "Te=trailers", "User-Agent=", "X-Named=", "Keep-Alive=", "Proxy-Authorization="}
	if got := res.Header.Values("Seen"); strings.Join(got, " ") != strings.Join(want, " ") || body != "ok" {
		t.Fatalf("the backend saw %q (body %q), want %q", got, body, want)
	}
	if res.Header.Get("X-Drop-Me") != "" || res.Header.Get("Keep-Alive") != "" || res.Header.Get("X-Back") != "b" {
		t.Fatalf("response header %v", res.Header)
	}
	if inHeader.Get("X-Named") != "gone" {
		t.Fatal("the request served was changed")
	}
}

func TestTrailersPass(t *testing.T) {
	addr := front(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Announced")
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Announced", "a")
		w.Header().Set(http.TrailerPrefix+"X-Late", "l")
	}), nil)
	res, body := exchange(t, addr, "GET / HTTP/1.1\r\nHost: web\r\nTe: trailers\r\n\r\n")
	if body != "body" || res.Trailer.Get("X-Announced") != "a" || res.Trailer.Get("X-Late") != "l" {
		t.Fatalf("body %q trailers %v", body, res.Trailer)
	}
}

// A response of unknown length flows as it comes: its header first, then each piece.
func TestAStreamFlows(t *testing.T) {
	release := make(chan struct{})
	addr := front(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "later")
	}), nil)
	res, err := send(t, addr, "GET / HTTP/1.1\r\nHost: web\r\n\r\n")
	if err != nil {
		t.Fatalf("no header while the body waits: %v", err)
	}
	close(release)
	if b, _ := io.ReadAll(res.Body); string(b) != "later" {
		t.Fatalf("body %q", b)
	}
}

// A backend that breaks off its body leaves the client with a broken response, not a short one
// that looks whole.
func TestACutBodyIsNotPassedOffAsWhole(t *testing.T) {
	addr := front(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial") // chunked: only the last chunk says the body is whole
		w.(http.Flusher).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	}), nil)
	res, err := send(t, addr, "GET / HTTP/1.1\r\nHost: web\r\n\r\n")
	if err != nil {
		return // broken before the header: also not whole
	}
	if b, err := io.ReadAll(res.Body); err == nil {
		t.Fatalf("read %q as a whole response", b)
	}
}

func TestUpgradesAreLeftToTheReverseProxy(t *testing.T) {
	for _, tt := range []struct {
		header http.Header
		takes  bool
	}{
		{http.Header{}, true},
		{http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, false},
		{http.Header{"Connection": {"keep-alive, Upgrade"}}, false},
	} {
		if got := Takes(&http.Request{Header: tt.header}); got != tt.takes {
			t.Errorf("Takes(%v) = %v", tt.header, got)
		}
	}
}

// settingRecorder is a ResponseWriter whose header Response may replace whole.
type settingRecorder struct {
	*httptest.ResponseRecorder
	set http.Header
}

func (r *settingRecorder) Header() http.Header {
	if r.set != nil {
		return r.set
	}
	return r.ResponseRecorder.Header()
}

func (r *settingRecorder) SetHeader(h http.Header) { r.set = h }

// A writer that can take the response's header whole gets it, less hop-by-hop headers, with the
// trailers announced; one whose header is already set gets the fields added to it.
func TestResponseHandsItsHeaderOverWhenItCan(t *testing.T) {
	for _, preset := range []bool{false, true} {
		res := &http.Response{StatusCode: http.StatusOK, ContentLength: 2, Body: io.NopCloser(strings.NewReader("ok")),
			Header:  http.Header{"X-App": {"a"}, "Connection": {"X-Hop"}, "X-Hop": {"h"}, "Keep-Alive": {"timeout=5"}},
			Trailer: http.Header{"X-Sum": nil}}
		w := &settingRecorder{ResponseRecorder: httptest.NewRecorder()}
		if preset {
			w.Header().Set("X-Preset", "p")
		}
		if err := Response(w, res); err != nil {
			t.Fatal(err)
		}
		h := w.Header()
		if preset != (w.set == nil) {
			t.Errorf("preset %v: header replaced %v", preset, w.set != nil)
		}
		if h.Get("X-App") != "a" || h.Get("Trailer") != "X-Sum" || h.Get("X-Hop") != "" || h.Get("Connection") != "" || h.Get("Keep-Alive") != "" {
			t.Errorf("preset %v: header %v", preset, h)
		}
		if preset && h.Get("X-Preset") != "p" {
			t.Errorf("the header set before was lost: %v", h)
		}
	}
}

// A request whose server gave up its header has it edited in place; any other keeps its own.
func TestRequestEditsAnOwnedHeaderInPlace(t *testing.T) {
	for _, owned := range []bool{false, true} {
		in := httptest.NewRequest("GET", "http://web/", nil)
		in.Header = http.Header{"X-App": {"a"}, "Connection": {"X-Hop"}, "X-Hop": {"h"}, "Te": {"trailers"}, "User-Agent": {"u"}}
		if owned {
			in = in.WithContext(WithOwnedHeaders(in.Context()))
		}
		out := Request(in)
		if got := out.Header; got.Get("X-App") != "a" || got.Get("X-Hop") != "" || got.Get("Connection") != "" || got.Get("Te") != "trailers" {
			t.Errorf("owned %v: sent header %v", owned, got)
		}
		if edited := in.Header.Get("X-Hop") == ""; edited != owned {
			t.Errorf("owned %v: the served request's header was edited: %v (now %v)", owned, edited, in.Header)
		}
	}
}
