// Package splice copies bytes both ways between two connections until both directions are done,
// passing half-closes through so that protocols that rely on them keep working.
package splice

import (
	"io"
	"net"
)

type closeWriter interface{ CloseWrite() error }

// Both copies a to b and b to a, then closes both. It returns the bytes copied each way.
func Both(a, b net.Conn) (aToB, bToA int64) {
	done := make(chan int64, 1)
	go func() { done <- oneWay(b, a) }()
	bToA = oneWay(a, b)
	aToB = <-done
	a.Close()
	b.Close()
	return aToB, bToA
}

func oneWay(dst, src net.Conn) int64 {
	n, _ := io.Copy(dst, src)
	if cw, ok := dst.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
	return n
}
