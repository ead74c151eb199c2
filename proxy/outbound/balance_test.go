package outbound

import (
	"net/netip"
	"testing"
	"time"

	"github.com/skeinmesh/skein/proxy/destinations"
)

func TestBalancerPrefersTheFasterEndpoint(t *testing.T) {
	fast := destinations.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.1:80")}
	slow := destinations.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.2:80")}
	var b balancer
	now := time.Now()
	b.load(fast.Addr).start()
	b.load(fast.Addr).done(time.Millisecond, now)
	b.load(slow.Addr).start()
	b.load(slow.Addr).done(100*time.Millisecond, now)
	picks := map[netip.AddrPort]int{}
	for range 1000 {
		picks[b.pick([]destinations.Endpoint{fast, slow}, nil).Addr]++
	}
	if picks[fast.Addr] != 1000 {
		t.Errorf("of two endpoints, the one 100 times slower got %d of 1000 picks", picks[slow.Addr])
	}
}

func TestPeakEWMAJumpsUpAndDecays(t *testing.T) {
	var l endpointLoad
	now := time.Now()
	l.start()
	l.done(time.Millisecond, now)
	l.start()
	l.done(50*time.Millisecond, now.Add(time.Second))
	if got := time.Duration(l.cost(now.Add(time.Second))); got != 50*time.Millisecond {
		t.Errorf("after a slow response the cost is %s, want the peak 50ms", got)
	}
	if got := time.Duration(l.cost(now.Add(time.Second + 2*decayTime))); got > 10*time.Millisecond {
		t.Errorf("two decay times later the cost is still %s", got)
	}
	l.start()
	if got := time.Duration(l.cost(now.Add(time.Second))); got != 100*time.Millisecond {
		t.Errorf("with one request in flight the cost is %s, want twice the latency", got)
	}
}

func TestBalancerSpreadsEqualEndpointsAndAvoidsFailedOnes(t *testing.T) {
	eps := []destinations.Endpoint{
		{Addr: netip.MustParseAddrPort("10.0.0.1:80")}, {Addr: netip.MustParseAddrPort("10.0.0.2:80")}, {Addr: netip.MustParseAddrPort("10.0.0.3:80")},
	}
	var b balancer
	picks := map[netip.AddrPort]int{}
	for range 3000 {
		picks[b.pick(eps, nil).Addr]++
	}
	for _, e := range eps {
		if picks[e.Addr] < 700 {
			t.Errorf("%s got %d of 3000 picks among three equal endpoints", e.Addr, picks[e.Addr])
		}
	}
	avoid := map[netip.AddrPort]bool{eps[0].Addr: true, eps[1].Addr: true}
	for range 100 {
		if got := b.pick(eps, avoid); got.Addr != eps[2].Addr {
			t.Fatalf("picked %s, which failed", got.Addr)
		}
	}
}
