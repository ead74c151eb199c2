package h2peer

import (
	"context"
	"slices"
	"sync"
	"time"
)

// streamCtx is a request's context on the server: done when its stream is reset, its handler has
// returned or its connection has ended. A context.WithCancel of the connection's context would do,
// at the price of a registration with that context per request, and, for each context.AfterFunc
// the handler makes (the inbound proxy's application client makes one per request), a context and
// a map of its children. This one keeps its AfterFunc functions in a slice, and context.AfterFunc
// uses its AfterFunc method.
type streamCtx struct {
	values context.Context // the connection's, for Value; never done
	mu     sync.Mutex
	done   chan struct{} // made when asked for
	err    error
	afters []afterFunc
	first  [1]afterFunc // afters' room for the first, which is most often the only one
	nextID int
}

type afterFunc struct {
	id int
	f  func()
}

func (c *streamCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *streamCtx) Value(key any) any {
	if c.values == nil {
		return nil
	}
	return c.values.Value(key)
}

func (c *streamCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *streamCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

// AfterFunc arranges for f to run in its own goroutine once c is done, as context.AfterFunc.
func (c *streamCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	if c.afters == nil {
		c.afters = c.first[:0]
	}
	c.afters = append(c.afters, afterFunc{id: id, f: f})
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, a := range c.afters {
			if a.id == id {
				c.afters = slices.Delete(c.afters, i, i+1)
				return true
			}
		}
		return false
	}
}

func (c *streamCtx) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, a := range afters {
		go a.f()
	}
}
