package inbound

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"testing"
)

// writeRequest's head reads back as req.Write's does.
func TestWriteRequestWritesWhatRequestWriteWould(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(r *http.Request)
	}{
		{"plain", func(r *http.Request) {}},
		{"user agent and fields", func(r *http.Request) {
			r.Header.Set("User-Agent", "curl/8")
			r.Header["X-Multi"] = []string{"a", "b"}
			r.Header.Set("Accept", "*/*")
		}},
		{"empty user agent", func(r *http.Request) { r.Header["User-Agent"] = []string{""} }},
		{"close", func(r *http.Request) { r.Close = true }},
		{"newline in a value, invalid name", func(r *http.Request) {
			r.Header["X-Bad"] = []string{"a\r\nInjected: yes"}
			r.Header["Bad Name"] = []string{"x"}
		}},
		{"escaped path and query", func(r *http.Request) { r.URL.Path, r.URL.RawQuery = "/a b/é", "q=1&r=%20" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func() *http.Request {
				r, _ := http.NewRequest("GET", "http://127.0.0.1:8080/x", nil)
				r.Host = "svc.ns.svc.cluster.local:8080"
				tc.build(r)
				return r
			}
			var ours, theirs bytes.Buffer
			bw := bufio.NewWriter(&ours)
			if err := writeRequest(bw, mk()); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			if err := mk().Write(&theirs); err != nil {
				t.Fatal(err)
			}
			a, errA := http.ReadRequest(bufio.NewReader(&ours))
			b, errB := http.ReadRequest(bufio.NewReader(&theirs))
			if errA != nil || errB != nil {
				t.Fatalf("reading back: ours %v, Write's %v\nours: %q", errA, errB, ours.String())
			}
			if a.Method != b.Method || a.RequestURI != b.RequestURI || a.Host != b.Host || a.Close != b.Close || !reflect.DeepEqual(a.Header, b.Header) {
				t.Fatalf("ours reads back as %s %s host %q close %v %v\nWrite's as %s %s host %q close %v %v",
					a.Method, a.RequestURI, a.Host, a.Close, a.Header, b.Method, b.RequestURI, b.Host, b.Close, b.Header)
			}
		})
	}
}

// FuzzLeanResponse checks leanResponse against http.ReadResponse: whatever it takes on, net/http
// reads the same way, body included.
func FuzzLeanResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nContent-Length: 0\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"HTTP/1.1 200\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nX: \t v \r\n\r\nabc",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := &http.Request{Method: "GET"}
		br := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
		br.Peek(len(raw))
		ours := leanResponse(br, req)
		if ours == nil {
			return
		}
		theirs, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
		if err != nil {
			t.Fatalf("taken on, but net/http refuses it (%v):\n%q", err, raw)
		}
		if ours.StatusCode != theirs.StatusCode || ours.Status != theirs.Status || ours.ContentLength != theirs.ContentLength ||
			ours.Close != theirs.Close || !reflect.DeepEqual(ours.Header, theirs.Header) {
			t.Fatalf("read otherwise than net/http:\n%q\nours:   %q %d length %d close %v %v\ntheirs: %q %d length %d close %v %v", raw,
				ours.Status, ours.StatusCode, ours.ContentLength, ours.Close, ours.Header,
				theirs.Status, theirs.StatusCode, theirs.ContentLength, theirs.Close, theirs.Header)
		}
		var a, b bytes.Buffer
		_, errA := a.ReadFrom(ours.Body)
		_, errB := b.ReadFrom(theirs.Body)
		ours.Body.Close()
		theirs.Body.Close()
		if (errA == nil) != (errB == nil) || a.String() != b.String() {
			t.Fatalf("bodies differ: ours %v, net/http's %v\n%q", errA, errB, raw)
		}
	})
}
