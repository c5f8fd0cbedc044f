package iplimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time           { return c.t }
func (c *clock) add(d time.Duration)      { c.t = c.t.Add(d) }
func newAt(cfg Config, c *clock) *Limiter { l := New(cfg); l.now = c.now; return l }

func TestMaxSessionsPerIP(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := newAt(Config{MaxSessions: 2}, c)
	r1, _, why := l.Acquire("a")
	r2, _, _ := l.Acquire("a")
	if why != "" || r1 == nil || r2 == nil {
		t.Fatal("first two sessions refused")
	}
	if _, _, why := l.Acquire("a"); why != ReasonSessions {
		t.Fatalf("third session: %q, want %q", why, ReasonSessions)
	}
	if r, _, why := l.Acquire("b"); why != "" {
		t.Fatal("another IP refused")
	} else {
		r()
	}
	r1()
	r1() // twice is once
	if _, _, why := l.Acquire("a"); why != "" {
		t.Fatal("a released slot was not given back")
	}
	if _, _, why := l.Acquire("a"); why != ReasonSessions {
		t.Fatal("double release freed two slots")
	}
	r2()
}

func TestRatePerIP(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := newAt(Config{Rate: 2, Burst: 4}, c)
	for i := range 4 {
		if _, _, why := l.Acquire("a"); why != "" {
			t.Fatalf("burst session %d refused", i)
		}
	}
	_, retry, why := l.Acquire("a")
	if why != ReasonRate || retry <= 0 || retry > time.Second {
		t.Fatalf("over the burst: %q retry %v", why, retry)
	}
	if _, _, why := l.Acquire("b"); why != "" {
		t.Fatal("another IP shares the bucket")
	}
	c.add(500 * time.Millisecond) // one token back
	if _, _, why := l.Acquire("a"); why != "" {
		t.Fatal("refilled token refused")
	}
	if _, _, why := l.Acquire("a"); why != ReasonRate {
		t.Fatal("more than the refill admitted")
	}
}

func TestMemoryBoundedByActiveIPs(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := newAt(Config{MaxSessions: 10, Rate: 10, Burst: 10}, c)
	for i := range 5000 {
		rel, _, why := l.Acquire(fmt.Sprint("ip", i))
		if why != "" {
			t.Fatal(why)
		}
		rel()
	}
	c.add(2 * time.Second) // buckets refill
	rel, _, _ := l.Acquire("last")
	defer rel()
	if n := l.Len(); n > 2 {
		t.Fatalf("%d IPs kept after their buckets refilled", n)
	}
}

func TestOffIsFree(t *testing.T) {
	l := New(Config{})
	for range 1000 {
		if _, _, why := l.Acquire("a"); why != "" {
			t.Fatal("refused with no limit")
		}
	}
	if l.Len() != 0 {
		t.Fatal("tracked IPs with no limit")
	}
}

func TestConcurrent(t *testing.T) {
	l := New(Config{MaxSessions: 50, Rate: 1e6})
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				rel, _, why := l.Acquire("shared")
				if why == "" {
					mu.Lock()
					admitted++
					mu.Unlock()
					if g%2 == 0 {
						rel()
					}
				}
			}
		}()
	}
	wg.Wait()
	if l.ips["shared"].sessions > 50 {
		t.Fatalf("%d sessions open, cap 50", l.ips["shared"].sessions)
	}
	if admitted < 50 {
		t.Fatalf("only %d admitted", admitted)
	}
}
