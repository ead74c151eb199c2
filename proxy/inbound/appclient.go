package inbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/skeinmesh/skein/proxy/rawtcp"
)

// appClient sends HTTP/1 requests without a body to the application over kept-alive connections,
// on the caller's goroutine. net/http's Transport hands every request to a writer and a reader
// goroutine of the connection; on the inbound proxy's path, where the application is on localhost
// and answers at once, those hand-offs cost more than the exchange itself. Requests it does not
// take (see takes) go to the Transport.
type appClient struct {
	// maxIdle bounds the idle connections kept per application address; those idle for longer
	// than idleTimeout, when set, are closed.
	maxIdle     int
	idleTimeout time.Duration
	dialer      net.Dialer
	// now is the clock; time.Now when nil.
	now func() time.Time

	mu   sync.Mutex
	idle map[string][]*appConn
}

// appConn is one connection to the application.
type appConn struct {
	net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	addr string
	// idleSince is when it went back to the pool.
	idleSince time.Time
}

// takes tells whether the request is one appClient sends: idempotent, without a body (so that a
// request on a connection the application had just closed can be sent again), and not asking to
// switch protocols.
func (c *appClient) takes(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	return (req.Body == nil || req.Body == http.NoBody) && req.Header.Get("Upgrade") == ""
}

// maxInformational bounds the 1xx answers skipped before the final one.
const maxInformational = 5

// RoundTrip sends req to req.URL.Host. A kept-alive connection that fails before any answer came
// on it is one the application closed meanwhile: the request goes again on a new connection.
func (c *appClient) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		ac, reused, err := c.get(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, answered, err := c.exchange(ac, req)
		if err == nil {
			return resp, nil
		}
		ac.Close()
		if !reused || answered || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// exchange writes the request and reads the answer's head; answered tells whether any of the
// answer had arrived when it failed.
func (c *appClient) exchange(ac *appConn, req *http.Request) (resp *http.Response, answered bool, err error) {
	// Cancelling the request (the client went away, or gave up) interrupts whatever the connection
	// is blocked on, until the body is done with.
	stop := afterFunc(req.Context(), func() { ac.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, answered, err
	}
	if err := writeRequest(ac.bw, req); err != nil {
		return fail(err)
	}
	if err := ac.bw.Flush(); err != nil {
		return fail(err)
	}
	for range maxInformational + 1 {
		if _, err := ac.br.Peek(1); err != nil {
			return fail(err)
		}
		answered = true
		if resp = leanResponse(ac.br, req); resp == nil {
			if resp, err = http.ReadResponse(ac.br, req); err != nil {
				return fail(err)
			}
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return fail(errors.New("the application switched protocols on a request that did not ask to"))
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue // an informational answer; the final one follows
		}
		reusable := !resp.Close && !req.Close
		if resp.Body == http.NoBody {
			c.release(ac, stop, reusable)
			return resp, true, nil
		}
		resp.Body = &appBody{ReadCloser: resp.Body, c: c, ac: ac, stop: stop, reusable: reusable}
		return resp, true, nil
	}
	return fail(fmt.Errorf("more than %d informational answers", maxInformational))
}

// afterFunc is context.AfterFunc, by way of the context's own AfterFunc when it has one: an
// h2peer request's has, which spares the context and the map that context.AfterFunc would make.
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if a, ok := ctx.(interface{ AfterFunc(func()) func() bool }); ok {
		return a.AfterFunc(f)
	}
	return context.AfterFunc(ctx, f)
}

// release puts the connection back in the pool when its exchange ended cleanly, else closes it.
func (c *appClient) release(ac *appConn, stop func() bool, reusable bool) {
	if !stop() || !reusable || ac.br.Buffered() > 0 {
		// The request was cancelled, and the connection's deadline is in the past; or it cannot
		// carry another exchange; or the application sent more than its answer.
		ac.Close()
		return
	}
	ac.idleSince = time.Now()
	if c.now != nil {
		ac.idleSince = c.now()
	}
	c.mu.Lock()
	if c.idle == nil {
		c.idle = map[string][]*appConn{}
	}
	// The pool is used last in, first out, so the longest idle are first: those idle too long go,
	// rather than wait, possibly closed by the application already, for a burst to reach them.
	conns := c.idle[ac.addr]
	stale := 0
	for c.idleTimeout > 0 && stale < len(conns) && ac.idleSince.Sub(conns[stale].idleSince) > c.idleTimeout {
		stale++
	}
	closing := append([]*appConn(nil), conns[:stale]...)
	if stale > 0 {
		conns = append(conns[:0], conns[stale:]...)
	}
	if len(conns) < c.maxIdle {
		conns = append(conns, ac)
	} else {
		closing = append(closing, ac)
	}
	c.idle[ac.addr] = conns
	c.mu.Unlock()
	for _, old := range closing {
		old.Close()
	}
}

// get takes the most recently used idle connection to addr, or dials one.
func (c *appClient) get(ctx context.Context, addr string) (ac *appConn, reused bool, err error) {
	c.mu.Lock()
	if conns := c.idle[addr]; len(conns) > 0 {
		ac = conns[len(conns)-1]
		c.idle[addr] = conns[:len(conns)-1]
	}
	c.mu.Unlock()
	if ac != nil {
		return ac, true, nil
	}
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	conn = rawtcp.Wrap(conn)
	return &appConn{Conn: conn, br: bufio.NewReader(conn), bw: bufio.NewWriter(conn), addr: addr}, false, nil
}

// CloseIdle closes the idle connections.
func (c *appClient) CloseIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, conns := range idle {
		for _, ac := range conns {
			ac.Close()
		}
	}
}

// appBody releases the connection, once, when the body was read to its end (it can be used
// again if reusable), or closes it when the body was closed or failed before.
type appBody struct {
	io.ReadCloser
	c        *appClient
	ac       *appConn
	stop     func() bool
	reusable bool
	once     sync.Once
}

func (b *appBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(func() { b.c.release(b.ac, b.stop, err == io.EOF && b.reusable) })
	}
	return n, err
}

func (b *appBody) Close() error {
	// Before its end, the rest of the body is not worth reading: the connection goes, which also
	// ends the Close below at once.
	b.once.Do(func() { b.c.release(b.ac, b.stop, false) })
	return b.ReadCloser.Close()
}
