package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sio"
)

// fakeClock is a settable clock for Cooldown tests; safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestCooldown(clock *fakeClock, maxKeys int) *Cooldown {
	return NewCooldown(CooldownConfig{Base: 10 * time.Second, Max: 5 * time.Minute, Decay: 10 * time.Minute, MaxKeys: maxKeys, Now: clock.Now})
}

func TestCooldownDoublesUpToMax(t *testing.T) {
	clock := newFakeClock()
	cd := newTestCooldown(clock, 0)
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := cd.Kick("alice", "10.0.0.1"); got != w {
			t.Fatalf("kick %d: cool-down %v, want %v", i+1, got, w)
		}
		if got := cd.Remaining("alice", ""); got != w {
			t.Fatalf("kick %d: user remaining %v, want %v", i+1, got, w)
		}
		if got := cd.Remaining("", "10.0.0.1"); got != w {
			t.Fatalf("kick %d: IP remaining %v, want %v", i+1, got, w)
		}
		clock.Advance(w - time.Millisecond)
		if got := cd.Remaining("alice", "10.0.0.1"); got != time.Millisecond {
			t.Fatalf("kick %d: remaining just before the end %v, want 1ms", i+1, got)
		}
		clock.Advance(time.Millisecond)
		if got := cd.Remaining("alice", "10.0.0.1"); got != 0 {
			t.Fatalf("kick %d: remaining at the end %v, want 0", i+1, got)
		}
		clock.Advance(time.Second) // good behaviour, well within Decay
	}
}

func TestCooldownKickWhileCoolingIsNotARepeat(t *testing.T) {
	clock := newFakeClock()
	cd := newTestCooldown(clock, 0)
	cd.Kick("alice", "10.0.0.1")
	clock.Advance(3 * time.Second)
	// Another tab of the same user kicked during the cool-down: same offence.
	if got := cd.Kick("alice", "10.0.0.1"); got != 7*time.Second {
		t.Fatalf("kick while cooling = %v, want the remaining 7s", got)
	}
	clock.Advance(7 * time.Second)
	if got := cd.Kick("alice", "10.0.0.1"); got != 20*time.Second {
		t.Fatalf("repeat kick after the cool-down = %v, want 20s", got)
	}
}

func TestCooldownDecay(t *testing.T) {
	clock := newFakeClock()
	cd := newTestCooldown(clock, 0)
	cd.Kick("alice", "")
	cd.Kick("bob", "")
	// alice: kicked again just before her repeat count is forgotten.
	clock.Advance(10*time.Second + 10*time.Minute - time.Nanosecond)
	if got := cd.Kick("alice", ""); got != 20*time.Second {
		t.Fatalf("repeat kick within the decay = %v, want 20s", got)
	}
	// bob: kicked again once forgotten: a first offence.
	clock.Advance(time.Nanosecond)
	if got := cd.Kick("bob", ""); got != 10*time.Second {
		t.Fatalf("kick after the decay = %v, want 10s", got)
	}
	// Forgotten entries are purged lazily, by any later call.
	clock.Advance(time.Hour)
	if got := cd.Remaining("carol", ""); got != 0 {
		t.Fatalf("carol remaining %v", got)
	}
	if n := cd.Len(); n != 0 {
		t.Fatalf("Len = %d after everything was forgotten, want 0", n)
	}
}

func TestCooldownUserAndIPAreSeparateKeys(t *testing.T) {
	clock := newFakeClock()
	cd := newTestCooldown(clock, 0)
	cd.Kick("alice", "10.0.0.1")
	for _, tc := range []struct {
		user, ip string
		want     time.Duration
	}{
		{"alice", "10.0.0.1", 10 * time.Second},
		{"alice", "10.0.0.2", 10 * time.Second}, // the user from another IP
		{"bob", "10.0.0.1", 10 * time.Second},   // another user from the IP
		{"bob", "10.0.0.2", 0},
		{"", "", 0},
	} {
		if got := cd.Remaining(tc.user, tc.ip); got != tc.want {
			t.Errorf("Remaining(%q, %q) = %v, want %v", tc.user, tc.ip, got, tc.want)
		}
	}
	// The user's repeat count follows the user, not the IP.
	clock.Advance(10 * time.Second)
	if got := cd.Kick("alice", "10.0.0.9"); got != 20*time.Second {
		t.Fatalf("alice from a new IP = %v, want 20s (her second kick)", got)
	}
	if got := cd.Remaining("", "10.0.0.9"); got != 10*time.Second {
		t.Fatalf("new IP remaining %v, want its own first 10s", got)
	}
}

func TestCooldownDisabled(t *testing.T) {
	for _, cd := range []*Cooldown{nil, NewCooldown(CooldownConfig{}), NewCooldown(CooldownConfig{Base: -time.Second})} {
		if got := cd.Kick("alice", "10.0.0.1"); got != 0 {
			t.Fatalf("disabled Kick = %v", got)
		}
		if got := cd.Remaining("alice", "10.0.0.1"); got != 0 {
			t.Fatalf("disabled Remaining = %v", got)
		}
		if cd.Len() != 0 {
			t.Fatalf("disabled Len = %d", cd.Len())
		}
	}
}

func TestCooldownKeyCap(t *testing.T) {
	clock := newFakeClock()
	cd := newTestCooldown(clock, 4)

	// "old" escalates to the 5 min cap: it stays remembered until 15 min from now.
	for range 5 {
		clock.Advance(cd.Kick("old", ""))
	}
	if got := cd.Kick("old", ""); got != 5*time.Minute {
		t.Fatalf("old: %v, want 5m", got)
	}
	// b1 and b2 are forgotten after 10m10s, while "old", ahead of them in
	// kick order, is still remembered: the lazy purge from the front stops at it.
	cd.Kick("b1", "")
	cd.Kick("b2", "")
	clock.Advance(11 * time.Minute)
	cd.Kick("d", "")
	if n := cd.Len(); n != 4 {
		t.Fatalf("Len = %d, want 4 (b1 and b2 not purged yet)", n)
	}
	// The table is full: the new key makes room by dropping forgotten entries first.
	cd.Kick("e", "")
	if n := cd.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3 (old, d, e)", n)
	}
	for _, k := range []string{"d", "e"} {
		if cd.Remaining(k, "") != 10*time.Second {
			t.Fatalf("%s lost its cool-down", k)
		}
	}
	// "old" kept its repeat count (its cool-down is over, its memory is not).
	if got := cd.Kick("old", ""); got != 5*time.Minute {
		t.Fatalf("old kicked again: %v, want 5m (still remembered)", got)
	}
	// Full of live keys: the least recently kicked makes room (d; old was
	// just kicked again and counts as recent).
	cd.Kick("f", "")
	cd.Kick("g", "")
	if n := cd.Len(); n != 4 {
		t.Fatalf("Len = %d, want 4", n)
	}
	if cd.Remaining("d", "") != 0 {
		t.Fatal("the least recently kicked key d was not evicted")
	}
	for _, k := range []string{"old", "e", "f", "g"} {
		if cd.Remaining(k, "") == 0 {
			t.Fatalf("key %s was evicted", k)
		}
	}
	// Many more than the cap: the table never grows beyond it.
	for i := range 1000 {
		cd.Kick(fmt.Sprintf("flood%d", i), fmt.Sprintf("10.1.%d.%d", i/256, i%256))
		if n := cd.Len(); n > 4 {
			t.Fatalf("Len = %d after %d kicks, want <= 4", n, i+1)
		}
	}
}

// TestCooldownConcurrent hammers one Cooldown from many goroutines (run
// with -race): the table stays within its cap and a key kicked by many
// goroutines at one instant counts one offence.
func TestCooldownConcurrent(t *testing.T) {
	clock := newFakeClock()
	cd := newTestCooldown(clock, 50)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				user := fmt.Sprintf("u%d", (g*500+i)%200)
				switch i % 4 {
				case 0:
					cd.Kick(user, fmt.Sprintf("10.0.0.%d", i%100))
				case 1:
					clock.Advance(time.Second)
				default:
					cd.Remaining(user, "10.0.0.1")
				}
				if n := cd.Len(); n > 50 {
					t.Errorf("Len = %d, want <= 50", n)
					return
				}
			}
		})
	}
	wg.Wait()

	shared := newTestCooldown(newFakeClock(), 0)
	for range 32 {
		wg.Go(func() { shared.Kick("tabs", "10.9.9.9") })
	}
	wg.Wait()
	if got := shared.Remaining("tabs", ""); got != 10*time.Second {
		t.Fatalf("simultaneous kicks: remaining %v, want one offence's 10s", got)
	}
}

func TestKickCooldownMiddleware(t *testing.T) {
	clock := newFakeClock()
	cd := NewCooldown(CooldownConfig{Base: 1200 * time.Millisecond, Now: clock.Now})
	var refused atomic.Int32
	mw := KickCooldown(cd, func() { refused.Add(1) })
	hs := func(user, ip string) *sio.Handshake {
		return &sio.Handshake{Namespace: "/", RemoteAddr: ip, User: &sio.User{ID: user}}
	}
	ctx := context.Background()

	if err := mw(ctx, hs("alice", "10.0.0.1")); err != nil {
		t.Fatalf("nobody kicked: %v", err)
	}
	cd.Kick("alice", "10.0.0.1")
	for _, h := range []*sio.Handshake{hs("alice", "10.0.0.2"), hs("bob", "10.0.0.1"), {RemoteAddr: "10.0.0.1"}} {
		err := mw(ctx, h)
		var se *sio.Error
		if !errors.As(err, &se) || se.Code != sio.CodeRateLimited {
			t.Fatalf("user %v ip %s: err = %v, want rate_limited", h.User, h.RemoteAddr, err)
		}
		if se.Message != "Too many events: try again in 2s" {
			t.Fatalf("message %q", se.Message)
		}
	}
	if err := mw(ctx, hs("bob", "10.0.0.2")); err != nil {
		t.Fatalf("bystander refused: %v", err)
	}
	if n := refused.Load(); n != 3 {
		t.Fatalf("refusals counted %d, want 3", n)
	}
	clock.Advance(1200 * time.Millisecond)
	if err := mw(ctx, hs("alice", "10.0.0.1")); err != nil {
		t.Fatalf("after the cool-down: %v", err)
	}
	// A nil Cooldown (cool-downs off) and a nil counter refuse nobody.
	if err := KickCooldown(nil, nil)(ctx, hs("alice", "10.0.0.1")); err != nil {
		t.Fatalf("nil cooldown: %v", err)
	}
}

func TestCooldownMessage(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Millisecond:        "Too many events: try again in 1s",
		time.Second:             "Too many events: try again in 1s",
		1001 * time.Millisecond: "Too many events: try again in 2s",
		5 * time.Minute:         "Too many events: try again in 300s",
	} {
		if got := cooldownMessage(d); got != want {
			t.Errorf("cooldownMessage(%v) = %q, want %q", d, got, want)
		}
	}
}
