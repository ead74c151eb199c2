package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// OriginalDst returns the destination that conn, accepted by the proxy, was addressed to before a
// REDIRECT (or DNAT) rule sent it to the proxy. For a connection that no rule changed, the kernel
// reports the address it reached, which is conn's local address.
func OriginalDst(conn Conn) (netip.AddrPort, error) {
	local, ok := conn.LocalAddr().(*net.TCPAddr)
	if !ok || local == nil {
		return netip.AddrPort{}, errors.New("original destination: connection has no local TCP address")
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var dst netip.AddrPort
	var opErr error
	err = raw.Control(func(fd uintptr) {
		// An IPv4 connection accepted by a dual-stack listener has an AF_INET6 socket, but its
		// conntrack entry is IPv4, so ask at the IPv4 level; the kernel answers it for such sockets.
		if local.IP.To4() != nil {
			dst, opErr = ipv4(int(fd))
		} else {
			dst, opErr = ipv6(int(fd))
		}
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination of the connection from %s: %w", conn.RemoteAddr(), err)
	}
	return dst, nil
}

// The syscall package has no getter for a socket address, so these borrow getters of structures
// large enough to hold one: IPv6Mreq is 20 bytes, of which the first 16 take a sockaddr_in, and
// IPv6MTUInfo starts with a full sockaddr_in6. The kernel writes only the socket address.

func ipv4(fd int) (netip.AddrPort, error) {
	m, err := syscall.GetsockoptIPv6Mreq(fd, syscall.SOL_IP, soOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", err)
	}
	return parseInet4(m.Multiaddr[:])
}

func ipv6(fd int) (netip.AddrPort, error) {
	info, err := syscall.GetsockoptIPv6MTUInfo(fd, syscall.SOL_IPV6, soOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", err)
	}
	return parseInet6(info.Addr)
}

// parseInet4 reads a struct sockaddr_in: the family in host byte order, then the port and the
// address in network byte order.
func parseInet4(b []byte) (netip.AddrPort, error) {
	if len(b) < 8 {
		return netip.AddrPort{}, fmt.Errorf("sockaddr_in of %d bytes", len(b))
	}
	if family := binary.NativeEndian.Uint16(b[0:2]); family != syscall.AF_INET {
		return netip.AddrPort{}, fmt.Errorf("original destination has address family %d, want AF_INET", family)
	}
	port := binary.BigEndian.Uint16(b[2:4])
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
}

// parseInet6 reads a struct sockaddr_in6 as Go's syscall package lays it out, whose Port field
// holds the port's network-order bytes.
func parseInet6(sa syscall.RawSockaddrInet6) (netip.AddrPort, error) {
	if sa.Family != syscall.AF_INET6 {
		return netip.AddrPort{}, fmt.Errorf("original destination has address family %d, want AF_INET6", sa.Family)
	}
	var raw [2]byte
	binary.NativeEndian.PutUint16(raw[:], sa.Port)
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), binary.BigEndian.Uint16(raw[:])), nil
}
