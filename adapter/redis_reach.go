package adapter

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pub/sub delivers to the servers subscribed at the moment of the PUBLISH,
// and to no one later: a node whose subscription is down (after an outage
// its reconnection backs off) misses what others publish meanwhile, as
// with Node's adapter. PUBLISH answers how many subscribers got it; reach
// compares that with the most seen over the last reachWindow, and counts
// the publishes that reached fewer (ShortPublishes): what a deaf node
// missed. Only ADAPTER=redis-streams replays it.

const reachWindow = 30 * time.Second

type reach struct {
	mu        sync.Mutex
	cur, prev int64 // most receivers seen in this window and the previous one
	since     time.Time
	short     atomic.Uint64
}

func (x *reach) note(n int64) {
	now := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	if now.Sub(x.since) > reachWindow {
		x.prev, x.cur, x.since = x.cur, 0, now
	}
	if n < max(x.cur, x.prev) {
		x.short.Add(1)
	}
	x.cur = max(x.cur, n)
}

// ShortPublishes counts the broadcasts this node published that reached
// fewer servers than the most it reached over the last 30 s: a server's
// subscription was down, and it missed them.
func (r *RedisCluster) ShortPublishes() uint64 { return r.reach.short.Load() }
