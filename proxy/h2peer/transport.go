package h2peer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/proxy/coalesce"
)

// Transport sends requests to one peer proxy over as few connections as its stream limit allows.
type Transport struct {
	// Dial connects to the peer with TLS, offering ALPN and, for a peer of an older version,
	// "h2" after it, and says which the peer chose.
	Dial func(ctx context.Context) (conn net.Conn, alpn string, err error)
	// Fallback serves a connection on which the peer chose "h2" over ALPN.
	Fallback *http2.Transport
	// PingAfter and PingTimeout: see NewClientConn.
	PingAfter, PingTimeout time.Duration

	mu      sync.Mutex
	conns   []peerConn
	dialing *dialCall
}

type peerConn interface {
	RoundTrip(*http.Request) (*http.Response, error)
	CanTakeNewRequest() bool
	dead() bool
}

type dialCall struct {
	done chan struct{}
	err  error
}

// fallbackConn is x/net/http2's client on a connection where the peer chose "h2".
type fallbackConn struct{ *http2.ClientConn }

func (f fallbackConn) dead() bool { st := f.State(); return st.Closed || st.Closing }

// RoundTrip sends req on a connection that can take it, dialling one if none can.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, err := t.conn(req.Context())
		if err != nil {
			closeBody(req)
			return nil, err
		}
		res, err := pc.RoundTrip(req)
		if errors.Is(err, errUnusable) && attempt < 3 {
			continue // the connection went away before the request was sent
		}
		return res, err
	}
}

func (t *Transport) conn(ctx context.Context) (peerConn, error) {
	t.mu.Lock()
	for {
		live := t.conns[:0]
		var found peerConn
		for _, pc := range t.conns {
			if pc.dead() {
				continue
			}
			live = append(live, pc)
			if found == nil && pc.CanTakeNewRequest() {
				found = pc
			}
		}
		clear(t.conns[len(live):])
		t.conns = live
		if found != nil {
			t.mu.Unlock()
			return found, nil
		}
		if d := t.dialing; d != nil {
			t.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
			if d.err != nil {
				return nil, d.err
			}
			t.mu.Lock()
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		t.dialing = d
		t.mu.Unlock()
		pc, err := t.dial(ctx)
		t.mu.Lock()
		t.dialing = nil
		d.err = err
		close(d.done)
		if err != nil {
			t.mu.Unlock()
			return nil, err
		}
		t.conns = append(t.conns, pc)
		t.mu.Unlock()
		return pc, nil
	}
}

func (t *Transport) dial(ctx context.Context) (peerConn, error) {
	nc, alpn, err := t.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if alpn != ALPN && t.Fallback != nil {
		cc, err := t.Fallback.NewClientConn(coalesce.New(nc))
		if err != nil {
			nc.Close()
			return nil, err
		}
		return fallbackConn{cc}, nil
	}
	return NewClientConn(nc, t.PingAfter, t.PingTimeout)
}
