// Package http1 serves HTTP/1.1 on the proxy's client connections. It parses and answers the plain
// requests that are nearly all of an application's traffic itself, without net/http's server,
// whose goroutine per request (to notice a client gone), deadlines, copies and buffers profiles put
// at a fifth of the outbound proxy's CPU. The first request it does not take on (an upgrade, an
// Expect, a chunked body, HTTP/1.0, a header over its buffer, anything malformed or unusual) hands
// the connection, with what was read of it, to net/http's server, which answers that request and
// the rest of the connection as it always did. So this package need only be right about what it
// accepts; every error answer is net/http's.
package http1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"
)

// bufSize is the size of a connection's buffers. A request whose header does not fit in it goes
// to net/http, which takes headers up to its own limit.
const bufSize = 4 << 10

// maxDiscard is how much of a request body the handler left unread is read and thrown away to
// keep the connection; beyond it the connection is closed, as net/http does.
const maxDiscard = 256 << 10

// Server serves HTTP/1.1 connections.
type Server struct {
	// HeaderTimeout bounds the wait for the rest of a request's header once its first byte has
	// come: a client slower than that (slowloris) has its connection closed, as net/http does.
	HeaderTimeout time.Duration
	// Fallback serves the rest of a connection with h and net/http; conn reads what was already
	// read first. It returns when the connection is done.
	Fallback func(conn net.Conn, h http.Handler)
	// Log reports handlers' panics.
	Log *slog.Logger
	// ConnContext, when set, makes the context of a connection, every request's, from a fresh one.
	ConnContext func(context.Context) context.Context

	mu       sync.Mutex
	draining bool
	idle     map[*serverConn]struct{}
}

// serverConn is one connection served.
type serverConn struct {
	s       *Server
	h       http.Handler
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	tmpl    *http.Request // carries the connection's context into every request
	remote  string
	held    []byte // a response body held back to learn its length
	scratch [20]byte
	cancel  context.CancelFunc // ends the connection's context, which is every request's

	wmu sync.Mutex // guards w
	w   watch
}

// ServeConn serves conn with h until the client closes it, a response needs it closed, or
// Shutdown. The caller closes conn.
func (s *Server) ServeConn(conn net.Conn, h http.Handler) {
	c := &serverConn{s: s, h: h, conn: conn, bw: bufio.NewWriterSize(conn, bufSize), remote: conn.RemoteAddr().String()}
	c.br = bufio.NewReaderSize(c, bufSize)
	// A request's context is its connection's: HTTP/1 has one request at a time, and the
	// connection's end is the client's only way to give up on one.
	ctx := context.Background()
	if s.ConnContext != nil {
		ctx = s.ConnContext(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.tmpl, c.cancel = new(http.Request).WithContext(ctx), cancel
	for {
		if !s.setIdle(c, true) {
			return
		}
		_, err := c.br.Peek(1)
		s.setIdle(c, false)
		if err != nil {
			return
		}
		head, err := c.readHead()
		if err != nil {
			return
		}
		r := newRequest(c, head)
		if r == nil {
			s.Fallback(&replayConn{Conn: conn, r: c.br}, h)
			return
		}
		if !c.serve(r, len(head)) || ctx.Err() != nil {
			return
		}
	}
}

// readHead waits for a request's header, up to the blank line, to be in the read buffer, with
// HeaderTimeout when it is not there already. It returns nil when the header comes in time but
// does not fit, for net/http to deal with.
func (c *serverConn) readHead() ([]byte, error) {
	deadline := false
	defer func() {
		if deadline {
			c.conn.SetReadDeadline(time.Time{})
		}
	}()
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if i := indexBlankLine(buf); i >= 0 {
			return buf[:i], nil
		}
		if len(buf) == c.br.Size() {
			return nil, nil
		}
		if !deadline && c.s.HeaderTimeout > 0 {
			deadline = true
			c.conn.SetReadDeadline(time.Now().Add(c.s.HeaderTimeout))
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, err // a timeout or a cut, which net/http too ends with the connection
		}
	}
}

// indexBlankLine is the length of the header in buf, to the end of its blank line, or -1.
func indexBlankLine(buf []byte) int {
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

// serve runs the handler for r, whose header was headLen bytes of the read buffer, and says
// whether the connection may carry another request.
func (c *serverConn) serve(r *http.Request, headLen int) (keep bool) {
	c.br.Discard(headLen)
	w := &response{c: c, req: r, header: make(http.Header), contentLength: -1}
	if r.Close || c.s.isDraining() {
		w.closeAfter = true
	}
	b, _ := r.Body.(*body)
	c.startWatch(b)
	returned := false
	defer func() {
		if returned {
			return
		}
		c.stopWatch()
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler && c.s.Log != nil {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.Log.Error("Panic serving a request", "peer", c.remote, "panic", p, "stack", string(buf))
			}
			// What was written goes out, cut short: the client must see it incomplete.
			if w.committed {
				c.bw.Flush()
			}
			keep = false
		}
	}()
	c.h.ServeHTTP(w, r)
	returned = true
	c.stopWatch()
	if c.s.isDraining() {
		w.closeAfter = true
	}
	w.finish()
	if b != nil && !b.finish() {
		w.closeAfter = true
	}
	return c.bw.Flush() == nil && !w.closeAfter
}

// setIdle marks c as waiting for a request, or not; it is false when the server is draining, and
// the connection should close rather than wait.
func (s *Server) setIdle(c *serverConn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !idle {
		delete(s.idle, c)
		return true
	}
	if s.draining {
		return false
	}
	if s.idle == nil {
		s.idle = map[*serverConn]struct{}{}
	}
	s.idle[c] = struct{}{}
	return true
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown closes the connections waiting for a request, and has the others close once their
// request is answered, which they tell the client with Connection: close when they still can.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	for c := range s.idle {
		c.conn.SetReadDeadline(time.Unix(1, 0)) // wakes the wait for a request, which then ends
	}
}

// replayConn is a connection handed to net/http: its reads come first from what this package
// buffered and did not use.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }
