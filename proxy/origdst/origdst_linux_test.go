package origdst

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"syscall"
	"testing"
)

func TestParseInet4(t *testing.T) {
	sockaddr := func(family uint16, port uint16, addr [4]byte) []byte {
		b := make([]byte, 16)
		binary.NativeEndian.PutUint16(b[0:2], family)
		binary.BigEndian.PutUint16(b[2:4], port)
		copy(b[4:8], addr[:])
		return b
	}
	tests := []struct {
		name    string
		raw     []byte
		want    netip.AddrPort
		wantErr string
	}{
		{name: "address and port", raw: sockaddr(syscall.AF_INET, 8080, [4]byte{10, 250, 1, 3}), want: netip.MustParseAddrPort("10.250.1.3:8080")},
		// 0x1f90 and 0x901f tell a byte-order mistake apart.
		{name: "port above 255", raw: sockaddr(syscall.AF_INET, 0x1f90, [4]byte{127, 0, 0, 1}), want: netip.MustParseAddrPort("127.0.0.1:8080")},
		{name: "wrong family", raw: sockaddr(syscall.AF_INET6, 80, [4]byte{}), wantErr: "want AF_INET"},
		{name: "too short", raw: []byte{2, 0}, wantErr: "2 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInet4(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseInet4 = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseInet4 = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseInet6(t *testing.T) {
	sockaddr := func(family uint16, port uint16, addr string) syscall.RawSockaddrInet6 {
		var raw [2]byte
		binary.BigEndian.PutUint16(raw[:], port)
		return syscall.RawSockaddrInet6{
			Family: family,
			Port:   binary.NativeEndian.Uint16(raw[:]),
			Addr:   netip.MustParseAddr(addr).As16(),
		}
	}
	tests := []struct {
		name    string
		raw     syscall.RawSockaddrInet6
		want    netip.AddrPort
		wantErr string
	}{
		{name: "address and port", raw: sockaddr(syscall.AF_INET6, 4143, "fd00::1:2"), want: netip.MustParseAddrPort("[fd00::1:2]:4143")},
		{name: "wrong family", raw: sockaddr(syscall.AF_INET, 80, "::1"), wantErr: "want AF_INET6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInet6(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseInet6 = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseInet6 = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
