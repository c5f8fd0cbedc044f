package adapter

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
)

// Release forgets a claim that still holds the released value, and only
// that: a retry of a message that was never delivered is accepted afresh.
func TestMemoryDedupeRelease(t *testing.T) {
	ctx := context.Background()
	d := NewMemoryDedupe()
	v1, v2 := Accepted{ID: "1", TS: 1}, Accepted{ID: "2", TS: 2}
	d.Claim(ctx, "k", v1, time.Hour)
	if err := d.Release(ctx, "k", v2); err != nil {
		t.Fatal(err)
	}
	if got, dup, _ := d.Claim(ctx, "k", v2, time.Hour); !dup || got != v1 {
		t.Fatalf("after releasing another value: %v %v, want the first still held", got, dup)
	}
	_ = d.Release(ctx, "k", v1)
	if d.Len() != 0 {
		t.Fatalf("%d entries after the release", d.Len())
	}
	if got, dup, _ := d.Claim(ctx, "k", v2, time.Hour); dup || got != v2 {
		t.Fatalf("claim after release: %v %v, want a fresh claim", got, dup)
	}
	// The released entry's place in the expiry order does not evict the new one.
	d.now = func() time.Time { return time.Now().Add(30 * time.Minute) }
	if got, dup, _ := d.Claim(ctx, "k", v1, time.Hour); !dup || got != v2 {
		t.Fatalf("later claim: %v %v, want %v held", got, dup, v2)
	}
}

func TestRedisDedupeRelease(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	c := testClient(t, srv.Addr)
	var errs []error
	d := NewRedisDedupe(c, prefix, func(err error) { errs = append(errs, err) })
	ctx := tctx(t, 30*time.Second)
	v1, v2 := Accepted{ID: "1", TS: 1}, Accepted{ID: "2", TS: 2}
	key := prefix + ":sb:dedupe:k"

	if _, dup, _ := d.Claim(ctx, "k", v1, time.Minute); dup {
		t.Fatal("first claim is a duplicate")
	}
	_ = d.Release(ctx, "k", v2) // not the holder: nothing happens
	if n, _ := c.Exists(ctx, key).Result(); n != 1 {
		t.Fatal("a release of another value deleted the claim")
	}
	_ = d.Release(ctx, "k", v1)
	if n, _ := c.Exists(ctx, key).Result(); n != 0 {
		t.Fatal("released claim still in Redis")
	}
	if got, dup, _ := d.Claim(ctx, "k", v2, time.Minute); dup || got != v2 {
		t.Fatalf("claim after release: %v %v", got, dup)
	}
	_ = d.Release(ctx, "k", v2)

	// Redis down: the claim is answered locally and released locally.
	srv.Stop()
	if _, dup, _ := d.Claim(ctx, "k", v1, time.Minute); dup {
		t.Fatal("claim with Redis down is a duplicate")
	}
	_ = d.Release(ctx, "k", v1)
	if got, dup, _ := d.Claim(ctx, "k", v2, time.Minute); dup || got != v2 {
		t.Fatalf("claim with Redis down after a local release: %v %v, want fresh", got, dup)
	}
	_ = d.Release(ctx, "k", v2)
	if len(errs) == 0 {
		t.Fatal("Redis errors not reported")
	}

	// A release that could not reach Redis while Redis still holds the claim
	// (it came back with its data, or the failure was a partition): done
	// before the next claim of that key.
	srv.Restart(t, 0)
	waitFor(t, 5*time.Second, "Redis back", func() bool { return c.Ping(ctx).Err() == nil })
	d2 := NewRedisDedupe(c, prefix, nil)
	if _, dup, _ := d2.Claim(ctx, "k2", v1, time.Minute); dup {
		t.Fatal("k2: first claim is a duplicate")
	}
	srv.Stop()
	_ = d2.Release(ctx, "k2", v1) // fails: kept on this node
	srv.Restart(t, 0)
	waitFor(t, 5*time.Second, "Redis back", func() bool { return c.Ping(ctx).Err() == nil })
	b, _ := json.Marshal(v1)
	if err := c.Set(ctx, key+"2", b, time.Minute).Err(); err != nil { // Redis kept the claim
		t.Fatal(err)
	}
	// Claims of other keys meanwhile do not consume it.
	d2.Claim(ctx, "k3", v1, time.Minute)
	if got, dup, _ := d2.Claim(ctx, "k2", v2, time.Minute); dup || got != v2 {
		t.Fatalf("claim after a release Redis missed: %v %v, want a fresh claim", got, dup)
	}
	if s, _ := c.Get(ctx, key+"2").Result(); s != `{"id":"2","ts":2}` {
		t.Fatalf("Redis holds %q, want the new claim", s)
	}
	// Done once: a later release and claim behave as usual.
	if _, ok := d2.released.get("k2"); ok {
		t.Fatal("the missed release is still pending")
	}
	if got, dup, _ := d2.Claim(ctx, "k2", v1, time.Minute); !dup || got != v2 {
		t.Fatalf("repeat: %v %v, want %v held", got, dup, v2)
	}
}
