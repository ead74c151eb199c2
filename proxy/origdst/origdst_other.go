//go:build !linux

package origdst

import (
	"errors"
	"net"
	"net/netip"
)

// OriginalDst needs Linux's netfilter; elsewhere it always fails.
func OriginalDst(conn Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination: only available on Linux")
}
