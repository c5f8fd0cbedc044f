// Package iplimit bounds what one client IP may open: concurrent sessions
// and new sessions per second (a token bucket per IP). Its memory is bounded
// by the IPs that have sessions open or a bucket still refilling.
package iplimit

import (
	"sync"
	"time"
)

// Config is the limits; the zero value of a field means no limit.
type Config struct {
	MaxSessions int     // concurrent sessions per IP
	Rate        float64 // new sessions per second per IP
	Burst       int     // bucket size (default 2 x Rate, at least 1)
}

// Refusal reasons returned by Acquire.
const (
	ReasonSessions = "sessions" // MaxSessions reached
	ReasonRate     = "rate"     // bucket empty
)

// Limiter is safe for concurrent use.
type Limiter struct {
	cfg   Config
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	ips       map[string]*entry
	lastSweep time.Time
}

type entry struct {
	sessions int
	tokens   float64
	last     time.Time
}

// New returns a limiter for cfg.
func New(cfg Config) *Limiter {
	b := float64(cfg.Burst)
	if b <= 0 {
		b = max(2*cfg.Rate, 1)
	}
	return &Limiter{cfg: cfg, burst: b, now: time.Now, ips: map[string]*entry{}}
}

// Acquire admits a new session from ip. On success release must be called
// once when the session ends. Otherwise reason says which limit refused and
// retryAfter when to try again (zero for MaxSessions: when a session ends).
func (l *Limiter) Acquire(ip string) (release func(), retryAfter time.Duration, reason string) {
	if l.cfg.MaxSessions <= 0 && l.cfg.Rate <= 0 {
		return func() {}, 0, ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweepLocked(now)
	e := l.ips[ip]
	if e == nil {
		e = &entry{tokens: l.burst, last: now}
		l.ips[ip] = e
	}
	if l.cfg.MaxSessions > 0 && e.sessions >= l.cfg.MaxSessions {
		return nil, time.Second, ReasonSessions
	}
	if l.cfg.Rate > 0 {
		l.refill(e, now)
		if e.tokens < 1 {
			return nil, time.Duration((1 - e.tokens) / l.cfg.Rate * float64(time.Second)), ReasonRate
		}
		e.tokens--
	}
	e.sessions++
	var once sync.Once
	return func() { once.Do(func() { l.release(ip) }) }, 0, ""
}

func (l *Limiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.ips[ip]; e != nil && e.sessions > 0 {
		e.sessions--
		if e.sessions == 0 && l.idle(e, l.now()) {
			delete(l.ips, ip)
		}
	}
}

func (l *Limiter) refill(e *entry, now time.Time) {
	if d := now.Sub(e.last); d > 0 {
		e.tokens = min(l.burst, e.tokens+d.Seconds()*l.cfg.Rate)
		e.last = now
	}
}

// idle reports whether e holds nothing: no session and a full bucket.
func (l *Limiter) idle(e *entry, now time.Time) bool {
	if e.sessions > 0 {
		return false
	}
	if l.cfg.Rate <= 0 {
		return true
	}
	l.refill(e, now)
	return e.tokens >= l.burst
}

// sweepLocked forgets idle IPs, at most once a second and only once there
// are many: an IP that opened and closed a session stays until its bucket
// has refilled, so a flood of distinct IPs costs memory for Burst/Rate
// seconds at most.
func (l *Limiter) sweepLocked(now time.Time) {
	if len(l.ips) < 1024 || now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for ip, e := range l.ips {
		if l.idle(e, now) {
			delete(l.ips, ip)
		}
	}
}

// Len is the number of IPs tracked (for tests and metrics).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ips)
}
