package telemetry

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestIncrease(t *testing.T) {
	tests := []struct {
		name   string
		points []point
		end    float64
		window time.Duration
		want   float64
		ok     bool
	}{
		{
			// Samples every 10s from 5s to 55s in the window (0, 60]: 100 a sample interval over
			// 50s, extrapolated 5s to each edge (both under 1.1 intervals): 500 * 60/50.
			name:   "steady",
			points: []point{{at(5), 1000}, {at(15), 1100}, {at(25), 1200}, {at(35), 1300}, {at(45), 1400}, {at(55), 1500}},
			end:    60, window: time.Minute, want: 600, ok: true,
		},
		{
			// A reset between 25s and 35s: 100 + 100 + 50 (counted since the restart) + 100 + 100.
			name:   "reset",
			points: []point{{at(5), 1000}, {at(15), 1100}, {at(25), 1200}, {at(35), 50}, {at(45), 150}, {at(55), 250}},
			end:    60, window: time.Minute, want: 450 * 60.0 / 50, ok: true,
		},
		{
			// Starting from 20 at 40s, growing 10 a second: zero is 2s before the first sample,
			// nearer than the window's start, so extrapolation stops there; the end is 5s away.
			// Grew 100 over 10s; span 10 + 2 + 5 = 17.
			name:   "new counter does not extrapolate below zero",
			points: []point{{at(40), 20}, {at(45), 70}, {at(50), 120}},
			end:    55, window: time.Minute, want: 100 * 17.0 / 10, ok: true,
		},
		{
			// Samples stop at 25s, 35s before the end: half an interval (5s) added there only.
			// The first sample is 5s after the start: extrapolated fully. Span 20 + 5 + 5.
			name:   "a proxy that went away",
			points: []point{{at(5), 100}, {at(15), 200}, {at(25), 250}},
			end:    60, window: time.Minute, want: 150 * 30.0 / 20, ok: true,
		},
		{
			name:   "samples older than the window are ignored",
			points: []point{{at(0), 100}, {at(10), 200}, {at(75), 300}},
			end:    80, window: time.Minute, ok: false,
		},
	}
	for _, tt := range tests {
		got, ok := increase(tt.points, at(tt.end), tt.window)
		if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: increase = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	// 100 observations: 50 at most 5, 45 in (10, 20], 5 in (100, 200].
	h := []bucket{{1, 0}, {5, 50}, {10, 50}, {20, 95}, {100, 95}, {200, 100}, {inf, 100}}
	tests := []struct {
		q, want float64
	}{
		{0.5, 5},    // rank 50 is the top of the (1, 5] bucket
		{0.25, 3},   // rank 25 is halfway through (1, 5]: 0 below, 50 inside
		{0.95, 20},  // rank 95 is the top of (10, 20]
		{0.99, 180}, // rank 99: 4 of the 5 in (100, 200]
		{0.6, 10 + 10*(60-50)/45.0},
	}
	for _, tt := range tests {
		got, ok := quantile(tt.q, h)
		if !ok || math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, %v; want %v", tt.q, got, ok, tt.want)
		}
	}
	// The +Inf bucket holds the rank: the highest finite bound.
	if got, _ := quantile(0.99, []bucket{{10, 50}, {inf, 100}}); got != 10 {
		t.Errorf("rank beyond the last finite bucket: %v, want 10", got)
	}
	// The first bucket starts at zero.
	if got, _ := quantile(0.5, []bucket{{10, 100}, {inf, 100}}); got != 5 {
		t.Errorf("rank inside the first bucket: %v, want 5", got)
	}
	if _, ok := quantile(0.5, []bucket{{10, 0}, {inf, 0}}); ok {
		t.Error("an empty histogram has a quantile")
	}
}
