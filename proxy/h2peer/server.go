package h2peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/proxy/http1"
)

// Server serves HTTP/2 from peer proxies, each request's handler on a goroutine of its own.
type Server struct {
	// Log, when set, takes the panics of handlers (other than http.ErrAbortHandler).
	Log *slog.Logger
	// ConnContext, when set, gives a connection's requests the values of the context it makes
	// from a fresh one.
	ConnContext func(context.Context) context.Context

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	draining bool

	// work hands a request to an idle worker goroutine.
	work chan func()
}

// workerIdle is how long a worker goroutine waits for another request before it exits.
const workerIdle = 10 * time.Second

// run runs f on an idle worker, or on a new one. A worker keeps its stack from one request to
// the next: a new goroutine's stack would grow, copied each time, to the depth that forwarding a
// request takes.
func (srv *Server) run(f func()) {
	select {
	case srv.work <- f:
	default:
		go srv.worker(f)
	}
}

func (srv *Server) worker(f func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil
		idle.Reset(workerIdle)
		select {
		case f = <-srv.work:
		case <-idle.C:
			return
		}
	}
}

// prefaceTimeout bounds the wait for a client's connection preface.
const prefaceTimeout = 10 * time.Second

// ServeConn serves nc, a connection from a peer that negotiated ALPN, until it ends, and returns
// once its handlers have returned.
func (srv *Server) ServeConn(nc net.Conn, h http.Handler) {
	sc := &serverConn{conn: newConn(nc), srv: srv, h: h, remote: nc.RemoteAddr().String(), values: context.Background()}
	if srv.ConnContext != nil {
		sc.values = srv.ConnContext(sc.values)
	}
	defer sc.nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(sc.br, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	if err := sc.writeSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: maxStreams}); err != nil {
		return
	}
	srv.mu.Lock()
	if srv.conns == nil {
		srv.conns = map[*serverConn]struct{}{}
		srv.work = make(chan func())
	}
	srv.conns[sc] = struct{}{}
	draining := srv.draining
	srv.mu.Unlock()
	if draining {
		sc.shutdown()
	}
	sc.readLoop(sc)
	sc.mu.Lock()
	for _, s := range sc.streams {
		s.ctx.cancel() // the connection is gone: so are its requests
	}
	sc.mu.Unlock()
	sc.handlers.Wait()
	srv.mu.Lock()
	delete(srv.conns, sc)
	srv.mu.Unlock()
}

// Shutdown tells every connection to go away: the requests under way finish, no new one is taken,
// and each connection closes once it has none. ServeConn returns then.
func (srv *Server) Shutdown() {
	srv.mu.Lock()
	srv.draining = true
	conns := make([]*serverConn, 0, len(srv.conns))
	for sc := range srv.conns {
		conns = append(conns, sc)
	}
	srv.mu.Unlock()
	for _, sc := range conns {
		sc.shutdown()
	}
}

type serverConn struct {
	*conn
	srv      *Server
	h        http.Handler
	remote   string          // the peer's address, every request's RemoteAddr
	values   context.Context // the values of every request's context
	handlers sync.WaitGroup
	// Guarded by conn.mu.
	maxSeen   uint32
	goingAway bool
	active    int
}

// shutdown sends GOAWAY naming the last stream taken, and closes the connection if it is idle.
func (sc *serverConn) shutdown() {
	sc.wmu.Lock()
	sc.mu.Lock()
	if sc.goingAway || sc.err != nil {
		sc.mu.Unlock()
		sc.wmu.Unlock()
		return
	}
	sc.goingAway = true
	last, idle := sc.maxSeen, sc.active == 0
	sc.mu.Unlock()
	_ = sc.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
	sc.wmu.Unlock()
	if idle {
		sc.nc.Close()
	}
}

func (sc *serverConn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	sc.mu.Lock()
	if s := sc.streams[id]; s != nil {
		return sc.trailers(s, f)
	}
	if id <= sc.maxSeen {
		sc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	sc.maxSeen = id
	if sc.goingAway || sc.active >= maxStreams {
		sc.mu.Unlock()
		sc.writeRST(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if f.Truncated {
		sc.mu.Unlock()
		sc.refuse(id, http.StatusRequestHeaderFieldsTooLarge)
		return nil
	}
	req, err := sc.request(f)
	if err != nil {
		sc.mu.Unlock()
		sc.writeRST(id, http2.ErrCodeProtocol)
		return nil
	}
	s := sc.newStream(id)
	s.remoteDone = f.StreamEnded()
	sc.streams[id] = s
	sc.active++
	s.ctx = &streamCtx{values: sc.values}
	sc.mu.Unlock()

	req = req.WithContext(s.ctx)
	if f.StreamEnded() {
		req.Body = http.NoBody
	} else {
		s.wantLength = req.ContentLength
		req.Body = &requestBody{sc: sc, s: s, req: req}
	}
	sc.handlers.Add(1)
	sc.srv.run(func() { sc.serve(s, req) })
	return nil
}

// trailers takes the trailer block of a request's body; sc.mu is held, and released.
func (sc *serverConn) trailers(s *stream, f *http2.MetaHeadersFrame) error {
	bad := s.takeTrailers(f)
	s.recv.Broadcast()
	sc.mu.Unlock()
	if bad != nil {
		sc.streamError(sc, s.id, http2.ErrCodeProtocol, fmt.Errorf("h2peer: request from %s: %w", sc.nc.RemoteAddr(), bad))
	}
	return nil
}

// refuse answers a stream with a bare status, ending it.
func (sc *serverConn) refuse(id uint32, status int) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	_ = sc.writeHeaders(id, true, func(field func(string, string)) { field(":status", strconv.Itoa(status)) })
}

// request builds the http.Request of a header block, checking what RFC 9113 requires of it.
func (sc *serverConn) request(f *http2.MetaHeadersFrame) (*http.Request, error) {
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	scheme, authority := f.PseudoValue("scheme"), f.PseudoValue("authority")
	if method == "" || method != http.MethodConnect && (path == "" || scheme == "") {
		return nil, errors.New("missing pseudo-header")
	}
	header := fieldsHeader(f)
	for k := range connectionHeaders {
		if _, ok := header[k]; ok && k != "Host" {
			return nil, fmt.Errorf("connection-specific header %s", k)
		}
	}
	if te := header["Te"]; len(te) > 0 && (len(te) > 1 || te[0] != "trailers") {
		return nil, errors.New("te other than trailers")
	}
	if authority == "" {
		authority = header.Get("Host")
	}
	delete(header, "Host")
	if c := header["Cookie"]; len(c) > 1 {
		header["Cookie"] = []string{strings.Join(c, "; ")}
	}
	req, u := http1.RequestAndURL()
	if method == http.MethodConnect {
		*u = url.URL{Host: authority}
		path = authority
	} else if err := http1.ParseTarget(path, u); err != nil {
		return nil, err
	}
	*req = http.Request{
		Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: header,
		Host: authority, RequestURI: path, RemoteAddr: sc.remote,
	}
	if !f.StreamEnded() {
		req.ContentLength = -1
		if cl := header["Content-Length"]; len(cl) == 1 {
			n, err := strconv.ParseInt(cl[0], 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("bad content-length %q", cl[0])
			}
			req.ContentLength = n
		}
	}
	req.Trailer = declaredTrailers(header)
	return req, nil
}

var errHandlerDone = errors.New("h2peer: the handler has returned")

// serve runs the handler of one request, then ends its stream.
func (sc *serverConn) serve(s *stream, req *http.Request) {
	defer sc.handlers.Done()
	w := &responseWriter{sc: sc, s: s, req: req, header: http.Header{}}
	completed := false
	defer func() {
		if !completed {
			if r := recover(); r != nil && r != http.ErrAbortHandler && sc.srv.Log != nil {
				sc.srv.Log.Error("Handler panicked", "path", req.URL.Path, "panic", r)
			}
			sc.mu.Lock()
			tell := s.reset == nil && sc.err == nil
			s.resetLocked(errHandlerDone)
			sc.mu.Unlock()
			if tell {
				sc.writeRST(s.id, http2.ErrCodeInternal)
			}
		}
		sc.finish(s)
	}()
	sc.h.ServeHTTP(w, req)
	_ = w.finish()
	completed = true
}

// finish lets a stream go once its handler has returned. A request whose body was not all sent
// yet is told, with RST_STREAM NO_ERROR, that no more of it is needed.
func (sc *serverConn) finish(s *stream) {
	sc.mu.Lock()
	s.ctx.cancel()
	tell := !s.remoteDone && s.reset == nil && sc.err == nil
	s.resetLocked(errHandlerDone)
	delete(sc.streams, s.id)
	sc.active--
	closeNow := sc.goingAway && sc.active == 0
	cw := sc.creditConn(int64(len(s.buf) - s.off))
	s.buf, s.off = nil, 0
	sc.mu.Unlock()
	if tell {
		sc.writeRST(s.id, http2.ErrCodeNo)
	}
	sc.writeWindowUpdates(0, 0, cw)
	if closeNow {
		sc.nc.Close()
	}
}

func (sc *serverConn) goAway(*http2.GoAwayFrame) {} // a client going away just stops sending

func (sc *serverConn) peerReset(s *stream, code http2.ErrCode) {
	sc.mu.Lock()
	s.resetLocked(fmt.Errorf("h2peer: %s reset the stream: %v", sc.nc.RemoteAddr(), code))
	sc.mu.Unlock()
	sc.over(s)
}

// over cancels the request of a stream that was reset.
func (sc *serverConn) over(s *stream) {
	sc.mu.Lock()
	reset := s.reset != nil
	sc.mu.Unlock()
	if reset {
		s.ctx.cancel()
	}
}

// requestBody is a request's body as its stream receives it.
type requestBody struct {
	sc     *serverConn
	s      *stream
	req    *http.Request
	closed bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.s.read(p)
	if err == io.EOF {
		b.sc.mu.Lock()
		for k, vv := range b.s.trailer {
			if b.req.Trailer == nil {
				b.req.Trailer = http.Header{}
			}
			b.req.Trailer[k] = vv
		}
		b.s.trailer = nil
		b.sc.mu.Unlock()
	}
	return n, err
}

func (b *requestBody) Close() error {
	b.closed = true
	b.s.discard()
	return nil
}

// responseWriter sends a response's header block when the handler first writes or flushes (or
// returns), then its body as DATA frames, as the peer's windows allow.
type responseWriter struct {
	sc         *serverConn
	s          *stream
	req        *http.Request
	header     http.Header
	status     int
	sentHeader bool
}

func (w *responseWriter) Header() http.Header { return w.header }

// SetHeader replaces the header, which package forward does rather than copy a response's into it.
func (w *responseWriter) SetHeader(h http.Header) { w.header = h }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code >= 100 && code < 200 {
		if code != http.StatusSwitchingProtocols { // no upgrades in HTTP/2
			_ = w.sendHeader(code, false)
			w.sentHeader = false
		}
		return
	}
	w.status = code
}

func (w *responseWriter) bodyAllowed() bool {
	return w.req.Method != http.MethodHead && w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if !w.sentHeader {
		if err := w.sendHeader(w.status, false); err != nil {
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := w.sc.sendData(w.s, p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError sends the header block if it has not gone yet; data goes as it is written.
func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		return w.sendHeader(w.status, false)
	}
	return nil
}

func (w *responseWriter) sendHeader(status int, end bool) error {
	w.sentHeader = true
	sc, s := w.sc, w.s
	sc.mu.Lock()
	err := s.sendErr()
	if end && err == nil {
		s.localDone = true
	}
	sc.mu.Unlock()
	if err != nil {
		return err
	}
	if err := sc.nc.WaitRoom(); err != nil {
		return err
	}
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	return sc.writeHeaders(s.id, end, func(field func(string, string)) {
		field(":status", strconv.Itoa(status))
		for k, vv := range w.header {
			if connectionHeaders[k] || strings.HasPrefix(k, http.TrailerPrefix) {
				continue
			}
			name := lower(k)
			for _, v := range vv {
				field(name, v)
			}
		}
	})
}

// finish ends the response: the header block if it has not gone, then the trailers or the end
// of the stream.
func (w *responseWriter) finish() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	trailer := w.trailer()
	if !w.sentHeader {
		if err := w.sendHeader(w.status, len(trailer) == 0); err != nil || len(trailer) == 0 {
			return err
		}
	}
	if len(trailer) > 0 {
		return w.sc.sendTrailers(w.s, trailer)
	}
	return w.sc.sendData(w.s, nil, true)
}

// trailer is what the handler set as trailers: the keys it declared in the Trailer header, and
// those it wrote with http.TrailerPrefix.
func (w *responseWriter) trailer() http.Header {
	var t http.Header
	add := func(k string, vv []string) {
		if t == nil {
			t = http.Header{}
		}
		t[k] = vv
	}
	for k := range declaredTrailers(w.header) {
		if vv, ok := w.header[k]; ok {
			add(k, vv)
		}
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(strings.TrimPrefix(k, http.TrailerPrefix), vv)
		}
	}
	return t
}
