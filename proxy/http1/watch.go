package http1

import (
	"errors"
	"os"
	"time"
)

// watchAfter is how long a request runs before its connection is watched for the client leaving.
// net/http watches every request, with a goroutine and a read each; most of a proxy's requests
// are answered well within this, and a client that leaves sooner is noticed when its answer is
// written.
const watchAfter = 100 * time.Millisecond

// watch is the state of the watch for the client leaving while a request runs: once the request
// has run watchAfter and its body is read, a read of the connection waits; the client closing it
// cancels the request (its context is the connection's), and a byte of a next request is kept.
type watch struct {
	timer   *time.Timer
	body    *body // the request's, if it has one
	running bool  // the handler has not returned
	active  bool  // the read is under way
	done    chan struct{}
	pending bool // b is the next byte of the connection
	b       [1]byte
}

// Read reads the connection for the read buffer: the watch's byte first.
func (c *serverConn) Read(p []byte) (int, error) {
	if c.w.pending && len(p) > 0 {
		c.w.pending = false
		p[0] = c.w.b[0]
		return 1, nil
	}
	return c.conn.Read(p)
}

// startWatch arms the watch for the request about to run.
func (c *serverConn) startWatch(b *body) {
	c.wmu.Lock()
	c.w.running, c.w.body = true, b
	c.wmu.Unlock()
	if c.w.timer == nil {
		c.w.timer = time.AfterFunc(watchAfter, c.watchFired)
	} else {
		c.w.timer.Reset(watchAfter)
	}
}

// watchFired starts the read, unless the request is done or its body is still to be read, in
// which case the body's reads see the client leave, and the watch waits some more.
func (c *serverConn) watchFired() {
	c.wmu.Lock()
	if !c.w.running || c.w.active {
		c.wmu.Unlock()
		return
	}
	if b := c.w.body; b != nil && !b.read() {
		c.w.timer.Reset(watchAfter)
		c.wmu.Unlock()
		return
	}
	c.w.active = true
	c.w.done = make(chan struct{})
	c.wmu.Unlock()
	defer close(c.w.done)
	if c.br.Buffered() > 0 {
		return // the client sent more already: it is still there, and the read buffer is not ours
	}
	n, err := c.conn.Read(c.w.b[:])
	switch {
	case n == 1:
		c.w.pending = true
	case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		c.cancel() // the client is gone: so is its request
	}
}

// stopWatch ends the watch once the handler has returned, waiting for its read to stop.
func (c *serverConn) stopWatch() {
	c.w.timer.Stop()
	c.wmu.Lock()
	c.w.running = false
	c.w.body = nil
	active := c.w.active
	c.w.active = false
	c.wmu.Unlock()
	if active {
		c.conn.SetReadDeadline(time.Unix(1, 0))
		<-c.w.done
		c.conn.SetReadDeadline(time.Time{})
	}
}
