package middleware

import (
	"sync"
	"time"
)

// RateLimiter is a per-socket token bucket that also counts refusals in a row; safe for concurrent use.
type RateLimiter struct {
	rate  float64 // tokens per second; <= 0 means unlimited
	burst float64 // bucket capacity

	mu       sync.Mutex
	tokens   float64
	last     time.Time // time of the last refill; zero before the first event
	refusals int
}

// NewRateLimiter allows rate events per second with bursts up to burst (at least 1); rate <= 0 means unlimited.
func NewRateLimiter(rate float64, burst int) *RateLimiter {
	b := float64(max(burst, 1))
	// The bucket starts full so a fresh socket can send its burst at once.
	return &RateLimiter{rate: rate, burst: b, tokens: b}
}

// Allow takes one token at now and returns the count of consecutive refusals (0 when allowed).
func (l *RateLimiter) Allow(now time.Time) (ok bool, consecutiveRefusals int) {
	if l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Refill only for time moving forward: callers on different goroutines
	// may pass slightly out-of-order timestamps.
	if l.last.IsZero() {
		l.last = now
	} else if elapsed := now.Sub(l.last); elapsed > 0 {
		l.tokens = min(l.burst, l.tokens+elapsed.Seconds()*l.rate)
		l.last = now
	}
	if l.tokens >= 1 {
		l.tokens--
		l.refusals = 0
		return true, 0
	}
	l.refusals++
	return false, l.refusals
}
