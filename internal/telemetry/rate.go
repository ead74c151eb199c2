package telemetry

import (
	"math"
	"sort"
	"time"
)

// point is one sample of a counter.
type point struct {
	at time.Time
	v  float64
}

// increase is how much a counter grew over the window that ends at end, from the samples inside
// it, the way PromQL's increase() computes it: counter resets are taken as restarts from zero, and
// the growth seen between the first and last samples is extrapolated towards the window's edges
// (all the way when a sample is near the edge, by half a sampling interval otherwise, and never
// below zero at the start). ok is false with fewer than two samples in the window.
func increase(points []point, end time.Time, window time.Duration) (v float64, ok bool) {
	start := end.Add(-window)
	var in []point
	for _, p := range points {
		if p.at.After(start) && !p.at.After(end) {
			in = append(in, p)
		}
	}
	if len(in) < 2 {
		return 0, false
	}
	first, last := in[0], in[len(in)-1]
	grew := last.v - first.v
	for i := 1; i < len(in); i++ {
		if in[i].v < in[i-1].v {
			grew += in[i-1].v // a reset: the counter went back to zero and counted up again
		}
	}
	sampled := last.at.Sub(first.at).Seconds()
	if sampled <= 0 {
		return 0, false
	}
	toStart, toEnd := first.at.Sub(start).Seconds(), end.Sub(last.at).Seconds()
	if grew > 0 && first.v >= 0 {
		// The counter cannot have been below zero: extrapolating back further than where it
		// would reach zero would count growth that never happened.
		if toZero := sampled * first.v / grew; toZero < toStart {
			toStart = toZero
		}
	}
	avg := sampled / float64(len(in)-1)
	threshold := avg * 1.1
	span := sampled
	if toStart < threshold {
		span += toStart
	} else {
		span += avg / 2
	}
	if toEnd < threshold {
		span += toEnd
	} else {
		span += avg / 2
	}
	return grew * span / sampled, true
}

// bucket is one cumulative histogram bucket: how many observations were at most le.
type bucket struct {
	le    float64
	count float64
}

// quantile is the q-quantile (0 ≤ q ≤ 1) of a histogram of cumulative buckets, the way PromQL's
// histogram_quantile() estimates it: find the bucket the rank falls in and interpolate linearly
// between its bounds (the first bucket starts at 0); a rank in the +Inf bucket gives the highest
// finite bound. ok is false when the histogram has no observations.
func quantile(q float64, buckets []bucket) (v float64, ok bool) {
	if len(buckets) == 0 {
		return 0, false
	}
	bs := append([]bucket(nil), buckets...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if !math.IsInf(bs[len(bs)-1].le, 1) || len(bs) < 2 {
		return 0, false
	}
	// Rates of separately sampled buckets can be slightly out of order; a count never falls with le.
	for i := 1; i < len(bs); i++ {
		if bs[i].count < bs[i-1].count {
			bs[i].count = bs[i-1].count
		}
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	i := sort.Search(len(bs)-1, func(i int) bool { return bs[i].count >= rank })
	if i == len(bs)-1 {
		return bs[len(bs)-2].le, true
	}
	if i == 0 && bs[0].le <= 0 {
		return bs[0].le, true
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = bs[i-1].le, bs[i-1].count
	}
	upper, in := bs[i].le, bs[i].count-below
	if in <= 0 {
		return upper, true
	}
	return lower + (upper-lower)*(rank-below)/in, true
}
