// Package rawtcp wraps TCP connections so that their reads and writes are made as raw system
// calls, which Go's scheduler does not see.
//
// The sockets are non-blocking, so a read or a write never waits in the kernel; but a write on
// loopback or a veth does the receiver's network processing and wake-up in the writer's system
// call, tens of microseconds on a small VM. A normal system call lets the runtime's monitor take
// the processor away from the thread after 20µs and hand it, with the goroutines waiting for it,
// to another thread; the writer's thread then parks. With GOMAXPROCS=1 that turns every such write
// into two thread wake-ups and a migration, and the monitor itself wakes every 20µs to look. A raw
// system call keeps the processor: the goroutines waiting meanwhile wait for at most that write.
// Waiting for a socket to be ready still goes through the runtime's poller, with deadlines.
package rawtcp

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write are raw system calls; everything else (deadlines,
// CloseWrite, ReadFrom's splice, SyscallConn) is the wrapped connection's.
type Conn struct {
	*net.TCPConn
	rd, wr op
}

// op is one direction's read or write in progress: the buffer and what was done, with the
// function handed to the RawConn made once per connection so that a call allocates nothing.
type op struct {
	name string
	wait func(func(fd uintptr) bool) error // the RawConn's Read or Write
	fn   func(fd uintptr) bool
	buf  []byte
	n    int
	err  syscall.Errno
}

// Wrap returns conn as a Conn when it is a *net.TCPConn, and conn itself otherwise.
func Wrap(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	c := &Conn{TCPConn: tc}
	c.rd = op{name: "read", wait: raw.Read}
	c.rd.fn = c.rd.read
	c.wr = op{name: "write", wait: raw.Write}
	c.wr.fn = c.wr.write
	return c
}

// Read reads like net.TCPConn's Read.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.do(&c.rd, b)
	if n == 0 && err == nil && len(b) > 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of b, like net.TCPConn's Write.
func (c *Conn) Write(b []byte) (int, error) {
	return c.do(&c.wr, b)
}

func (c *Conn) do(o *op, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	o.buf, o.n, o.err = b, 0, 0
	err := o.wait(o.fn)
	n, errno := o.n, o.err
	o.buf = nil
	if err == nil && errno != 0 {
		err = os.NewSyscallError(o.name, errno)
	}
	if err != nil {
		return n, c.opError(o.name, err)
	}
	return n, nil
}

// read makes one read(2); false asks the poller to wait until the socket is readable.
func (o *op) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&o.buf[0])), uintptr(len(o.buf)))
		switch errno {
		case 0:
			o.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		o.err = errno
		return true
	}
}

// write makes write(2)s until the buffer is written, the socket is full (false: the poller waits
// until it is writable, then write is called again) or one fails.
func (o *op) write(fd uintptr) bool {
	for o.n < len(o.buf) {
		rest := o.buf[o.n:]
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch errno {
		case 0:
			o.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			o.err = errno
			return true
		}
	}
	return true
}

// opError reports err as net.TCPConn would, unless the RawConn already did (deadlines, a closed
// connection); errors.Is sees through both to os.ErrDeadlineExceeded and net.ErrClosed.
func (c *Conn) opError(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
