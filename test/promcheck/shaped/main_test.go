package main

import (
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	steps, err := parseLatencies("14ms:70,70ms:27,240ms:3")
	if err != nil {
		t.Fatal(err)
	}
	// Any 100 consecutive requests have exactly the shares asked for.
	for _, from := range []uint64{0, 13, 1000} {
		counts := map[time.Duration]int{}
		for n := from; n < from+100; n++ {
			counts[latencyOf(steps, n)]++
		}
		if counts[14*time.Millisecond] != 70 || counts[70*time.Millisecond] != 27 || counts[240*time.Millisecond] != 3 {
			t.Errorf("from request %d: %v", from, counts)
		}
	}
	for _, bad := range []string{"14ms:70", "14ms:70,70ms:31", "fast:100", "14ms:0,1s:100", "14ms"} {
		if _, err := parseLatencies(bad); err == nil {
			t.Errorf("parseLatencies(%q) took it", bad)
		}
	}
}
