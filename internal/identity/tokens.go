package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Audience is the audience a ServiceAccount token must be issued for to be accepted by Certify.
const Audience = "identity.mesh.skein.dev"

// ErrTokenRejected is a token the API server did not authenticate for the identity audience.
var ErrTokenRejected = errors.New("token rejected")

// TokenReviewer tells which user a token authenticates as. It returns an error wrapping
// ErrTokenRejected for a token that is not valid, and any other error when it could not tell.
type TokenReviewer interface {
	Review(ctx context.Context, token string) (username string, err error)
}

// KubeTokenReviewer asks the API server with a TokenReview.
type KubeTokenReviewer struct {
	Client client.Client
}

// Review creates a TokenReview for the identity audience.
func (r *KubeTokenReviewer) Review(ctx context.Context, token string) (string, error) {
	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}}}
	if err := r.Client.Create(ctx, tr); err != nil {
		return "", fmt.Errorf("creating a TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		reason := tr.Status.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return "", fmt.Errorf("%w: %s", ErrTokenRejected, reason)
	}
	if !slices.Contains(tr.Status.Audiences, Audience) {
		return "", fmt.Errorf("%w: not issued for the audience %s", ErrTokenRejected, Audience)
	}
	return tr.Status.User.Username, nil
}

// CachingReviewer bounds the TokenReviews in flight and remembers answers briefly, so that a burst of
// new pods, or proxies renewing with the same token, does not flood the API server. Errors other than
// a rejection are not remembered: the next call asks again.
type CachingReviewer struct {
	next     TokenReviewer
	ttl      time.Duration
	inflight chan struct{}

	mu        sync.Mutex
	entries   map[[32]byte]*reviewEntry
	lastPrune time.Time
	now       func() time.Time
}

type reviewEntry struct {
	done     chan struct{}
	username string
	err      error
	expires  time.Time
}

// NewCachingReviewer wraps next with a cache of answers kept for ttl and at most maxInFlight reviews at once.
func NewCachingReviewer(next TokenReviewer, ttl time.Duration, maxInFlight int) *CachingReviewer {
	return &CachingReviewer{
		next: next, ttl: ttl, inflight: make(chan struct{}, maxInFlight),
		entries: map[[32]byte]*reviewEntry{}, now: time.Now,
	}
}

// Review answers from the cache, joins a review of the same token under way, or asks next.
func (c *CachingReviewer) Review(ctx context.Context, token string) (string, error) {
	key := sha256.Sum256([]byte(token))
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		select {
		case <-e.done:
			if c.now().After(e.expires) {
				ok = false
			}
		default: // a review of this token is under way: wait for it below
		}
	}
	if !ok {
		e = &reviewEntry{done: make(chan struct{})}
		c.entries[key] = e
		c.prune()
		c.mu.Unlock()
		// The review is shared by every caller of this token: one caller going away must not fail it.
		go c.fill(context.WithoutCancel(ctx), key, e, token)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-e.done:
		return e.username, e.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// reviewTimeout bounds one TokenReview, however long the callers are willing to wait.
const reviewTimeout = 10 * time.Second

// fill runs one review, within the in-flight bound, and publishes its answer.
func (c *CachingReviewer) fill(ctx context.Context, key [32]byte, e *reviewEntry, token string) {
	defer close(e.done)
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	select {
	case c.inflight <- struct{}{}:
		defer func() { <-c.inflight }()
		e.username, e.err = c.next.Review(ctx, token)
	case <-ctx.Done():
		e.err = ctx.Err()
	}
	e.expires = c.now().Add(c.ttl)
	if e.err != nil && !errors.Is(e.err, ErrTokenRejected) {
		c.mu.Lock()
		if c.entries[key] == e {
			delete(c.entries, key)
		}
		c.mu.Unlock()
	}
}

// prune drops expired answers, at most once per ttl; the caller holds mu.
func (c *CachingReviewer) prune() {
	now := c.now()
	if now.Sub(c.lastPrune) < c.ttl {
		return
	}
	c.lastPrune = now
	for k, e := range c.entries {
		select {
		case <-e.done:
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		default:
		}
	}
}
