// Package accept runs a handler for every connection a listener accepts and can wait for them all
// to end, which is what draining needs.
package accept

import (
	"context"
	"errors"
	"net"
	"sync"
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
