package h2peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/proxy/http1"
)

// ClientConn is one connection to a peer proxy, on which requests are multiplexed.
type ClientConn struct {
	*conn
	// Guarded by conn.mu.
	nextID    uint32
	goingAway bool
	active    int
}

// errUnusable is returned for a request that a connection could not take (it was failing or going
// away); nothing was sent, and the Transport tries another connection.
var errUnusable = fmt.Errorf("%w: connection no longer usable", ErrUnprocessed)

// NewClientConn starts HTTP/2 on nc, a connection to a peer that negotiated ALPN. After pingAfter
// without a frame from the peer, it is pinged, and the connection fails if no frame comes within
// pingTimeout; zero pingAfter turns that off.
func NewClientConn(nc net.Conn, pingAfter, pingTimeout time.Duration) (*ClientConn, error) {
	cc := &ClientConn{conn: newConn(nc), nextID: 1}
	cc.wmu.Lock()
	_, err := io.WriteString(cc.nc, http2.ClientPreface)
	cc.wmu.Unlock()
	if err == nil {
		err = cc.writeSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	if err != nil {
		cc.nc.Close()
		return nil, err
	}
	go cc.readLoop(cc)
	if pingAfter > 0 {
		cc.watch(pingAfter, pingTimeout)
	}
	return cc, nil
}

// CanTakeNewRequest says whether a request sent now would be sent on this connection.
func (cc *ClientConn) CanTakeNewRequest() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.usableLocked()
}

func (cc *ClientConn) usableLocked() bool {
	return !cc.deadLocked() && cc.active < cc.peerMaxStreams
}

// dead says whether the connection will never take a request again.
func (cc *ClientConn) dead() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.deadLocked()
}

func (cc *ClientConn) deadLocked() bool {
	return cc.err != nil || cc.goingAway || cc.nextID >= maxWindow
}

// Close closes the connection; requests under way fail.
func (cc *ClientConn) Close() error {
	cc.fail(errConnDone)
	return nil
}

// RoundTrip sends req on a new stream and returns the response once its headers arrive; the body
// streams after. The request's body, if any, is sent by a goroutine of its own, so that the
// exchange is full duplex.
func (cc *ClientConn) RoundTrip(req *http.Request) (*http.Response, error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if err := cc.nc.WaitRoom(); err != nil {
		closeBody(req)
		return nil, fmt.Errorf("%w: %w", errUnusable, err)
	}
	cc.wmu.Lock() // stream IDs must reach the wire in the order they are given
	cc.mu.Lock()
	if !cc.usableLocked() {
		cc.mu.Unlock()
		cc.wmu.Unlock()
		closeBody(req)
		return nil, errUnusable
	}
	s := cc.newStream(cc.nextID)
	s.ready = make(chan struct{})
	cc.nextID += 2
	cc.streams[s.id] = s
	cc.active++
	s.localDone = !hasBody
	cc.mu.Unlock()
	err := cc.writeHeaders(s.id, !hasBody, func(field func(string, string)) { encodeRequest(req, hasBody, field) })
	cc.wmu.Unlock()
	if err != nil {
		cc.abort(s, err)
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	if hasBody {
		go cc.writeBody(s, req)
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		cc.abortWith(s, fmt.Errorf("h2peer: request canceled: %w", context.Cause(ctx)), http2.ErrCodeCancel)
	}
	cc.mu.Lock()
	res, err := s.res, s.reset
	noBody := s.noBody
	open := s.reset == nil && !(s.remoteDone && s.localDone)
	cc.mu.Unlock()
	if res == nil {
		return nil, err
	}
	if open {
		// Cancelling the request resets what is still under way of it. Most answers have come
		// whole by now, and spare registering with the context.
		s.stopCancel = context.AfterFunc(ctx, func() {
			cc.abortWith(s, fmt.Errorf("h2peer: request canceled: %w", context.Cause(ctx)), http2.ErrCodeCancel)
		})
	}
	res.Request = req
	if noBody {
		s.stopCancelling()
		res.Body = http.NoBody
	} else {
		res.Body = &body{cc: cc, s: s, res: res}
	}
	return res, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// encodeRequest gives the fields of req's header block: the pseudo-headers, then its header less
// what HTTP/2 forbids.
func encodeRequest(req *http.Request, hasBody bool, field func(name, value string)) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	field(":method", method)
	field(":authority", host)
	if method != http.MethodConnect {
		scheme := req.URL.Scheme
		if scheme == "" {
			scheme = "http"
		}
		field(":scheme", scheme)
		field(":path", req.URL.RequestURI())
	}
	for k, vv := range req.Header {
		switch {
		case connectionHeaders[k] || k == "Content-Length":
			continue
		case k == "Te":
			// Only "trailers" may be said in HTTP/2.
			for _, v := range vv {
				if strings.EqualFold(strings.TrimSpace(v), "trailers") {
					field("te", "trailers")
				}
			}
			continue
		}
		name := lower(k)
		for _, v := range vv {
			if v == "" && k == "User-Agent" {
				continue // a reverse proxy's way of saying "no User-Agent"
			}
			field(name, v)
		}
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, k)
		}
		field("trailer", strings.Join(keys, ","))
	}
	switch {
	case hasBody && req.ContentLength > 0:
		field("content-length", strconv.FormatInt(req.ContentLength, 10))
	case !hasBody && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch):
		field("content-length", "0")
	}
}

// writeBody sends the request's body, then its trailers or the end of the stream.
func (cc *ClientConn) writeBody(s *stream, req *http.Request) {
	defer req.Body.Close()
	bp := bodyBuffers.Get().(*[]byte)
	defer bodyBuffers.Put(bp)
	for {
		n, err := req.Body.Read(*bp)
		if n > 0 {
			if werr := cc.sendData(s, (*bp)[:n], false); werr != nil {
				cc.abort(s, werr)
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			cc.abortWith(s, fmt.Errorf("h2peer: reading the request body: %w", err), http2.ErrCodeCancel)
			return
		}
	}
	var err error
	if len(req.Trailer) > 0 {
		err = cc.sendTrailers(s, req.Trailer)
	} else {
		err = cc.sendData(s, nil, true)
	}
	if err != nil {
		cc.abort(s, err)
		return
	}
	cc.over(s)
}

var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// abort ends s on our side after a failure to send; a peer's request to stop sending is no
// failure.
func (cc *ClientConn) abort(s *stream, err error) {
	if errors.Is(err, errStopSend) {
		cc.over(s)
		return
	}
	cc.abortWith(s, err, http2.ErrCodeCancel)
}

// abortWith resets s, telling the peer unless the stream is over already.
func (cc *ClientConn) abortWith(s *stream, err error, code http2.ErrCode) {
	cc.mu.Lock()
	tell := s.reset == nil && !(s.remoteDone && (s.localDone || s.stopSend)) && cc.err == nil
	s.resetLocked(err)
	cc.removeLocked(s)
	cc.mu.Unlock()
	if tell {
		cc.writeRST(s.id, code)
	}
}

// over lets s go if both sides are done with it.
func (cc *ClientConn) over(s *stream) {
	cc.mu.Lock()
	cc.removeLocked(s)
	cc.mu.Unlock()
}

// removeLocked forgets s once it is over; cc.mu is held. A connection going away is closed with
// its last stream.
func (cc *ClientConn) removeLocked(s *stream) {
	if cc.streams[s.id] != s || s.reset == nil && !(s.remoteDone && (s.localDone || s.stopSend)) {
		return
	}
	delete(cc.streams, s.id)
	cc.active--
	if cc.goingAway && cc.active == 0 {
		go cc.Close()
	}
}

func (cc *ClientConn) headers(f *http2.MetaHeadersFrame) error {
	if f.StreamID%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	cc.mu.Lock()
	s := cc.streams[f.StreamID]
	if s == nil {
		cc.mu.Unlock()
		return nil // a stream we gave up on; its header block was decoded, which hpack needs
	}
	var bad error
	if s.res == nil {
		bad = s.response(f)
	} else {
		bad = s.takeTrailers(f)
	}
	s.recv.Broadcast()
	cc.mu.Unlock()
	if bad != nil {
		cc.streamError(cc, s.id, http2.ErrCodeProtocol, fmt.Errorf("h2peer: response from %s: %w", cc.nc.RemoteAddr(), bad))
		return nil
	}
	if f.StreamEnded() {
		cc.over(s)
	}
	return nil
}

// response takes the response's header block (1xx ones are skipped); c.mu is held.
func (s *stream) response(f *http2.MetaHeadersFrame) error {
	status, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || status < 100 || status > 999 {
		return fmt.Errorf("bad :status %q", f.PseudoValue("status"))
	}
	if status < 200 {
		if f.StreamEnded() {
			return errors.New("an informational response ended the stream")
		}
		return nil
	}
	res := &http.Response{
		StatusCode: status, Status: http1.Status(status),
		Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: fieldsHeader(f), ContentLength: -1,
	}
	if cl := res.Header["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			res.ContentLength = n
			if !f.StreamEnded() {
				s.wantLength = n
			}
		}
	}
	res.Trailer = declaredTrailers(res.Header)
	s.res = res
	s.wake()
	if f.StreamEnded() {
		s.noBody = true
		s.remoteDone = true
		if status != http.StatusNoContent && status != http.StatusNotModified && res.ContentLength < 0 {
			res.ContentLength = 0
		}
	}
	return nil
}

// takeTrailers takes the trailer block that ends what the peer sends on s; c.mu is held.
func (s *stream) takeTrailers(f *http2.MetaHeadersFrame) error {
	if !f.StreamEnded() || s.remoteDone {
		return errors.New("a second header block that is not the trailers")
	}
	s.trailer = fieldsHeader(f)
	return s.ended()
}

// declaredTrailers are the trailers that h announces in its Trailer header, with no values yet.
func declaredTrailers(h http.Header) http.Header {
	var t http.Header
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				if t == nil {
					t = http.Header{}
				}
				t[http.CanonicalHeaderKey(k)] = nil
			}
		}
	}
	return t
}

// ended marks the end of what the peer sends on s, checking its declared length; c.mu is held.
func (s *stream) ended() error {
	if s.wantLength >= 0 && s.gotLength != s.wantLength {
		return fmt.Errorf("%d bytes of data where content-length said %d", s.gotLength, s.wantLength)
	}
	s.remoteDone = true
	return nil
}

// fieldsHeader is a header block's regular fields as an http.Header. The values share one backing
// array, as net/textproto's do: one allocation rather than one per field.
func fieldsHeader(f *http2.MetaHeadersFrame) http.Header {
	fields := f.RegularFields()
	h := make(http.Header, len(fields))
	values := make([]string, len(fields))
	for i, hf := range fields {
		k := canonical(hf.Name)
		values[i] = hf.Value
		if vv, ok := h[k]; ok {
			h[k] = append(vv, hf.Value) // a repeated field: its own slice, after a copy
		} else {
			h[k] = values[i : i+1 : i+1]
		}
	}
	return h
}

func (cc *ClientConn) goAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goingAway = true
	for id, s := range cc.streams {
		if id > f.LastStreamID {
			s.resetLocked(fmt.Errorf("%w: %s is going away", ErrUnprocessed, cc.nc.RemoteAddr()))
			delete(cc.streams, id)
			cc.active--
		}
	}
	idle := cc.active == 0
	cc.mu.Unlock()
	if idle {
		cc.Close()
	}
}

func (cc *ClientConn) peerReset(s *stream, code http2.ErrCode) {
	defer cc.over(s)
	cc.mu.Lock()
	switch {
	case code == http2.ErrCodeNo && s.remoteDone:
		// The response is complete and the peer wants no more of the request.
		s.stopSend = true
		s.send.Broadcast()
	case code == http2.ErrCodeRefusedStream:
		s.resetLocked(fmt.Errorf("%w: %s refused the stream", ErrUnprocessed, cc.nc.RemoteAddr()))
	default:
		s.resetLocked(fmt.Errorf("h2peer: %s reset the stream: %v", cc.nc.RemoteAddr(), code))
	}
	cc.mu.Unlock()
}

// watch pings a quiet peer, and fails the connection if it does not answer.
func (cc *ClientConn) watch(after, timeout time.Duration) {
	var check func()
	check = func() {
		cc.mu.Lock()
		done := cc.err != nil
		cc.mu.Unlock()
		if done {
			return
		}
		if idle := time.Since(time.Unix(0, cc.lastRead.Load())); idle < after {
			time.AfterFunc(after-idle, check)
			return
		}
		sent := time.Now().UnixNano()
		cc.wmu.Lock()
		_ = cc.fr.WritePing(false, [8]byte{'s', 'k', 'e', 'i', 'n'})
		cc.wmu.Unlock()
		time.AfterFunc(timeout, func() {
			if cc.lastRead.Load() < sent {
				cc.fail(fmt.Errorf("h2peer: %s did not answer a ping within %s", cc.nc.RemoteAddr(), timeout))
				return
			}
			check()
		})
	}
	time.AfterFunc(after, check)
}

// body is a response's body as the stream receives it.
type body struct {
	cc  *ClientConn
	s   *stream
	res *http.Response
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.s.read(p)
	if err != nil {
		b.s.stopCancelling()
	}
	if err == io.EOF {
		// The trailers are the response's once its body has been read, as net/http has them.
		c := b.s.c
		c.mu.Lock()
		for k, vv := range b.s.trailer {
			if b.res.Trailer == nil {
				b.res.Trailer = http.Header{}
			}
			b.res.Trailer[k] = vv
		}
		b.s.trailer = nil
		c.mu.Unlock()
	}
	return n, err
}

var errBodyClosed = errors.New("h2peer: response body closed")

// Close gives up what remains of the response (and of the request, if it is still being sent).
func (b *body) Close() error {
	s := b.s
	s.stopCancelling()
	b.cc.abortWith(s, errBodyClosed, http2.ErrCodeCancel)
	s.discard()
	return nil
}
