package adapter

// RedisPresence: cluster-wide Presence on one Redis.
//
// Data model. P is "<Prefix>:sb:" (default "socket.io:sb:"). Tuples stored as
// strings are length-prefixed ("4:room5:alice3:c17"), so ids may contain any
// byte. Every mutation is one Lua script (redis_lua.go), hence atomic.
//
//	P:room:<room>:conns   hash  enc(user, conn) -> node     one field per connection in the room
//	P:room:<room>:users   hash  user -> connections          count of the user's connections in the room
//	P:room:<room>:names   hash  user -> name                 latest display name
//	P:user:<user>:conns   hash  conn -> node                 the user's connections (MAX_CONNECTIONS_PER_USER)
//	P:node:<node>:entries set   enc("r", room, user, conn) | enc("c", user, conn)
//	                            what the node registered, so that anyone can undo it when the node dies
//	P:node:<node>:alive   string, PX NodeTTL                 heartbeat; gone = node dead
//	P:node:<node>:synced  string "ok" | "pending:<token>"    "ok" while Redis holds the node's complete state
//	P:nodes               set   node ids that may own entries (the reaper's work list)
//
// <node> is the node's instance id: NodeID plus a random suffix per process,
// so a node restarted under the same NodeID never inherits (and never keeps
// alive) the entries of its previous life; those are reaped like any dead
// node's. Keys never collide across kinds: the last ":"-separated segment of
// each key is fixed and room/user/node ids come before it.
//
// Costs: Join, Leave, AddConnection, RemoveConnection and the heartbeat are
// O(1); Members is O(users in the room); finding dead nodes is O(nodes); a
// dead node is reaped in batches of its entries. Nothing scans the keyspace.
//
// Reaping: Run heartbeats (SET alive PX NodeTTL) every HeartbeatInterval and
// looks for registered nodes whose alive key is gone. For each, the reap
// script SPOPs a batch of the node's entries and undoes the ones the node
// still owns, all in one script: an entry is popped by exactly one reaper, and
// the (room, user) pairs whose count reached zero are returned to that reaper
// only, which calls onGone. The script first checks that the node is still
// dead and deletes its synced marker.
//
// Self-healing: the node keeps a local mirror of what it registered. Redis
// losing its data (restart without persistence) or another node reaping this
// one (it missed heartbeats) both delete the synced marker; the next
// heartbeat sees that and re-applies the mirror (idempotently), then marks
// the node synced again, unless the marker changed in between. Operations
// that failed (Redis down, timeout) leave their entry dirty in the mirror and
// Run re-applies the wanted state when Redis is back: a failed Join stays
// wanted (callers keep the socket in the room; call Leave to undo), a failed
// Leave or RemoveConnection is retried, and a failed AddConnection (the
// connection was refused) is undone. A Leave that completes this way and turns
// out to be the user's last calls onGone.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisPresenceOptions configures NewRedisPresence.
type RedisPresenceOptions struct {
	Prefix            string        // key prefix, "socket.io" -> keys "socket.io:sb:..."; default "socket.io"
	NodeID            string        // this node's id (required)
	HeartbeatInterval time.Duration // default 2s
	NodeTTL           time.Duration // a node whose heartbeat is older than this is dead; default 10s, at least 3 x HeartbeatInterval when not above it
	// OnError, if set, gets every error of Run's background work (at most
	// one per heartbeat attempt, which backs off while Redis fails). Run logs
	// nothing itself.
	OnError func(error)
}

// RedisPresence is the cluster-wide Presence: state in Redis, shared by all
// nodes with the same prefix. Run must be running for heartbeats, reaping
// and self-healing; without it, other nodes reap this node's entries after
// NodeTTL.
//
// Create the client with ContextTimeoutEnabled so that a hung Redis (not
// just an unreachable one) also honours the callers' deadlines.
type RedisPresence struct {
	c         redis.UniversalClient
	p         string // "<Prefix>:sb:"
	node      string // instance id
	hb, ttl   time.Duration
	ttlMS     int64
	onError   func(error)
	healthy   atomic.Bool
	reapBatch int // entries per reap script call

	mu     sync.Mutex
	mirror map[redisMirrorKey]*redisMirrorEntry
}

type redisMirrorKey struct {
	kind             byte // 'r' room membership, 'c' connection count
	room, user, conn string
}

// redisMirrorEntry is what this node wants Redis to hold for one key.
type redisMirrorEntry struct {
	name     string
	present  bool // wanted state
	dirty    bool // Redis may not match the wanted state
	overlap  bool // two operations ran at once: their order in Redis is unknown
	inflight int
}

// NewRedisPresence returns a presence store on c. It panics if NodeID is
// empty.
func NewRedisPresence(c redis.UniversalClient, o RedisPresenceOptions) *RedisPresence {
	if o.NodeID == "" {
		panic("adapter: RedisPresenceOptions.NodeID is required")
	}
	if o.Prefix == "" {
		o.Prefix = "socket.io"
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 2 * time.Second
	}
	if o.NodeTTL <= 0 {
		o.NodeTTL = 10 * time.Second
	}
	if o.NodeTTL <= o.HeartbeatInterval {
		o.NodeTTL = 3 * o.HeartbeatInterval
	}
	p := &RedisPresence{
		c: c, p: o.Prefix + ":sb:", node: o.NodeID + "~" + redisRandomHex(6),
		hb: o.HeartbeatInterval, ttl: o.NodeTTL, ttlMS: max(o.NodeTTL.Milliseconds(), 1),
		onError: o.OnError, reapBatch: 256, mirror: map[redisMirrorKey]*redisMirrorEntry{},
	}
	return p
}

func redisRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Instance is this node's instance id in Redis (NodeID plus a random suffix).
func (p *RedisPresence) Instance() string { return p.node }

// Nodes lists the NodeIDs of the nodes whose presence heartbeat is alive,
// this one included once Run has heartbeated: sorted, each once (instances
// of one NodeID, such as a restarted node whose old heartbeat has not
// expired yet, are one entry). One Redis round trip, O(nodes).
func (p *RedisPresence) Nodes(ctx context.Context) ([]string, error) {
	ids, err := redisLiveNodesScript.Run(ctx, p.c, nil, p.p).StringSlice()
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if i := strings.LastIndexByte(id, '~'); i >= 0 {
			id = id[:i] // the instance suffix
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Healthy reports whether the last Redis round trip succeeded (for /readyz).
// It is false until the first one (Run heartbeats at once).
func (p *RedisPresence) Healthy() bool { return p.healthy.Load() }

func (p *RedisPresence) note(err error) error {
	if err == nil {
		p.healthy.Store(true)
	} else if !errors.Is(err, context.Canceled) {
		p.healthy.Store(false)
	}
	return err
}

// begin records an operation on k. Unless it is the reconciler's (reapply),
// the operation sets the wanted state (present, name).
func (p *RedisPresence) begin(k redisMirrorKey, reapply, present bool, name string) *redisMirrorEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.mirror[k]
	if e == nil {
		e = &redisMirrorEntry{}
		p.mirror[k] = e
	}
	if e.inflight > 0 {
		e.overlap = true
	}
	e.inflight++
	if !reapply {
		e.present, e.dirty = present, true
		if present {
			e.name = name
		}
	}
	return e
}

// end records the outcome of an operation begun on k. final, if set,
// replaces the wanted state (AddConnection learns it from Redis).
func (p *RedisPresence) end(k redisMirrorKey, e *redisMirrorEntry, err error, final *bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.inflight--
	if e.inflight > 0 {
		return
	}
	if e.overlap {
		e.overlap, e.dirty = false, true
	} else {
		if final != nil {
			e.present = *final
		}
		if err == nil {
			e.dirty = false
		}
	}
	if !e.dirty && !e.present {
		delete(p.mirror, k)
	}
}

// Join implements Presence.
func (p *RedisPresence) Join(ctx context.Context, room, userID, name, connID string) (bool, error) {
	k := redisMirrorKey{'r', room, userID, connID}
	e := p.begin(k, false, true, name)
	n, err := p.runJoin(ctx, p.c, room, userID, name, connID).Int64()
	p.end(k, e, p.note(err), nil)
	if err != nil {
		return false, fmt.Errorf("presence join: %w", err)
	}
	return n == 1, nil
}

func (p *RedisPresence) runJoin(ctx context.Context, s redis.Scripter, room, user, name, conn string) *redis.Cmd {
	return redisJoinScript.Run(ctx, s, nil, p.p, room, user, name, conn, p.node, p.ttlMS)
}

// Leave implements Presence.
func (p *RedisPresence) Leave(ctx context.Context, room, userID, connID string) (bool, error) {
	k := redisMirrorKey{'r', room, userID, connID}
	e := p.begin(k, false, false, "")
	last, _, err := redisLeaveResult(redisLeaveScript.Run(ctx, p.c, nil, p.p, room, userID, connID))
	p.end(k, e, p.note(err), nil)
	if err != nil {
		return false, fmt.Errorf("presence leave: %w", err)
	}
	return last, nil
}

func redisLeaveResult(cmd *redis.Cmd) (last bool, name string, err error) {
	v, err := cmd.Slice()
	if err != nil {
		return false, "", err
	}
	if len(v) != 2 {
		return false, "", fmt.Errorf("unexpected leave reply %v", v)
	}
	n, _ := v[0].(int64)
	name, _ = v[1].(string)
	return n == 1, name, nil
}

// Members implements Presence.
func (p *RedisPresence) Members(ctx context.Context, room string) ([]Member, error) {
	v, err := redisMembersScript.Run(ctx, p.c, nil, p.p, room).Slice()
	if p.note(err) != nil {
		return nil, fmt.Errorf("presence members: %w", err)
	}
	out := make([]Member, 0, len(v)/3)
	for i := 0; i+2 < len(v); i += 3 {
		id, _ := v[i].(string)
		cs, _ := v[i+1].(string)
		name, _ := v[i+2].(string)
		n, _ := strconv.Atoi(cs)
		out = append(out, Member{UserID: id, Name: name, Connections: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

// AddConnection implements Presence. The limit holds across all nodes.
func (p *RedisPresence) AddConnection(ctx context.Context, userID, connID string, limit int) (bool, error) {
	k := redisMirrorKey{'c', "", userID, connID}
	e := p.begin(k, false, true, "")
	n, err := p.runAddConn(ctx, p.c, userID, connID, limit).Int64()
	ok := err == nil && n == 1
	p.end(k, e, p.note(err), &ok)
	if err != nil {
		return false, fmt.Errorf("presence add connection: %w", err)
	}
	return ok, nil
}

func (p *RedisPresence) runAddConn(ctx context.Context, s redis.Scripter, user, conn string, limit int) *redis.Cmd {
	return redisAddConnScript.Run(ctx, s, nil, p.p, user, conn, limit, p.node, p.ttlMS)
}

// RemoveConnection implements Presence.
func (p *RedisPresence) RemoveConnection(ctx context.Context, userID, connID string) error {
	k := redisMirrorKey{'c', "", userID, connID}
	e := p.begin(k, false, false, "")
	err := redisRemoveConnScript.Run(ctx, p.c, nil, p.p, userID, connID).Err()
	p.end(k, e, p.note(err), nil)
	if err != nil {
		return fmt.Errorf("presence remove connection: %w", err)
	}
	return nil
}

// Run heartbeats this node and reaps dead nodes until ctx is done: every
// connection a dead node had registered (room memberships and per-user
// connection counts) is removed, and onGone is called once for each (room,
// userID, name) whose last connection was removed, so the caller can
// broadcast user-left. Any node may reap; every entry is processed exactly
// once even when several nodes reap at the same time. Run also re-applies
// this node's state after Redis lost it and retries failed operations (see
// the data model above); onGone is called for a retried Leave that removed
// the user's last connection. onGone runs on Run's goroutine.
//
// While Redis fails, Run retries with a backoff from 100ms doubling up to
// min(5s, HeartbeatInterval) (at least 100ms), reporting each failure to
// OnError.
func (p *RedisPresence) Run(ctx context.Context, onGone func(room, userID, name string)) {
	if onGone == nil {
		onGone = func(string, string, string) {}
	}
	const minBackoff = 100 * time.Millisecond
	maxBackoff := max(min(5*time.Second, p.hb), minBackoff)
	var backoff time.Duration
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := p.tick(ctx, onGone)
		if ctx.Err() != nil {
			return
		}
		wait := p.hb
		if err != nil {
			backoff = min(max(backoff*2, minBackoff), maxBackoff)
			wait = backoff
			if p.onError != nil {
				p.onError(err)
			}
		} else {
			backoff = 0
		}
		timer.Reset(wait)
	}
}

// tick is one heartbeat round: heartbeat, resync or retry this node's
// entries, reap dead nodes.
func (p *RedisPresence) tick(ctx context.Context, onGone func(room, userID, name string)) error {
	start := time.Now()
	step := min(max(p.ttl/2, 100*time.Millisecond), 5*time.Second)
	tctx, cancel := context.WithTimeout(ctx, step)
	defer cancel()

	tok := redisRandomHex(8)
	synced, err := redisHeartbeatScript.Run(tctx, p.c, nil, p.p, p.node, p.ttlMS, tok).Int64()
	if p.note(err) != nil {
		return fmt.Errorf("presence heartbeat: %w", err)
	}
	if synced == 0 {
		p.mu.Lock()
		for _, e := range p.mirror {
			if e.present {
				e.dirty = true
			}
		}
		p.mu.Unlock()
	}
	if err := p.reconcile(tctx, onGone); err != nil {
		return fmt.Errorf("presence resync: %w", err)
	}
	if synced == 0 {
		// Not marked synced if anything was reaped or lost meanwhile: the
		// next heartbeat resyncs again.
		if err := p.note(redisSyncedScript.Run(tctx, p.c, nil, p.p, p.node, tok).Err()); err != nil {
			return fmt.Errorf("presence resync: %w", err)
		}
	}

	dead, err := redisDeadNodesScript.Run(tctx, p.c, nil, p.p).StringSlice()
	if p.note(err) != nil {
		return fmt.Errorf("presence dead nodes: %w", err)
	}
	// Reaping gets at most half a heartbeat interval per round, so that this
	// node's own heartbeat is never late; the rest waits for the next round.
	budget := start.Add(p.hb / 2)
	for _, n := range dead {
		if n == p.node {
			continue
		}
		for more := true; more && time.Now().Before(budget); {
			var gone [][3]string
			more, gone, err = p.reapBatchOf(tctx, n)
			if p.note(err) != nil {
				return fmt.Errorf("presence reap %s: %w", n, err)
			}
			for _, g := range gone {
				onGone(g[0], g[1], g[2])
			}
		}
	}
	return nil
}

func (p *RedisPresence) reapBatchOf(ctx context.Context, node string) (bool, [][3]string, error) {
	v, err := redisReapScript.Run(ctx, p.c, nil, p.p, node, p.reapBatch).Slice()
	if err != nil {
		return false, nil, err
	}
	if len(v) == 0 {
		return false, nil, fmt.Errorf("unexpected reap reply %v", v)
	}
	more, _ := v[0].(int64)
	var gone [][3]string
	for i := 1; i+2 < len(v); i += 3 {
		room, _ := v[i].(string)
		user, _ := v[i+1].(string)
		name, _ := v[i+2].(string)
		gone = append(gone, [3]string{room, user, name})
	}
	return more == 1, gone, nil
}

// reconcile re-applies the wanted state of every dirty mirror entry, in
// pipelined chunks. It returns the first error; entries that failed stay
// dirty.
func (p *RedisPresence) reconcile(ctx context.Context, onGone func(room, userID, name string)) error {
	type job struct {
		k       redisMirrorKey
		e       *redisMirrorEntry
		present bool
		name    string
		cmd     *redis.Cmd
	}
	var jobs []job
	p.mu.Lock()
	for k, e := range p.mirror {
		if e.dirty && e.inflight == 0 {
			jobs = append(jobs, job{k: k, e: e, present: e.present, name: e.name})
		}
	}
	for _, j := range jobs {
		j.e.inflight++
	}
	p.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	// Pipelines cannot fall back from EVALSHA to EVAL: load the scripts first
	// (Redis may have restarted and forgotten them).
	var first error
	for _, s := range []*redis.Script{redisJoinScript, redisLeaveScript, redisAddConnScript, redisRemoveConnScript} {
		if err := s.Load(ctx, p.c).Err(); err != nil {
			first = err
			break
		}
	}
	const chunk = 500
	for lo := 0; lo < len(jobs); lo += chunk {
		part := jobs[lo:min(lo+chunk, len(jobs))]
		if first == nil {
			pipe := p.c.Pipeline()
			for i := range part {
				j := &part[i]
				switch {
				case j.k.kind == 'r' && j.present:
					j.cmd = redisJoinScript.EvalSha(ctx, pipe, nil, p.p, j.k.room, j.k.user, j.name, j.k.conn, p.node, p.ttlMS)
				case j.k.kind == 'r':
					j.cmd = redisLeaveScript.EvalSha(ctx, pipe, nil, p.p, j.k.room, j.k.user, j.k.conn)
				case j.present:
					j.cmd = redisAddConnScript.EvalSha(ctx, pipe, nil, p.p, j.k.user, j.k.conn, 0, p.node, p.ttlMS)
				default:
					j.cmd = redisRemoveConnScript.EvalSha(ctx, pipe, nil, p.p, j.k.user, j.k.conn)
				}
			}
			if _, err := pipe.Exec(ctx); err != nil && first == nil {
				first = err
			}
		}
		for _, j := range part {
			err := first
			if j.cmd != nil {
				err = j.cmd.Err()
			}
			if err == nil && j.k.kind == 'r' && !j.present {
				var last bool
				var name string
				if last, name, err = redisLeaveResult(j.cmd); err == nil && last {
					onGone(j.k.room, j.k.user, name)
				}
			}
			if err != nil && first == nil {
				first = err
			}
			p.end(j.k, j.e, err, nil)
		}
	}
	return p.note(first)
}
