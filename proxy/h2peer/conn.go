// Package h2peer is the HTTP/2 that two skein proxies speak to each other: a client that multiplexes
// an outbound proxy's requests over one connection to a peer proxy, and a server that serves them on
// the peer's inbound side.
//
// x/net/http2's general Transport and Server pass each request through several goroutines: on the
// client a goroutine per request beside the caller's and the connection's reader; on the server a
// serve loop between the reader and each request's handler, through which every frame to be written
// goes. Profiles put that hand-off at about a third of a proxy's CPU. Here the goroutine that owns a
// request or a response encodes and writes its own frames, and one reader per connection decodes
// the peer's frames and gives each to its stream. Framing and header compression are x/net/http2's
// Framer and hpack; what goes on the wire is plain HTTP/2 (RFC 9113), under its own ALPN name so
// that only proxies that speak this package meet it.
package h2peer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/skeinmesh/skein/proxy/coalesce"
)

// ALPN is the TLS application protocol under which proxies speak this package's HTTP/2.
const ALPN = "skein.h2"

const (
	// streamWindow and connWindow are what the peer may send on a stream and on the connection
	// before this side has read it: large, so that window updates are rare, and bounded, so that a
	// reader that stalls holds a bounded amount of memory.
	streamWindow = 1 << 20
	connWindow   = 16 << 20
	// maxHeaderList bounds a received header list (the outbound proxy takes requests with up to
	// 64 KiB of headers).
	maxHeaderList = 1 << 20
	// maxStreams is the server's limit on the streams a client has open at once.
	maxStreams = 1000
	// initialWindow and initialMaxFrame are HTTP/2's defaults, until the peer's SETTINGS say more.
	initialWindow   = 65535
	initialMaxFrame = 16384
	maxWindow       = 1<<31 - 1
)

// ErrUnprocessed is wrapped by the error of a request the peer did not process at all (it refused
// the stream, or was going away before it), so that it may be sent again anywhere.
var ErrUnprocessed = errors.New("request not processed by the peer")

var errConnDone = errors.New("h2peer: connection closed")

// conn is what client and server connections share: the framer, the flow-control windows, the
// streams and the reader loop.
type conn struct {
	// nc is the connection, its writes coalesced: the frames that a connection's goroutines write
	// close together go out in one TLS record and one system call.
	nc       *coalesce.Conn
	br       *bufio.Reader
	fr       *http2.Framer // read only by the reader goroutine; written under wmu
	hb       *headerBlock  // the reader's decoder of header blocks
	lastRead atomic.Int64  // unix nanoseconds of the last frame read

	wmu  sync.Mutex
	enc  *hpack.Encoder
	hbuf []byte // the header block being encoded

	// mu guards what follows, and every stream's state. Lock order: wmu before mu.
	mu             sync.Mutex
	streams        map[uint32]*stream
	sendWin        int64 // what the peer lets us send on the connection
	recvWin        int64 // what we let the peer send on the connection
	recvUnacked    int64 // read by the streams' readers since the last connection window update
	peerInitWin    int64
	peerMaxFrame   int
	peerMaxStreams int
	err            error // set once the connection is done
}

type hbufWriter struct{ c *conn }

func (w hbufWriter) Write(p []byte) (int, error) {
	w.c.hbuf = append(w.c.hbuf, p...)
	return len(p), nil
}

// queueWriter writes without waiting for room: frames are written under wmu, which the reader too
// takes to answer pings and grant window, and a reader held up behind a write to a peer that is
// not reading (because its own reader waits likewise) would deadlock the connection. Those who
// write much wait for room first, before they take wmu.
type queueWriter struct{ c *coalesce.Conn }

func (w queueWriter) Write(p []byte) (int, error) { return w.c.Queue(p) }

func newConn(raw net.Conn) *conn {
	nc := coalesce.New(raw)
	c := &conn{
		nc:             nc,
		streams:        map[uint32]*stream{},
		sendWin:        initialWindow,
		recvWin:        initialWindow,
		peerInitWin:    initialWindow,
		peerMaxFrame:   initialMaxFrame,
		peerMaxStreams: maxStreams,
	}
	c.br = bufio.NewReaderSize(nc, 32<<10)
	c.fr = http2.NewFramer(queueWriter{nc}, c.br)
	c.hb = newHeaderBlock()
	c.enc = hpack.NewEncoder(hbufWriter{c})
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// stream is one request and its response, from either side.
type stream struct {
	c  *conn
	id uint32
	// recv wakes a reader of the stream's body or (on the client) the wait for its response;
	// send wakes a writer waiting for flow-control window.
	recv, send sync.Cond

	// Receiving.
	buf        []byte // received data not yet read, from off
	off        int
	recvWin    int64 // what the peer may still send
	unacked    int64 // read since the last window update
	remoteDone bool  // the peer ended its side
	trailer    http.Header
	wantLength int64 // declared content-length of what is received, or -1
	gotLength  int64

	// Sending.
	sendWin   int64
	localDone bool // we ended our side
	// stopSend is set when the peer asked us to stop sending (RST_STREAM NO_ERROR after a complete
	// answer): the body writer stops quietly.
	stopSend bool

	// reset is why the stream ended abnormally, from either side; nil while it is well.
	reset error

	// On the client: the response once its header block has come (noBody if that ended the
	// stream); ready is closed then, or when the stream is reset; stopCancel, when set, stops
	// the request's cancellation from resetting the stream.
	res        *http.Response
	noBody     bool
	ready      chan struct{}
	woken      bool
	stopCancel func() bool
	// On the server: the request's context.
	ctx *streamCtx
}

func (c *conn) newStream(id uint32) *stream {
	s := &stream{c: c, id: id, recvWin: streamWindow, sendWin: c.peerInitWin, wantLength: -1}
	s.recv.L = &c.mu
	s.send.L = &c.mu
	return s
}

// settings are what each side says first: the windows above, and no server push.
func (c *conn) writeSettings(extra ...http2.Setting) error {
	c.recvWin = connWindow
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s := append([]http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
	}, extra...)
	if err := c.fr.WriteSettings(s...); err != nil {
		return err
	}
	return c.fr.WriteWindowUpdate(0, connWindow-initialWindow)
}

// writeHeaders encodes a header block with enc's callback and writes it on stream id, split into
// CONTINUATION frames as the peer's frame size requires. The caller holds wmu: hpack's state
// depends on the order in which header blocks go out.
func (c *conn) writeHeaders(id uint32, end bool, encode func(field func(name, value string))) error {
	c.hbuf = c.hbuf[:0]
	encode(func(name, value string) { c.enc.WriteField(hpack.HeaderField{Name: name, Value: value}) })
	block := c.hbuf
	c.mu.Lock()
	max := c.peerMaxFrame
	c.mu.Unlock()
	first := true
	for first || len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = frag[:max]
		}
		block = block[len(frag):]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
		} else {
			err = c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
		first = false
	}
	return nil
}

// sendData writes p on s as DATA frames, each within the peer's frame size and windows, waiting for
// window as needed; end ends our side of the stream with the last frame (or an empty one).
func (c *conn) sendData(s *stream, p []byte, end bool) error {
	for {
		c.mu.Lock()
		for len(p) > 0 && (s.sendWin <= 0 || c.sendWin <= 0) && s.reset == nil && !s.stopSend && c.err == nil {
			s.send.Wait()
		}
		if err := s.sendErr(); err != nil {
			c.mu.Unlock()
			return err
		}
		n := max(0, min(int64(len(p)), s.sendWin, c.sendWin, int64(c.peerMaxFrame)))
		s.sendWin -= n
		c.sendWin -= n
		last := end && int(n) == len(p)
		if last {
			s.localDone = true
		}
		c.mu.Unlock()
		if err := c.nc.WaitRoom(); err != nil {
			return err
		}
		c.wmu.Lock()
		err := c.fr.WriteData(s.id, last, p[:n])
		c.wmu.Unlock()
		p = p[n:]
		if err != nil || last || len(p) == 0 && !end {
			return err
		}
	}
}

// sendTrailers ends our side of s with a trailer block.
func (c *conn) sendTrailers(s *stream, trailer http.Header) error {
	c.mu.Lock()
	err := s.sendErr()
	if err == nil {
		s.localDone = true
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeHeaders(s.id, true, func(field func(string, string)) {
		for k, vv := range trailer {
			if k = strings.TrimPrefix(k, http.TrailerPrefix); connectionHeaders[k] || k == "" {
				continue
			}
			for _, v := range vv {
				field(lower(k), v)
			}
		}
	})
}

var errStopSend = errors.New("h2peer: the peer needs no more of the request")

// sendErr is why nothing more may be sent on s, if anything; c.mu is held.
func (s *stream) sendErr() error {
	switch {
	case s.reset != nil:
		return s.reset
	case s.stopSend:
		return errStopSend
	case s.c.err != nil:
		return s.c.err
	}
	return nil
}

// read gives the stream's received data to its reader, granting the peer window as it is read.
func (s *stream) read(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	for s.off == len(s.buf) && !s.remoteDone && s.reset == nil {
		s.recv.Wait()
	}
	if s.off < len(s.buf) {
		n := copy(p, s.buf[s.off:])
		s.off += n
		if s.off == len(s.buf) {
			s.buf, s.off = s.buf[:0], 0
		}
		sw, cw := s.credit(int64(n))
		c.mu.Unlock()
		c.writeWindowUpdates(s.id, sw, cw)
		return n, nil
	}
	defer c.mu.Unlock()
	if s.remoteDone {
		return 0, io.EOF
	}
	return 0, s.reset
}

// credit counts n bytes read from s and returns the window updates due, for the stream and for the
// connection, once a quarter of a window has been read. c.mu is held.
func (s *stream) credit(n int64) (stream, conn uint32) {
	s.unacked += n
	if !s.remoteDone && s.reset == nil && s.unacked >= streamWindow/4 {
		stream = uint32(s.unacked)
		s.recvWin += s.unacked
		s.unacked = 0
	}
	return stream, s.c.creditConn(n)
}

// discard drops what s has received and not been read, giving its window back to the connection.
func (s *stream) discard() {
	c := s.c
	c.mu.Lock()
	n := int64(len(s.buf) - s.off)
	s.buf, s.off = nil, 0
	_, cw := s.credit(n)
	c.mu.Unlock()
	c.writeWindowUpdates(s.id, 0, cw)
}

func (c *conn) writeWindowUpdates(id, stream, conn uint32) {
	if stream == 0 && conn == 0 {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if stream > 0 {
		_ = c.fr.WriteWindowUpdate(id, stream)
	}
	if conn > 0 {
		_ = c.fr.WriteWindowUpdate(0, conn)
	}
}

func (c *conn) writeRST(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	_ = c.fr.WriteRSTStream(id, code)
	c.wmu.Unlock()
}

// resetLocked ends s abnormally with err, waking whoever waits on it; c.mu is held.
func (s *stream) resetLocked(err error) {
	if s.reset == nil {
		s.reset = err
	}
	s.wake()
	s.recv.Broadcast()
	s.send.Broadcast()
}

// wake closes ready, once; c.mu is held.
func (s *stream) wake() {
	if s.ready != nil && !s.woken {
		s.woken = true
		close(s.ready)
	}
}

func (s *stream) stopCancelling() {
	if s.stopCancel != nil {
		s.stopCancel()
	}
}

// fail ends the connection: every stream fails with err, and the connection is closed.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	for _, s := range c.streams {
		s.resetLocked(err)
	}
	c.mu.Unlock()
	c.nc.Close()
}

// frameHandler is what differs between the two sides' readers.
type frameHandler interface {
	headers(f *http2.MetaHeadersFrame) error
	goAway(f *http2.GoAwayFrame)
	// peerReset is the peer's RST_STREAM.
	peerReset(s *stream, code http2.ErrCode)
	// over is called when the peer has ended its side of s, or s was reset here.
	over(s *stream)
}

// readLoop reads the peer's frames until the connection fails; a protocol error ends it with
// GOAWAY.
func (c *conn) readLoop(h frameHandler) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.streamError(h, se.StreamID, se.Code, err)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAwayAndFail(http2.ErrCode(ce), err)
				return
			}
			c.fail(fmt.Errorf("h2peer: reading from %s: %w", c.nc.RemoteAddr(), err))
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if err := c.dispatch(h, f); err != nil {
			var ce http2.ConnectionError
			code := http2.ErrCodeProtocol
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			c.goAwayAndFail(code, err)
			return
		}
	}
}

func (c *conn) goAwayAndFail(code http2.ErrCode, err error) {
	c.wmu.Lock()
	_ = c.fr.WriteGoAway(0, code, nil)
	c.wmu.Unlock()
	c.fail(fmt.Errorf("h2peer: %s: %w", c.nc.RemoteAddr(), err))
}

// streamError resets one stream for an error in what the peer sent on it.
func (c *conn) streamError(h frameHandler, id uint32, code http2.ErrCode, err error) {
	c.writeRST(id, code)
	c.mu.Lock()
	s := c.streams[id]
	if s != nil {
		if err == nil {
			err = fmt.Errorf("h2peer: stream %d from %s: %v", id, c.nc.RemoteAddr(), code)
		}
		s.resetLocked(err)
	}
	c.mu.Unlock()
	if s != nil {
		h.over(s)
	}
}

func (c *conn) dispatch(h frameHandler, f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		mh, err := c.hb.read(c.fr, f)
		var se http2.StreamError
		if errors.As(err, &se) {
			c.streamError(h, se.StreamID, se.Code, err)
			return nil
		}
		if err != nil {
			return err
		}
		return h.headers(mh)
	case *http2.DataFrame:
		return c.data(h, f)
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.SettingsFrame:
		return c.settings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.wmu.Lock()
			_ = c.fr.WritePing(true, f.Data)
			c.wmu.Unlock()
		}
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		s := c.streams[f.StreamID]
		c.mu.Unlock()
		if s != nil {
			h.peerReset(s, f.ErrCode)
		}
	case *http2.GoAwayFrame:
		h.goAway(f)
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // push is disabled by our settings
	}
	// PRIORITY and frames of unknown types are ignored, as RFC 9113 allows.
	return nil
}

func (c *conn) data(h frameHandler, f *http2.DataFrame) error {
	n := int64(f.Length)
	c.mu.Lock()
	if n > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= n
	s := c.streams[f.StreamID]
	if s == nil || s.remoteDone || s.reset != nil {
		// A stream already over (reset, say, with frames still on the way): its data is dropped
		// and the connection's window given back.
		cw := c.creditConn(n)
		c.mu.Unlock()
		c.writeWindowUpdates(0, 0, cw)
		return nil
	}
	if n > s.recvWin {
		c.mu.Unlock()
		c.streamError(h, s.id, http2.ErrCodeFlowControl, nil)
		return nil
	}
	s.recvWin -= n
	data := f.Data()
	s.buf = append(s.buf, data...)
	s.gotLength += int64(len(data))
	var sw, cw uint32
	if pad := n - int64(len(data)); pad > 0 {
		sw, cw = s.credit(pad)
	}
	var bad error
	if s.wantLength >= 0 && s.gotLength > s.wantLength {
		bad = fmt.Errorf("more data than its content-length, %d", s.wantLength)
	} else if f.StreamEnded() {
		bad = s.ended()
	}
	s.recv.Broadcast()
	c.mu.Unlock()
	c.writeWindowUpdates(s.id, sw, cw)
	switch {
	case bad != nil:
		c.streamError(h, s.id, http2.ErrCodeProtocol, fmt.Errorf("h2peer: stream %d from %s: %w", s.id, c.nc.RemoteAddr(), bad))
	case f.StreamEnded():
		h.over(s)
	}
	return nil
}

// creditConn counts n bytes read, or dropped with a stream that is over, against the connection's
// window, and returns the window update due once a quarter of the window is owed; c.mu is held.
func (c *conn) creditConn(n int64) uint32 {
	c.recvUnacked += n
	if c.recvUnacked < connWindow/4 {
		return 0
	}
	cw := uint32(c.recvUnacked)
	c.recvWin += c.recvUnacked
	c.recvUnacked = 0
	return cw
}

func (c *conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if c.sendWin+inc > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendWin += inc
		for _, s := range c.streams {
			s.send.Broadcast()
		}
		return nil
	}
	if s := c.streams[f.StreamID]; s != nil {
		if s.sendWin+inc > maxWindow {
			s.resetLocked(fmt.Errorf("h2peer: stream %d: window overflow", s.id))
			return nil
		}
		s.sendWin += inc
		s.send.Broadcast()
	}
	return nil
}

func (c *conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	tableSize := int64(-1)
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWin
			c.peerInitWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				st.send.Broadcast()
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = int(min(s.Val, 1<<20))
		case http2.SettingHeaderTableSize:
			tableSize = int64(s.Val)
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// Lock order: wmu before mu, never wmu while holding mu.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if tableSize >= 0 {
		c.enc.SetMaxDynamicTableSizeLimit(uint32(tableSize))
	}
	return c.fr.WriteSettingsAck()
}

// Header names: HTTP/2 sends them in lower case; Go keeps them canonical.

var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, h := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Age",
		"Access-Control-Allow-Origin", "Allow", "Authorization", "Cache-Control", "Connection",
		"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag", "Expect",
		"Expires", "From", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
		"If-Unmodified-Since", "Last-Modified", "Link", "Location", "Max-Forwards", "Origin",
		"Proxy-Authenticate", "Proxy-Authorization", "Range", "Referer", "Refresh", "Retry-After",
		"Server", "Set-Cookie", "Strict-Transport-Security", "Te", "Trailer", "Transfer-Encoding",
		"User-Agent", "Vary", "Via", "Www-Authenticate", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "Grpc-Status", "Grpc-Message", "Grpc-Encoding", "Grpc-Accept-Encoding",
		"Grpc-Timeout", "Skein-Orig-Proto", "Skein-Client-Id", "Skein-Forwarded-Client-Id",
	} {
		m[strings.ToLower(h)] = h
	}
	return m
}()

var commonLower = func() map[string]string {
	m := map[string]string{}
	for l, c := range commonHeaders {
		m[c] = l
	}
	return m
}()

func canonical(lower string) string {
	if c, ok := commonHeaders[lower]; ok {
		return c
	}
	return http.CanonicalHeaderKey(lower)
}

func lower(name string) string {
	if l, ok := commonLower[name]; ok {
		return l
	}
	return strings.ToLower(name)
}

// connectionHeaders are HTTP/1's hop-by-hop headers, which HTTP/2 forbids.
var connectionHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Upgrade": true, "Host": true,
}
