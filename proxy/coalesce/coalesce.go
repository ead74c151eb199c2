// Package coalesce sends the writes that a connection's users make close together as one write.
//
// On the HTTP/2 connection between two proxies, x/net/http2 flushes after nearly every frame: the
// server writes a response's headers and its data in two flushes, and the client writes each
// request's headers on its own. Each flush is a TLS record and a system call, which profiles put at
// a third of a proxy's CPU. A Conn's Write copies the bytes and returns; its writer goroutine first
// lets every goroutine that is ready to run go ahead (they may have more to write), then sends all
// that is pending in one write. When nothing else is ready to run, that is at once.
package coalesce

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"time"
)

// maxPending bounds what is copied and not yet written; a Write beyond it waits for the writer, as
// a write to a slow peer would.
const maxPending = 256 << 10

// keptBuffer is the largest buffer kept for reuse once written: a burst does not keep its memory.
const keptBuffer = 64 << 10

// closeTimeout bounds how long Close waits for what is pending to be written.
const closeTimeout = 5 * time.Second

// Conn is a net.Conn whose writes are coalesced. A Write's error, when the connection fails, is
// reported by a later Write or Close.
type Conn struct {
	net.Conn

	kick chan struct{} // wakes the writer; buffered 1

	mu      sync.Mutex
	drained *sync.Cond // the writer has taken what was pending, or stopped
	pending []byte
	spare   []byte // the buffer last written, reused for what comes next
	writing bool   // the writer holds bytes it has not written yet
	err     error
	closed  bool
}

// New wraps conn; its writer goroutine runs until Close.
func New(conn net.Conn) *Conn {
	c := &Conn{Conn: conn, kick: make(chan struct{}, 1)}
	c.drained = sync.NewCond(&c.mu)
	go c.writer()
	return c
}

var errClosed = errors.New("coalesce: write on a closed connection")

// Write queues b and returns; the bytes go out with whatever else is written meanwhile. It waits
// while more than maxPending bytes are pending.
func (c *Conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.waitRoom()
	return c.queue(b)
}

// WaitRoom waits until a Write would not wait, and returns the connection's error if it failed. A
// user that must never be held up while it holds a lock of its own (an HTTP/2 connection's reader
// answering a ping, say, while another goroutine writes a large body) waits here first, and writes
// with Queue under its lock.
func (c *Conn) WaitRoom() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waitRoom()
	if c.closed && c.err == nil {
		return errClosed
	}
	return c.err
}

// Queue is Write without the wait: what is pending may pass maxPending by what its callers queue
// after WaitRoom.
func (c *Conn) Queue(b []byte) (int, error) {
	c.mu.Lock()
	return c.queue(b)
}

func (c *Conn) waitRoom() {
	for len(c.pending) >= maxPending && c.err == nil && !c.closed {
		c.drained.Wait()
	}
}

// queue appends b to what is pending and wakes the writer; c.mu is held, and released.
func (c *Conn) queue(b []byte) (int, error) {
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.closed:
		c.mu.Unlock()
		return 0, errClosed
	}
	c.pending = append(c.pending, b...)
	// Under mu, so that Close, which closes kick, cannot come in between.
	select {
	case c.kick <- struct{}{}:
	default: // the writer is already awake and will see these bytes
	}
	c.mu.Unlock()
	return len(b), nil
}

func (c *Conn) writer() {
	for range c.kick {
		// Let whatever is ready to run go first: the other half of a response, or other streams'
		// requests, join these bytes instead of following in a write of their own.
		runtime.Gosched()
		c.mu.Lock()
		for len(c.pending) > 0 && c.err == nil {
			buf := c.pending
			c.pending, c.writing = c.spare[:0], true
			c.drained.Broadcast()
			c.mu.Unlock()
			_, err := c.Conn.Write(buf)
			c.mu.Lock()
			c.writing = false
			// The spare is never what is pending now (the buffer handed out above): a buffer too
			// large to keep leaves none, rather than the one being filled.
			c.spare = nil
			if cap(buf) <= keptBuffer {
				c.spare = buf[:0]
			}
			if err != nil {
				c.err = err
			}
		}
		c.drained.Broadcast()
		c.mu.Unlock()
	}
}

// Close writes what is pending, within closeTimeout, then closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.Conn.Close()
	}
	c.closed = true
	deadline := time.AfterFunc(closeTimeout, func() { c.Conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer deadline.Stop()
	for (len(c.pending) > 0 || c.writing) && c.err == nil {
		c.drained.Wait()
	}
	c.mu.Unlock()
	close(c.kick)
	return c.Conn.Close()
}

// CloseWrite half-closes where the connection can, once what is pending is written.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	for (len(c.pending) > 0 || c.writing) && c.err == nil {
		c.drained.Wait()
	}
	c.mu.Unlock()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
