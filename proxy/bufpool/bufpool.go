// Package bufpool lends the 32 KiB buffers that copying a response body needs, so that each
// proxied request does not allocate its own: most of the proxy's garbage was these buffers.
package bufpool

import "sync"

const size = 32 << 10

// Pool satisfies httputil.BufferPool.
type Pool struct{ p sync.Pool }

// Get lends a buffer.
func (b *Pool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, size)
}

// Put returns a buffer.
func (b *Pool) Put(buf []byte) {
	if cap(buf) == size {
		buf = buf[:size]
		b.p.Put(&buf)
	}
}
