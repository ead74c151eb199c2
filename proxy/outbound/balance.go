package outbound

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/skeinmesh/skein/proxy/destinations"
)

// Peak-EWMA load: an endpoint's cost is its smoothed latency, which jumps to any slower observation
// at once and decays back over decayTime, times the requests it has in flight. The balancer picks
// two endpoints at random and sends to the cheaper: power of two choices, which avoids both the herd
// behaviour of always taking the best and the blindness of random choice.
const (
	decayTime  = 10 * time.Second
	defaultRTT = 5 * time.Millisecond // the cost of an endpoint not measured yet
	penaltyRTT = time.Second          // what a failed attempt counts as
)

type endpointLoad struct {
	mu       sync.Mutex
	ewma     float64 // nanoseconds
	stamp    time.Time
	inFlight int
}

func (l *endpointLoad) cost(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.decayed(now) * float64(l.inFlight+1)
}

func (l *endpointLoad) decayed(now time.Time) float64 {
	if l.stamp.IsZero() {
		return float64(defaultRTT)
	}
	w := math.Exp(-float64(now.Sub(l.stamp)) / float64(decayTime))
	return l.ewma * w
}

func (l *endpointLoad) start() {
	l.mu.Lock()
	l.inFlight++
	l.mu.Unlock()
}

// done records a request's latency.
func (l *endpointLoad) done(rtt time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	prev := l.decayed(now)
	if l.stamp.IsZero() || float64(rtt) > prev {
		l.ewma = float64(rtt) // peak: a slowdown counts at once
	} else {
		w := math.Exp(-float64(now.Sub(l.stamp)) / float64(decayTime))
		l.ewma = prev*w + float64(rtt)*(1-w)
	}
	l.stamp = now
}

// balancer keeps the load of every endpoint it has sent to.
type balancer struct {
	loads sync.Map // netip.AddrPort -> *endpointLoad
}

func (b *balancer) load(a netip.AddrPort) *endpointLoad {
	if v, ok := b.loads.Load(a); ok {
		return v.(*endpointLoad)
	}
	v, _ := b.loads.LoadOrStore(a, &endpointLoad{})
	return v.(*endpointLoad)
}

// pick chooses among eps, skipping the addresses in avoid while others remain.
func (b *balancer) pick(eps []destinations.Endpoint, avoid map[netip.AddrPort]bool) destinations.Endpoint {
	if len(avoid) > 0 {
		var rest []destinations.Endpoint
		for _, e := range eps {
			if !avoid[e.Addr] {
				rest = append(rest, e)
			}
		}
		if len(rest) > 0 {
			eps = rest
		}
	}
	if len(eps) == 1 {
		return eps[0]
	}
	i := rand.IntN(len(eps))
	j := rand.IntN(len(eps) - 1)
	if j >= i {
		j++
	}
	now := time.Now()
	if b.load(eps[j].Addr).cost(now) < b.load(eps[i].Addr).cost(now) {
		return eps[j]
	}
	return eps[i]
}
