// Package origdst reads where a connection was going before iptables redirected it to the proxy
// (SO_ORIGINAL_DST), which is how skein-proxy learns the destination of the traffic it intercepts.
package origdst

import (
	"net"
	"syscall"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) at level SOL_IP, and also
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) at level SOL_IPV6: both are 80.
const soOriginalDst = 80

// Conn is an accepted TCP connection: a *net.TCPConn, or a wrapper that keeps its SyscallConn.
type Conn interface {
	net.Conn
	syscall.Conn
}
