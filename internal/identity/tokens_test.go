package identity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowReviewer counts its calls and the most it served at once.
type slowReviewer struct {
	calls, inFlight, peak atomic.Int32
	delay                 time.Duration
	err                   error
}

func (r *slowReviewer) Review(ctx context.Context, token string) (string, error) {
	r.calls.Add(1)
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(r.delay)
	if r.err != nil {
		return "", r.err
	}
	return "user-of-" + token, nil
}

func TestCachingReviewer(t *testing.T) {
	ctx := context.Background()

	t.Run("remembers an answer until it expires", func(t *testing.T) {
		next := &slowReviewer{}
		c := NewCachingReviewer(next, time.Minute, 4)
		now := time.Now()
		c.now = func() time.Time { return now }
		for range 3 {
			if u, err := c.Review(ctx, "a"); err != nil || u != "user-of-a" {
				t.Fatalf("Review = %q, %v", u, err)
			}
		}
		if got := next.calls.Load(); got != 1 {
			t.Errorf("%d TokenReviews for one token, want 1", got)
		}
		now = now.Add(2 * time.Minute)
		if _, err := c.Review(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if got := next.calls.Load(); got != 2 {
			t.Errorf("%d TokenReviews after expiry, want 2", got)
		}
	})

	t.Run("joins a review under way and bounds those in flight", func(t *testing.T) {
		next := &slowReviewer{delay: 20 * time.Millisecond}
		c := NewCachingReviewer(next, time.Minute, 3)
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				token := fmt.Sprint(i % 10)
				if u, err := c.Review(ctx, token); err != nil || u != "user-of-"+token {
					t.Errorf("Review(%s) = %q, %v", token, u, err)
				}
			}()
		}
		wg.Wait()
		if got := next.calls.Load(); got != 10 {
			t.Errorf("%d TokenReviews for 10 tokens, want 10", got)
		}
		if got := next.peak.Load(); got > 3 {
			t.Errorf("%d TokenReviews at once, want at most 3", got)
		}
	})

	t.Run("remembers a rejection but not a failure", func(t *testing.T) {
		next := &slowReviewer{err: fmt.Errorf("%w: expired", ErrTokenRejected)}
		c := NewCachingReviewer(next, time.Minute, 4)
		for range 2 {
			if _, err := c.Review(ctx, "r"); !errors.Is(err, ErrTokenRejected) {
				t.Fatalf("Review = %v, want a rejection", err)
			}
		}
		if got := next.calls.Load(); got != 1 {
			t.Errorf("%d TokenReviews for a rejected token, want 1", got)
		}
		next.err = errors.New("connection refused")
		for range 2 {
			if _, err := c.Review(ctx, "f"); err == nil || errors.Is(err, ErrTokenRejected) {
				t.Fatalf("Review = %v, want the failure", err)
			}
		}
		if got := next.calls.Load(); got != 3 {
			t.Errorf("%d TokenReviews, want a failure asked again (3)", got)
		}
	})
}
