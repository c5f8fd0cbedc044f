package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
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
type RedisDedupe struct {
	c       redis.UniversalClient
	prefix  string // "<prefix>:sb:dedupe:"
	onError func(error)
	mem     *MemoryDedupe

	mu       sync.Mutex
	memUntil time.Time // consult mem until then
}

// NewRedisDedupe returns a de-duplication store on c; prefix defaults to
// "socket.io". onError may be nil.
func NewRedisDedupe(c redis.UniversalClient, prefix string, onError func(error)) *RedisDedupe {
	if prefix == "" {
		prefix = "socket.io"
	}
	return &RedisDedupe{c: c, prefix: prefix + ":sb:dedupe:", onError: onError, mem: NewMemoryDedupe()}
}

// Claim implements Dedupe. It never returns an error.
func (d *RedisDedupe) Claim(ctx context.Context, key string, v Accepted, ttl time.Duration) (Accepted, bool, error) {
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
