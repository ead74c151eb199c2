package http1

import (
	"net"
	"net/http"
	"sync"
)

// ServeOne serves one connection with srv, returning once the connection is closed: what a
// Fallback does, with a server of the caller's settings.
func ServeOne(srv *http.Server, conn net.Conn) {
	_ = srv.Serve(&oneConnListener{conn: conn})
}

// oneConnListener serves one connection to an http.Server.
type oneConnListener struct {
	conn net.Conn
	done bool
	mu   sync.Mutex
	wait chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		if l.wait == nil {
			return nil, net.ErrClosed
		}
		<-l.wait
		return nil, net.ErrClosed
	}
	l.done = true
	l.wait = make(chan struct{})
	l.mu.Unlock()
	return &notifyConn{Conn: l.conn, closed: l.wait}, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// notifyConn tells the listener when the served connection closes, so that Serve returns then.
type notifyConn struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *notifyConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
