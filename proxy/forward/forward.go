// Package forward passes an HTTP/1 request on and its response back: what httputil.ReverseProxy
// does for a request that does not ask to upgrade, without the copies that make ReverseProxy
// general (a deep clone of every request and of every response's header), which profiles put at
// about a tenth of each proxy's CPU. Headers, the body as it streams and trailers pass unchanged,
// less the hop-by-hop headers that RFC 9110 (7.6.1) has a proxy remove.
package forward

import (
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/skeinmesh/skein/proxy/bufpool"
	"github.com/skeinmesh/skein/proxy/http1"
)

// isHop says whether a header is the connection's, not the message's: a proxy removes these, and
// those that the Connection header names.
func isHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// Takes says whether r is a request Forward passes on: not an upgrade (a WebSocket, say), which
// takes over the connection as ReverseProxy does.
func Takes(r *http.Request) bool {
	return r.Header.Get("Upgrade") == "" && !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "Upgrade")
}

type ownedHeadersKey struct{}

// WithOwnedHeaders marks ctx, a connection's, as one whose requests' headers are the handler's to
// change: the server that made them reads them no more once the handler has them. Request then
// edits such a header in place rather than copy it. The servers of packages http1 and h2peer can
// say so; net/http's cannot (it reads a request's Connection and Expect while the handler runs).
func WithOwnedHeaders(ctx context.Context) context.Context {
	return context.WithValue(ctx, ownedHeadersKey{}, true)
}

// Request is the request to send on for r, which stays as it was: r's fields, with a URL and a
// header of its own, less hop-by-hop headers; the header is r's own, edited, when r's context says
// it may be (WithOwnedHeaders). "Te: trailers" is kept, as it says the client takes trailers.
func Request(r *http.Request) *http.Request {
	out, u := http1.RequestAndURL()
	*out = *r
	*u = *r.URL
	out.URL = u
	trailers := httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers")
	var h http.Header
	if owned, _ := r.Context().Value(ownedHeadersKey{}).(bool); owned {
		h = r.Header
		removeHopHeaders(h)
	} else {
		h = make(http.Header, len(r.Header)+1)
		for k, vv := range r.Header {
			if !isHop(k) {
				h[k] = vv // values are replaced, never changed in place, so they may be shared
			}
		}
		removeNamedHopHeaders(h, r.Header["Connection"])
	}
	if trailers {
		h["Te"] = []string{"trailers"}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // Go's clients would add their own otherwise
	}
	out.Header = h
	if r.ContentLength == 0 {
		out.Body = nil // a client may then send it without waiting for a body
	}
	out.Close = false
	out.RequestURI = ""
	return out
}

// removeHopHeaders removes the hop-by-hop headers from h, in one pass over it.
func removeHopHeaders(h http.Header) {
	connection := h["Connection"]
	for k := range h {
		if isHop(k) {
			delete(h, k)
		}
	}
	removeNamedHopHeaders(h, connection)
}

// removeNamedHopHeaders removes from h the headers that the Connection header names.
func removeNamedHopHeaders(h http.Header, connection []string) {
	for _, v := range connection {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				delete(h, http.CanonicalHeaderKey(f))
			}
		}
	}
}

// headerSetter is a ResponseWriter whose header can be replaced whole: the writers of packages
// http1 and h2peer, and the metrics' wrapper of them.
type headerSetter interface{ SetHeader(http.Header) }

// buffers are shared by every response body copied.
var buffers = &bufpool.Pool{}

// Response copies res to w and closes its body: the status, the header less hop-by-hop headers,
// the body (each piece flushed as it comes when its length is unknown, so that a stream flows),
// then the trailers. An error is one of reading res or of writing to w; the response is then
// incomplete, and the caller aborts it (panic(http.ErrAbortHandler)) so that the client sees so.
func Response(w http.ResponseWriter, res *http.Response) error {
	defer res.Body.Close()
	removeHopHeaders(res.Header)
	if hs, ok := w.(headerSetter); ok && len(w.Header()) == 0 {
		hs.SetHeader(res.Header) // res is done with: its header becomes the response's
	} else {
		h := w.Header()
		for k, vv := range res.Header {
			h[k] = vv
		}
	}
	h := w.Header()
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(res.StatusCode)
	if err := copyBody(w, res); err != nil {
		return err
	}
	if len(res.Trailer) == 0 {
		return nil
	}
	prefix := ""
	if len(res.Trailer) != announced {
		prefix = http.TrailerPrefix // trailers that were not announced are sent this way
	}
	for k, vv := range res.Trailer {
		h[prefix+k] = vv
	}
	return nil
}

func copyBody(w http.ResponseWriter, res *http.Response) error {
	flusher, _ := w.(http.Flusher)
	stream := res.ContentLength < 0 && flusher != nil
	if stream {
		flusher.Flush() // the header goes at once: the body of a stream may be long in coming
	}
	buf := buffers.Get()
	defer buffers.Put(buf)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if stream {
				flusher.Flush()
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

// Handler forwards each request it serves: those Takes and Narrow accept with Request and
// Response, the others (upgrades, HTTP/2 streams) with an httputil.ReverseProxy made of the same
// parts. Both pass X-Forwarded-* and Forwarded on as the client sent them.
type Handler struct {
	// Narrow, when set, says which of the requests Takes accepts go through this package.
	Narrow func(*http.Request) bool
	// Rewrite readies out, the request to send, from in, the request served.
	Rewrite   func(out, in *http.Request)
	Transport http.RoundTripper
	// ErrorHandler answers a request that Transport failed.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	fallback *httputil.ReverseProxy
	once     sync.Once
}

// forwardedHeaders are those ReverseProxy removes when it rewrites; a mesh leaves them alone.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !Takes(r) || h.Narrow != nil && !h.Narrow(r) {
		h.once.Do(func() {
			h.fallback = &httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					for _, k := range forwardedHeaders {
						if vv, ok := pr.In.Header[k]; ok {
							pr.Out.Header[k] = vv
						}
					}
					h.Rewrite(pr.Out, pr.In)
				},
				Transport:    h.Transport,
				BufferPool:   buffers,
				ErrorHandler: h.ErrorHandler,
			}
		})
		h.fallback.ServeHTTP(w, r)
		return
	}
	out := Request(r)
	h.Rewrite(out, r)
	res, err := h.Transport.RoundTrip(out)
	if err != nil {
		h.ErrorHandler(w, r, err)
		return
	}
	if err := Response(w, res); err != nil {
		panic(http.ErrAbortHandler) // the client must not take a cut response for a whole one
	}
}
