// Package detect tells, from a connection's first bytes, whether the client speaks HTTP/1, HTTP/2
// (prior knowledge, which gRPC uses) or something else, which the proxy then carries as opaque TCP.
package detect

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// Protocol is what a connection was found to speak.
type Protocol int

const (
	// Opaque is anything else: carried as a byte stream.
	Opaque Protocol = iota
	// HTTP1 is HTTP/1.x.
	HTTP1
	// HTTP2 is HTTP/2 with prior knowledge.
	HTTP2
)

func (p Protocol) String() string {
	return [...]string{"opaque", "http/1", "h2"}[p]
}

// Preface opens every HTTP/2 connection.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var methods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("DELETE "), []byte("HEAD "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE "),
}

// Classify decides from a connection's first bytes; ok is false while more bytes could change the answer.
func Classify(b []byte) (p Protocol, ok bool) {
	if len(b) == 0 {
		return Opaque, false
	}
	undecided := false
	if bytes.HasPrefix(b, []byte(Preface)) {
		return HTTP2, true
	}
	if bytes.HasPrefix([]byte(Preface), b) {
		undecided = true
	}
	for _, m := range methods {
		if bytes.HasPrefix(b, m) {
			return HTTP1, true
		}
		if bytes.HasPrefix(m, b) {
			undecided = true
		}
	}
	if undecided {
		return Opaque, false
	}
	return Opaque, true
}

// Detect reads from conn until Classify decides, for at most timeout; a client that says nothing in
// that time (a protocol where the server speaks first) is opaque. The returned conn replays what was read.
func Detect(conn net.Conn, timeout time.Duration) (Protocol, net.Conn, error) {
	buf := make([]byte, 0, len(Preface))
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Opaque, conn, err
	}
	defer conn.SetReadDeadline(time.Time{})
	p := Opaque
	for len(buf) < cap(buf) {
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var ok bool
		if p, ok = Classify(buf); ok {
			break
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p = Opaque
			break
		}
		if err != nil {
			return Opaque, &Replay{Conn: conn, prefix: buf}, err
		}
	}
	return p, &Replay{Conn: conn, prefix: buf}, nil
}

// Replay is a connection whose first bytes, already read, are read again.
type Replay struct {
	net.Conn
	prefix []byte
}

func (r *Replay) Read(p []byte) (int, error) {
	if len(r.prefix) > 0 {
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// CloseWrite half-closes the underlying connection where it can.
func (r *Replay) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
