package middleware

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/sio"
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

// RateLimit is the interceptor for RATE_LIMIT/RATE_BURST with kicks that
// hold: events beyond the bucket get rate_limited; a connection refused more
// than disconnectAfter times in a row is kicked. A kick closes the client's
// whole Engine.IO session (every namespace, the transport with it), so the
// same session cannot simply CONNECT again, and puts its user and IP in cd's
// cool-down (refused by KickCooldown) before the DISCONNECT goes out. cd may
// be nil (no cool-down); onKick (may be nil) counts the kicks.
func RateLimit(rate float64, burst, disconnectAfter int, cd *Cooldown, onKick func()) sio.Interceptor {
	if rate <= 0 {
		return func(context.Context, *sio.Conn, string) error { return nil }
	}
	type key struct{}
	return func(_ context.Context, c *sio.Conn, _ string) error {
		l, _ := c.Value(key{}).(*RateLimiter)
		if l == nil {
			l = NewRateLimiter(rate, burst)
			c.SetValue(key{}, l)
		}
		ok, refused := l.Allow(time.Now())
		if ok {
			return nil
		}
		if refused > disconnectAfter {
			cd.Kick(c.User().ID, c.RemoteAddr())
			if onKick != nil {
				onKick()
			}
			c.DisconnectSession()
		}
		return &sio.Error{Code: sio.CodeRateLimited, Message: "too many events: slow down"}
	}
}
