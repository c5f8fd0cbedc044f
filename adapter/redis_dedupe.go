package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisDedupe is the cluster-wide Dedupe: a claim is one Lua script (GET the
// existing entry, or SET it with PX ttl) on the key "<prefix>:sb:dedupe:<key>",
// holding the JSON of the Accepted.
//
// When Redis fails, Claim answers from an embedded MemoryDedupe instead (so
// local delivery continues; no error is returned) and reports the Redis error
// to onError. For one window (the ttl) after a failure, claims also consult
// that memory store, so a retry of a message accepted during the outage is
// still recognised once Redis is back (and Redis learns the original entry).
//
// Release forgets a claim in both (compare-and-delete, so a later claim of
// the same key is left alone). A release that cannot reach Redis is kept on
// this node for the window and done before the next claim of that key, so a
// retry of a message that was never delivered is not answered "duplicate".
type RedisDedupe struct {
	c        redis.UniversalClient
	prefix   string // "<prefix>:sb:dedupe:"
	onError  func(error)
	mem      *MemoryDedupe
	released *MemoryDedupe // releases Redis has not heard of yet
	window   atomic.Int64  // the longest ttl claimed, in ns (how long a release is kept)

	mu       sync.Mutex
	memUntil time.Time // consult mem until then
}

// NewRedisDedupe returns a de-duplication store on c; prefix defaults to
// "socket.io". onError may be nil.
func NewRedisDedupe(c redis.UniversalClient, prefix string, onError func(error)) *RedisDedupe {
	if prefix == "" {
		prefix = "socket.io"
	}
	return &RedisDedupe{c: c, prefix: prefix + ":sb:dedupe:", onError: onError, mem: NewMemoryDedupe(), released: NewMemoryDedupe()}
}

// Claim implements Dedupe. It never returns an error.
func (d *RedisDedupe) Claim(ctx context.Context, key string, v Accepted, ttl time.Duration) (Accepted, bool, error) {
	if w := int64(ttl); w > d.window.Load() {
		d.window.Store(w) // a race only keeps a shorter window for a moment
	}
	if rel, ok := d.released.get(key); ok {
		// An earlier release of this key did not reach Redis: do it first
		// (on failure the claim below fails too and is answered locally).
		if err := d.release(ctx, key, rel); err == nil {
			_ = d.released.Release(ctx, key, rel)
		}
	}
	d.mu.Lock()
	degraded := time.Now().Before(d.memUntil)
	d.mu.Unlock()
	var memGot Accepted
	var memDup bool
	if degraded {
		memGot, memDup, _ = d.mem.Claim(ctx, key, v, ttl)
		v = memGot
	}
	got, dup, err := d.claim(ctx, key, v, ttl)
	if err != nil {
		d.mu.Lock()
		if until := time.Now().Add(ttl); until.After(d.memUntil) {
			d.memUntil = until
		}
		d.mu.Unlock()
		if d.onError != nil {
			d.onError(fmt.Errorf("dedupe claim (answered locally): %w", err))
		}
		if degraded {
			return memGot, memDup, nil
		}
		return d.mem.Claim(ctx, key, v, ttl)
	}
	return got, dup || memDup, nil
}

// Release implements Dedupe. It never returns an error: a release Redis
// could not take is kept on this node and retried before the next claim of
// key (reported to onError).
func (d *RedisDedupe) Release(ctx context.Context, key string, v Accepted) error {
	_ = d.mem.Release(ctx, key, v)
	if err := d.release(ctx, key, v); err != nil {
		if w := time.Duration(d.window.Load()); w > 0 {
			d.released.put(key, v, w)
		}
		if d.onError != nil {
			d.onError(fmt.Errorf("dedupe release (kept to retry): %w", err))
		}
	}
	return nil
}

// redisReleaseScript deletes KEYS[1] if it holds ARGV[1].
var redisReleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (d *RedisDedupe) release(ctx context.Context, key string, v Accepted) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return redisReleaseScript.Run(ctx, d.c, []string{d.prefix + key}, b).Err()
}

func (d *RedisDedupe) claim(ctx context.Context, key string, v Accepted, ttl time.Duration) (Accepted, bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Accepted{}, false, err
	}
	res, err := redisClaimScript.Run(ctx, d.c, []string{d.prefix + key}, b, max(ttl.Milliseconds(), 1)).Slice()
	if err != nil {
		return Accepted{}, false, err
	}
	if len(res) != 2 {
		return Accepted{}, false, fmt.Errorf("unexpected claim reply %v", res)
	}
	earlier, _ := res[0].(int64)
	s, _ := res[1].(string)
	var got Accepted
	if err := json.Unmarshal([]byte(s), &got); err != nil {
		return Accepted{}, false, fmt.Errorf("stored entry %q: %w", s, err)
	}
	return got, earlier == 1, nil
}
