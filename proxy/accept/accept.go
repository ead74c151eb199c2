// Package accept runs a handler for every connection a listener accepts and can wait for them all
// to end, which is what draining needs; HTTP2 also serves and drains HTTP/2 on them.
package accept

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/proxy/coalesce"
	"github.com/skeinmesh/skein/proxy/rawtcp"
)

// Loop serves connections, each in its own goroutine.
type Loop struct {
	wg sync.WaitGroup
}

// Serve accepts until the listener is closed, which is a clean end.
func (l *Loop) Serve(lis net.Listener, handle func(net.Conn)) error {
	for {
		conn, err := lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		conn = rawtcp.Wrap(conn)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			handle(conn)
		}()
	}
}

// Wait waits for the connections under way to end, up to ctx.
func (l *Loop) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// HTTP2 serves accepted connections, some of them as HTTP/2, and drains them all: HTTP/2 clients
// are told to go away once their requests are done.
type HTTP2 struct {
	Loop
	once sync.Once
	h2   *http2.Server
	base *http.Server // tracks the HTTP/2 connections, so that Drain can send them GOAWAY
}

func (s *HTTP2) init() {
	s.once.Do(func() {
		s.h2 = &http2.Server{}
		s.base = &http.Server{}
		_ = http2.ConfigureServer(s.base, s.h2)
	})
}

// ServeConn serves HTTP/2 on one connection until it ends. Its writes are coalesced: x/net/http2
// flushes after nearly every frame, and what its goroutines write close together then goes out in
// one TLS record and one system call.
func (s *HTTP2) ServeConn(conn net.Conn, h http.Handler) {
	s.init()
	link := coalesce.New(conn)
	defer link.Close()
	s.h2.ServeConn(link, &http2.ServeConnOpts{BaseConfig: s.base, Handler: h})
}

// Drain tells HTTP/2 connections to go away once their requests are done, and waits for the
// connections under way to finish, up to ctx. The listener must be closed first.
func (s *HTTP2) Drain(ctx context.Context) {
	s.init()
	_ = s.base.Shutdown(ctx)
	s.Wait(ctx)
}
