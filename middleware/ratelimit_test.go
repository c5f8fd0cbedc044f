package middleware

import (
	"sync"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		at       time.Duration
		ok       bool
		refusals int
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst then refusal", 10, 3, []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, false, 1}, {0, false, 2},
		}},
		{"refill over time", 10, 2, []step{
			{0, true, 0}, {0, true, 0}, {0, false, 1},
			{50 * time.Millisecond, false, 2}, // half a token
			{100 * time.Millisecond, true, 0}, // one token back
			{100 * time.Millisecond, false, 1},
			{time.Hour, true, 0}, // refill caps at burst
			{time.Hour, true, 0},
			{time.Hour, false, 1},
		}},
		{"allowed event resets the counter", 1, 1, []step{
			{0, true, 0}, {0, false, 1}, {0, false, 2}, {0, false, 3},
			{time.Second, true, 0},
			{time.Second, false, 1},
		}},
		{"time going backwards does not refill", 1, 1, []step{
			{10 * time.Second, true, 0}, {0, false, 1}, {10 * time.Second, false, 2}, {11 * time.Second, true, 0},
		}},
		{"fractional rate", 0.5, 1, []step{
			{0, true, 0}, {time.Second, false, 1}, {2 * time.Second, true, 0},
		}},
		{"burst 0 treated as 1", 1, 0, []step{{0, true, 0}, {0, false, 1}}},
		{"negative burst treated as 1", 1, -5, []step{{0, true, 0}, {0, false, 1}}},
		{"unlimited with rate 0", 0, 1, []step{{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0}}},
		{"unlimited with negative rate", -1, 0, []step{{0, true, 0}, {0, true, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewRateLimiter(tt.rate, tt.burst)
			for i, s := range tt.steps {
				ok, n := l.Allow(at(s.at))
				if ok != s.ok || n != s.refusals {
					t.Fatalf("step %d at %v: Allow = (%v, %d), want (%v, %d)", i, s.at, ok, n, s.ok, s.refusals)
				}
			}
		})
	}
}

// TestRateLimiterConcurrent checks under -race that the bucket hands out
// exactly its burst when hammered at one instant.
func TestRateLimiterConcurrent(t *testing.T) {
	const burst = 50
	l := NewRateLimiter(1, burst)
	now := time.Unix(1_700_000_000, 0)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 200 {
		wg.Go(func() {
			if ok, _ := l.Allow(now); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != burst {
		t.Fatalf("allowed %d events, want %d", allowed, burst)
	}
}
