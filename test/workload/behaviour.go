package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// behaviour is how the server answers, chosen so that a test knows the truth exactly: every
// failEvery-th request fails, and each request waits a delay from a fixed distribution, drawn in
// an order that spreads every value evenly (any `total` consecutive requests see each weight's
// share exactly).
type behaviour struct {
	failEvery int
	delays    []time.Duration // one per unit of weight, in weight order
	stride    int             // coprime with len(delays): request n takes delays[n*stride % len]
	n         atomic.Int64
}

// newBehaviour reads -latencies ("5ms:50,20ms:45,200ms:5") and -fail-every.
func newBehaviour(latencies string, failEvery int) (*behaviour, error) {
	if failEvery < 0 {
		return nil, fmt.Errorf("-fail-every %d: want 0 (never) or more", failEvery)
	}
	b := &behaviour{failEvery: failEvery}
	if latencies == "" {
		return b, nil
	}
	for _, part := range strings.Split(latencies, ",") {
		d, w, ok := strings.Cut(strings.TrimSpace(part), ":")
		delay, err := time.ParseDuration(d)
		if err != nil || !ok || delay < 0 {
			return nil, fmt.Errorf("-latencies %q: %q is not duration:weight", latencies, part)
		}
		weight, err := strconv.Atoi(w)
		if err != nil || weight <= 0 {
			return nil, fmt.Errorf("-latencies %q: the weight of %q is not a positive integer", latencies, part)
		}
		for range weight {
			b.delays = append(b.delays, delay)
		}
	}
	// A stride near the golden ratio of the total scatters the weights along the sequence.
	total := len(b.delays)
	b.stride = max(1, total*618/1000)
	for gcd(b.stride, total) != 1 {
		b.stride++
	}
	return b, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// answer waits the request's delay and, when it is one to fail, answers 500 and returns true.
func (b *behaviour) answer(w http.ResponseWriter) bool {
	if b.failEvery == 0 && len(b.delays) == 0 {
		return false
	}
	n := b.n.Add(1)
	if len(b.delays) > 0 {
		time.Sleep(b.delays[int(n)*b.stride%len(b.delays)])
	}
	if b.failEvery > 0 && n%int64(b.failEvery) == 0 {
		http.Error(w, "failing as told (-fail-every)", http.StatusInternalServerError)
		return true
	}
	return false
}
