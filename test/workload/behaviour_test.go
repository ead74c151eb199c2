package main

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestBehaviourIsExact: any 100 consecutive requests see the distribution's shares exactly, and
// every 20th fails.
func TestBehaviourIsExact(t *testing.T) {
	b, err := newBehaviour("0s:60,1ns:37,2ns:3", 20)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	seen := map[time.Duration]int{}
	for range 30 { // start the window anywhere
		b.answer(httptest.NewRecorder())
	}
	for range 100 {
		n := b.n.Load() + 1
		seen[b.delays[int(n)*b.stride%len(b.delays)]]++
		if w := httptest.NewRecorder(); b.answer(w) {
			failed++
			if w.Code != 500 {
				t.Errorf("a failure answered %d", w.Code)
			}
		}
	}
	if seen[0] != 60 || seen[1] != 37 || seen[2] != 3 || failed != 5 {
		t.Errorf("delays %v, failures %d; want 60/37/3 and 5", seen, failed)
	}
	for _, bad := range []string{"5ms", "5ms:0", "x:3", "5ms:-1"} {
		if _, err := newBehaviour(bad, 0); err == nil {
			t.Errorf("-latencies %q accepted", bad)
		}
	}
}
