package adapter

import (
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/switchboard/switchboard/internal/redistest"
)

// ---- helpers ----

var redisTestSeq atomic.Int64

// testPrefix is a key prefix of its own for every store a test creates, so
// that tests sharing a redis-server never see each other's keys.
func testPrefix(t *testing.T) string {
	return fmt.Sprintf("t%d.%s", redisTestSeq.Add(1), strings.ReplaceAll(t.Name(), "/", "."))
}

// testClient is a client that honours context deadlines even on a hung
// connection (what the server is expected to configure).
func testClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goneLog records onGone calls.
type goneLog struct {
	mu   sync.Mutex
	list []string
}

func (g *goneLog) add(room, user, name string) {
	g.mu.Lock()
	g.list = append(g.list, room+"|"+user+"|"+name)
	g.mu.Unlock()
}

func (g *goneLog) get() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := append([]string(nil), g.list...)
	sort.Strings(out)
	return out
}

func (g *goneLog) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.list)
}

// run starts p.Run and returns a function that stops it and waits (bounded)
// for it to return; the test's cleanup calls it too.
func run(t *testing.T, p *RedisPresence, onGone func(room, userID, name string)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx, onGone)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return within 5s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func fastOpts(prefix, node string) RedisPresenceOptions {
	return RedisPresenceOptions{Prefix: prefix, NodeID: node, HeartbeatInterval: 100 * time.Millisecond, NodeTTL: 300 * time.Millisecond}
}

func members(t *testing.T, p Presence, room string) []Member {
	t.Helper()
	m, err := p.Members(tctx(t, 5*time.Second), room)
	if err != nil {
		t.Fatalf("Members(%q): %v", room, err)
	}
	return m
}

// tcpProxy forwards to a real redis-server and can cut the network (close
// every connection and refuse new ones) while Redis keeps its data.
type tcpProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string) *tcpProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { _ = l.Close(); p.Cut() })
	return p
}

func (p *tcpProxy) Addr() string { return p.l.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(c, up)
		go pipe(up, c)
	}
}

// Cut closes every connection and refuses new ones until Resume.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *tcpProxy) Resume() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// ---- behaviour shared by MemoryPresence and RedisPresence ----

type presenceImpl struct {
	name string
	new  func(t *testing.T) Presence
}

func presenceImpls(t *testing.T) []presenceImpl {
	srv := redistest.Start(t)
	c := srv.Client(t)
	return []presenceImpl{
		{"memory", func(*testing.T) Presence { return NewMemoryPresence() }},
		{"redis", func(t *testing.T) Presence {
			return NewRedisPresence(c, RedisPresenceOptions{Prefix: testPrefix(t), NodeID: "n1"})
		}},
	}
}

var presenceCases = []struct {
	name string
	fn   func(t *testing.T, ctx context.Context, p Presence)
}{
	{"first and last connection", func(t *testing.T, ctx context.Context, p Presence) {
		if first, err := p.Join(ctx, "r", "u", "U", "c1"); err != nil || !first {
			t.Fatalf("first connection: first=%v err=%v", first, err)
		}
		if first, _ := p.Join(ctx, "r", "u", "U", "c2"); first {
			t.Fatal("second connection reported first")
		}
		if last, err := p.Leave(ctx, "r", "u", "c1"); err != nil || last {
			t.Fatalf("leaving with a tab left: last=%v err=%v", last, err)
		}
		if last, _ := p.Leave(ctx, "r", "u", "c2"); !last {
			t.Fatal("last connection not last")
		}
		if m := members(t, p, "r"); len(m) != 0 {
			t.Fatalf("members after everyone left = %+v", m)
		}
		if first, _ := p.Join(ctx, "r", "u", "U", "c3"); !first {
			t.Fatal("joining again after leaving is not first")
		}
	}},
	{"members ordered with counts and latest name", func(t *testing.T, ctx context.Context, p Presence) {
		p.Join(ctx, "r", "zed", "Zed", "c1")
		p.Join(ctx, "r", "amy", "Amy", "c2")
		p.Join(ctx, "r", "max", "Old", "c3")
		p.Join(ctx, "r", "max", "New", "c4")
		p.Join(ctx, "other", "bob", "Bob", "c5")
		want := []Member{{"amy", "Amy", 1}, {"max", "New", 2}, {"zed", "Zed", 1}}
		if m := members(t, p, "r"); !reflect.DeepEqual(m, want) {
			t.Fatalf("members = %+v, want %+v", m, want)
		}
		p.Leave(ctx, "r", "max", "c4")
		want[1].Connections = 1
		if m := members(t, p, "r"); !reflect.DeepEqual(m, want) {
			t.Fatalf("after a leave members = %+v, want %+v", m, want)
		}
		if m := members(t, p, "empty"); m == nil || len(m) != 0 {
			t.Fatalf("empty room members = %#v, want an empty list", m)
		}
	}},
	{"leave of unknown connection is a no-op", func(t *testing.T, ctx context.Context, p Presence) {
		p.Join(ctx, "r", "u", "U", "c1")
		for _, l := range [][3]string{{"r", "u", "nope"}, {"r", "x", "c1"}, {"nowhere", "u", "c1"}, {"r", "nobody", "nope"}} {
			if last, err := p.Leave(ctx, l[0], l[1], l[2]); err != nil || last {
				t.Fatalf("Leave%v = %v, %v; want false, nil", l, last, err)
			}
		}
		if m := members(t, p, "r"); !reflect.DeepEqual(m, []Member{{"u", "U", 1}}) {
			t.Fatalf("members = %+v", m)
		}
		if last, _ := p.Leave(ctx, "r", "u", "c1"); !last {
			t.Fatal("last connection not last")
		}
		if last, _ := p.Leave(ctx, "r", "u", "c1"); last {
			t.Fatal("leaving twice reported last twice")
		}
	}},
	{"joining twice with one connection", func(t *testing.T, ctx context.Context, p Presence) {
		if first, _ := p.Join(ctx, "r", "u", "A", "c1"); !first {
			t.Fatal("not first")
		}
		if first, _ := p.Join(ctx, "r", "u", "B", "c1"); first {
			t.Fatal("same connection joining again reported first")
		}
		if m := members(t, p, "r"); !reflect.DeepEqual(m, []Member{{"u", "B", 1}}) {
			t.Fatalf("members = %+v", m)
		}
		if last, _ := p.Leave(ctx, "r", "u", "c1"); !last {
			t.Fatal("the only connection leaving is not last")
		}
	}},
	{"ids with separators stay apart", func(t *testing.T, ctx context.Context, p Presence) {
		// A length-prefixed encoding must not confuse (user "a:1", conn "x")
		// with (user "a", conn "1:x"), nor room "x" with room "x:users".
		p.Join(ctx, "x", "a:1", "A1", "x")
		if first, _ := p.Join(ctx, "x", "a", "A", "1:x"); !first {
			t.Fatal("user a confused with user a:1")
		}
		p.Join(ctx, "x:users", "u\x00v", "Ü ñ", "c")
		if m := members(t, p, "x"); !reflect.DeepEqual(m, []Member{{"a", "A", 1}, {"a:1", "A1", 1}}) {
			t.Fatalf("members(x) = %+v", m)
		}
		if m := members(t, p, "x:users"); !reflect.DeepEqual(m, []Member{{"u\x00v", "Ü ñ", 1}}) {
			t.Fatalf("members(x:users) = %+v", m)
		}
		if last, _ := p.Leave(ctx, "x", "a", "x"); last {
			t.Fatal("leave with a mixed-up key succeeded")
		}
	}},
	{"connection limit", func(t *testing.T, ctx context.Context, p Presence) {
		for i, want := range []bool{true, true, false} {
			if ok, err := p.AddConnection(ctx, "u", fmt.Sprint("c", i), 2); err != nil || ok != want {
				t.Fatalf("AddConnection %d = %v, %v; want %v", i, ok, err, want)
			}
		}
		if ok, _ := p.AddConnection(ctx, "u", "c0", 2); !ok {
			t.Fatal("adding a counted connection again refused at the limit")
		}
		if ok, _ := p.AddConnection(ctx, "other", "c0", 2); !ok {
			t.Fatal("limit shared between users")
		}
		if err := p.RemoveConnection(ctx, "u", "unknown"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := p.AddConnection(ctx, "u", "c9", 2); ok {
			t.Fatal("removing an unknown connection released a slot")
		}
		if err := p.RemoveConnection(ctx, "u", "c0"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := p.AddConnection(ctx, "u", "z", 2); !ok {
			t.Fatal("slot not released")
		}
		for i := range 30 {
			if ok, _ := p.AddConnection(ctx, "free", fmt.Sprint(i), 0); !ok {
				t.Fatal("limit 0 limited")
			}
		}
	}},
}

func TestPresenceBehaviour(t *testing.T) {
	for _, impl := range presenceImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			for _, tc := range presenceCases {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, tctx(t, 10*time.Second), impl.new(t))
				})
			}
		})
	}
}

// No keys outlive the entries they describe: only node bookkeeping remains.
func TestRedisPresenceLeavesNoKeys(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	prefix := testPrefix(t)
	p := NewRedisPresence(c, RedisPresenceOptions{Prefix: prefix, NodeID: "n"})
	ctx := tctx(t, 10*time.Second)
	for i := range 5 {
		p.Join(ctx, "r", fmt.Sprint("u", i%2), "U", fmt.Sprint("c", i))
		p.AddConnection(ctx, fmt.Sprint("u", i%2), fmt.Sprint("c", i), 0)
	}
	keys, _ := c.Keys(ctx, prefix+":sb:room:*").Result()
	if len(keys) != 3 {
		t.Fatalf("room keys = %v, want conns, users and names", keys)
	}
	for i := range 5 {
		p.Leave(ctx, "r", fmt.Sprint("u", i%2), fmt.Sprint("c", i))
		p.RemoveConnection(ctx, fmt.Sprint("u", i%2), fmt.Sprint("c", i))
	}
	keys, _ = c.Keys(ctx, prefix+":*").Result()
	sort.Strings(keys)
	want := []string{prefix + ":sb:node:" + p.Instance() + ":alive", prefix + ":sb:nodes"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys left = %q, want %q", keys, want)
	}
	if p.mirrorLen() != 0 {
		t.Fatalf("mirror keeps %d entries", p.mirrorLen())
	}
}

func (p *RedisPresence) mirrorLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mirror)
}

// ---- several nodes ----

func TestRedisPresenceTwoNodes(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	a := NewRedisPresence(srv.Client(t), RedisPresenceOptions{Prefix: prefix, NodeID: "A"})
	b := NewRedisPresence(srv.Client(t), RedisPresenceOptions{Prefix: prefix, NodeID: "B"})
	ctx := tctx(t, 10*time.Second)

	if first, err := a.Join(ctx, "r", "u", "U", "a1"); err != nil || !first {
		t.Fatalf("first tab on A: %v %v", first, err)
	}
	if first, _ := b.Join(ctx, "r", "u", "U2", "b1"); first {
		t.Fatal("second tab on B reported first")
	}
	b.Join(ctx, "r", "v", "V", "b2")
	want := []Member{{"u", "U2", 2}, {"v", "V", 1}}
	for _, p := range []Presence{a, b} {
		if m := members(t, p, "r"); !reflect.DeepEqual(m, want) {
			t.Fatalf("members = %+v, want %+v", m, want)
		}
	}
	if last, _ := a.Leave(ctx, "r", "u", "a1"); last {
		t.Fatal("leaving A with a tab on B reported last")
	}
	if last, _ := b.Leave(ctx, "r", "u", "b1"); !last {
		t.Fatal("last tab (on B) not last")
	}

	// Per-user limit across nodes.
	if ok, _ := a.AddConnection(ctx, "u", "a1", 2); !ok {
		t.Fatal("refused")
	}
	if ok, _ := b.AddConnection(ctx, "u", "b1", 2); !ok {
		t.Fatal("refused")
	}
	if ok, _ := b.AddConnection(ctx, "u", "b2", 2); ok {
		t.Fatal("limit not shared between nodes")
	}
	a.RemoveConnection(ctx, "u", "a1")
	if ok, _ := b.AddConnection(ctx, "u", "b2", 2); !ok {
		t.Fatal("slot released on A not available on B")
	}
}

func TestRedisPresenceConcurrentNodes(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	nodes := []*RedisPresence{
		NewRedisPresence(srv.Client(t), RedisPresenceOptions{Prefix: prefix, NodeID: "A"}),
		NewRedisPresence(srv.Client(t), RedisPresenceOptions{Prefix: prefix, NodeID: "B"}),
	}
	ctx := tctx(t, 20*time.Second)
	const perNode, limit, rounds = 20, 5, 5

	for round := range rounds {
		user := fmt.Sprint("u", round)
		var admitted, firsts, lasts atomic.Int64
		var errs atomic.Int64
		var wg sync.WaitGroup
		for n, p := range nodes {
			for i := range perNode {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn := fmt.Sprintf("%d-%d", n, i)
					ok, err := p.AddConnection(ctx, user, conn, limit)
					if err != nil {
						errs.Add(1)
					}
					if ok {
						admitted.Add(1)
					}
					first, err := p.Join(ctx, "room", user, "U", conn)
					if err != nil {
						errs.Add(1)
					}
					if first {
						firsts.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		if errs.Load() != 0 {
			t.Fatalf("%d errors", errs.Load())
		}
		if got := admitted.Load(); got != limit {
			t.Fatalf("round %d: %d connections admitted across nodes, want exactly %d", round, got, limit)
		}
		n, _ := nodes[0].c.HLen(ctx, prefix+":sb:user:"+user+":conns").Result()
		if n != limit {
			t.Fatalf("round %d: %d connections counted, want %d", round, n, limit)
		}
		if firsts.Load() != 1 {
			t.Fatalf("round %d: %d joins reported first, want 1", round, firsts.Load())
		}
		if m := members(t, nodes[1], "room"); len(m) != 1 || m[0].Connections != 2*perNode {
			t.Fatalf("members = %+v", m)
		}
		for n, p := range nodes {
			for i := range perNode {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn := fmt.Sprintf("%d-%d", n, i)
					last, err := p.Leave(ctx, "room", user, conn)
					if err != nil {
						errs.Add(1)
					}
					if last {
						lasts.Add(1)
					}
					if err := p.RemoveConnection(ctx, user, conn); err != nil {
						errs.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		if errs.Load() != 0 || lasts.Load() != 1 {
			t.Fatalf("round %d: %d errors, %d leaves reported last, want 1", round, errs.Load(), lasts.Load())
		}
		if ok, _ := nodes[0].AddConnection(ctx, user, "again", limit); !ok {
			t.Fatal("slots not released")
		}
	}
}

// ---- reaping ----

func TestRedisPresenceReapsDeadNode(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	a := NewRedisPresence(srv.Client(t), fastOpts(prefix, "A"))
	b := NewRedisPresence(srv.Client(t), fastOpts(prefix, "B"))
	var goneA, goneB goneLog
	run(t, a, goneA.add)
	stopB := run(t, b, goneB.add)
	ctx := tctx(t, 20*time.Second)

	must := func(_ bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Join(ctx, "r1", "u1", "U1", "b1")) // only on B: gone
	must(b.Join(ctx, "r1", "u2", "U2", "b2")) // also on A: stays
	must(a.Join(ctx, "r1", "u2", "U2", "a1"))
	must(b.Join(ctx, "r2", "u1", "U1", "b3")) // two tabs on B: gone once
	must(b.Join(ctx, "r2", "u1", "U1", "b4"))
	must(a.Join(ctx, "r3", "u3", "U3", "a2")) // only on A
	must(b.AddConnection(ctx, "u1", "b1", 3))
	must(b.AddConnection(ctx, "u1", "b3", 3))
	must(a.AddConnection(ctx, "u1", "a9", 3))

	// Live nodes are never reaped: wait more than NodeTTL.
	time.Sleep(700 * time.Millisecond)
	if n := goneA.len() + goneB.len(); n != 0 {
		t.Fatalf("reaped a live node: %v %v", goneA.get(), goneB.get())
	}

	stopB() // B dies: no more heartbeats; its alive key expires after NodeTTL.
	want := []string{"r1|u1|U1", "r2|u1|U1"}
	waitFor(t, 5*time.Second, "A to reap B", func() bool { return goneA.len() >= len(want) })
	time.Sleep(500 * time.Millisecond) // and nothing more
	if got := goneA.get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("onGone calls = %q, want %q", got, want)
	}
	if goneB.len() != 0 {
		t.Fatalf("B reported %q", goneB.get())
	}
	if m := members(t, a, "r1"); !reflect.DeepEqual(m, []Member{{"u2", "U2", 1}}) {
		t.Fatalf("r1 members = %+v", m)
	}
	if m := members(t, a, "r2"); len(m) != 0 {
		t.Fatalf("r2 members = %+v", m)
	}
	if m := members(t, a, "r3"); !reflect.DeepEqual(m, []Member{{"u3", "U3", 1}}) {
		t.Fatalf("r3 members = %+v", m)
	}
	// B's connection counts are released; A's stays.
	for i, want := range []bool{true, true, false} {
		if ok, _ := a.AddConnection(ctx, "u1", fmt.Sprint("n", i), 3); ok != want {
			t.Fatalf("AddConnection %d after reaping = %v, want %v", i, ok, want)
		}
	}
	// B's bookkeeping is gone.
	c := srv.Client(t)
	if isB, _ := c.SIsMember(ctx, prefix+":sb:nodes", b.Instance()).Result(); isB {
		t.Fatal("dead node still registered")
	}
	if n, _ := c.Exists(ctx, prefix+":sb:node:"+b.Instance()+":entries", prefix+":sb:node:"+b.Instance()+":synced").Result(); n != 0 {
		t.Fatalf("%d keys of the dead node left", n)
	}
}

func TestRedisPresenceConcurrentReapers(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	const users, rooms = 60, 4
	want := map[string]bool{}

	// register makes b (named node) register every user in rooms rooms,
	// with two tabs each, and count one connection per user.
	register := func(t *testing.T, b *RedisPresence, node string) {
		ctx := tctx(t, 20*time.Second)
		for u := range users {
			for r := range rooms {
				user, room := fmt.Sprint("u", u), fmt.Sprint(node, "-r", r)
				for tab := range 2 {
					if _, err := b.Join(ctx, room, user, "N"+user, fmt.Sprint(user, room, tab)); err != nil {
						t.Fatal(err)
					}
				}
				want[room+"|"+user+"|N"+user] = true
			}
			b.AddConnection(ctx, fmt.Sprint("u", u), "conn"+node, 0)
		}
	}

	t.Run("two nodes running Run", func(t *testing.T) {
		clear(want)
		var gone goneLog
		reapers := make([]*RedisPresence, 2)
		for i := range reapers {
			reapers[i] = NewRedisPresence(srv.Client(t), fastOpts(prefix, fmt.Sprint("R", i)))
			reapers[i].reapBatch = 7 // many small batches: the reapers interleave
			run(t, reapers[i], gone.add)
		}
		// B heartbeats from before its first entry: it is alive until stopB.
		b := NewRedisPresence(srv.Client(t), fastOpts(prefix, "B"))
		stopB := run(t, b, gone.add)
		register(t, b, "B")
		time.Sleep(200 * time.Millisecond)
		if gone.len() != 0 {
			t.Fatalf("live node reaped: %v", gone.get())
		}
		stopB()
		waitFor(t, 10*time.Second, "the reapers to finish", func() bool { return gone.len() >= len(want) })
		time.Sleep(400 * time.Millisecond)
		checkOnce(t, gone.get(), want)
	})

	t.Run("eight goroutines racing on batches", func(t *testing.T) {
		clear(want)
		// C never runs Run: its heartbeat key (set by its writes) expires
		// NodeTTL after registration ends.
		b := NewRedisPresence(srv.Client(t), fastOpts(prefix, "C"))
		register(t, b, "C")
		reaper := NewRedisPresence(srv.Client(t), fastOpts(prefix, "R"))
		reaper.reapBatch = 3
		ctx := tctx(t, 20*time.Second)
		waitFor(t, 5*time.Second, "C's heartbeat to expire", func() bool {
			n, _ := reaper.c.Exists(ctx, prefix+":sb:node:"+b.Instance()+":alive").Result()
			return n == 0
		})
		var gone goneLog
		var wg sync.WaitGroup
		var calls atomic.Int64
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					more, g, err := reaper.reapBatchOf(ctx, b.Instance())
					calls.Add(1)
					if err != nil {
						t.Error(err)
						return
					}
					for _, x := range g {
						gone.add(x[0], x[1], x[2])
					}
					if !more {
						return
					}
				}
			}()
		}
		wg.Wait()
		checkOnce(t, gone.get(), want)
		t.Logf("%d reap calls", calls.Load())
		for u := range users {
			if n, _ := reaper.c.Exists(ctx, prefix+":sb:user:"+fmt.Sprint("u", u)+":conns").Result(); n != 0 {
				t.Fatalf("u%d still has counted connections after reaping", u)
			}
		}
	})
}

func checkOnce(t *testing.T, got []string, want map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for g, n := range seen {
		if n != 1 {
			t.Errorf("onGone(%s) called %d times", g, n)
		}
		if !want[g] {
			t.Errorf("unexpected onGone(%s)", g)
		}
	}
	for w := range want {
		if seen[w] == 0 {
			t.Errorf("onGone(%s) never called", w)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// ---- faults ----

// A node cut off from Redis longer than NodeTTL is reaped by the others; when
// it is back it re-registers what it still has, and completes the leave it
// could not send.
func TestRedisPresencePartitionedNodeHeals(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	proxy := startProxy(t, srv.Addr)
	a := NewRedisPresence(srv.Client(t), fastOpts(prefix, "A"))
	b := NewRedisPresence(testClient(t, proxy.Addr()), fastOpts(prefix, "B"))
	var goneA, goneB goneLog
	run(t, a, goneA.add)
	run(t, b, goneB.add)
	ctx := tctx(t, 20*time.Second)
	b.Join(ctx, "r", "u1", "U1", "b1")
	b.Join(ctx, "r", "u2", "U2", "b2")
	b.AddConnection(ctx, "u1", "b1", 1)
	waitFor(t, 5*time.Second, "B healthy", b.Healthy)

	proxy.Cut()
	lctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	start := time.Now()
	_, err := b.Leave(lctx, "r", "u2", "b2")
	cancel()
	if err == nil || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("Leave while cut off: err=%v after %v", err, time.Since(start))
	}
	waitFor(t, 5*time.Second, "A to reap B", func() bool { return goneA.len() >= 2 })
	if got := goneA.get(); !reflect.DeepEqual(got, []string{"r|u1|U1", "r|u2|U2"}) {
		t.Fatalf("A reported %q", got)
	}
	if b.Healthy() {
		t.Fatal("B healthy while cut off")
	}

	proxy.Resume()
	waitFor(t, 5*time.Second, "B to re-register", func() bool {
		m, err := a.Members(ctx, "r")
		return err == nil && reflect.DeepEqual(m, []Member{{"u1", "U1", 1}})
	})
	if ok, _ := a.AddConnection(ctx, "u1", "a1", 1); ok {
		t.Fatal("B's connection count not restored")
	}
	time.Sleep(300 * time.Millisecond)
	if goneB.len() != 0 || goneA.len() != 2 {
		t.Fatalf("extra onGone: A %q B %q", goneA.get(), goneB.get())
	}
	if m := members(t, a, "r"); !reflect.DeepEqual(m, []Member{{"u1", "U1", 1}}) {
		t.Fatalf("members = %+v", m)
	}
}

// A leave that failed is completed when Redis is reachable again, and the
// user-left it owes is reported through onGone.
func TestRedisPresenceRetriesFailedLeave(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	proxy := startProxy(t, srv.Addr)
	p := NewRedisPresence(testClient(t, proxy.Addr()), fastOpts(prefix, "A"))
	var gone goneLog
	run(t, p, gone.add)
	ctx := tctx(t, 20*time.Second)
	p.Join(ctx, "r", "u", "U", "c1")
	p.Join(ctx, "r", "v", "V", "c2")
	p.Join(ctx, "r", "v", "V", "c3")
	proxy.Cut()
	for _, c := range []string{"c1", "c2"} {
		lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		if _, err := p.Leave(lctx, "r", map[string]string{"c1": "u", "c2": "v"}[c], c); err == nil {
			t.Fatal("Leave succeeded while cut off")
		}
		cancel()
	}
	proxy.Resume()
	waitFor(t, 5*time.Second, "the leave to be retried", func() bool { return gone.len() >= 1 })
	time.Sleep(300 * time.Millisecond)
	if got := gone.get(); !reflect.DeepEqual(got, []string{"r|u|U"}) {
		t.Fatalf("onGone = %q", got)
	}
	if m := members(t, p, "r"); !reflect.DeepEqual(m, []Member{{"v", "V", 1}}) {
		t.Fatalf("members = %+v", m)
	}
}

func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	c := testClient(t, srv.Addr)
	var runErrs, dedupeErrs atomic.Int64
	opts := fastOpts(prefix, "A")
	opts.OnError = func(error) { runErrs.Add(1) }
	p := NewRedisPresence(c, opts)
	d := NewRedisDedupe(c, prefix, func(error) { dedupeErrs.Add(1) })
	var gone goneLog
	run(t, p, gone.add)
	ctx := tctx(t, 30*time.Second)

	p.Join(ctx, "r", "u", "U", "c1")
	p.Join(ctx, "r", "w", "W", "c3")
	p.AddConnection(ctx, "u", "c1", 1)
	waitFor(t, 5*time.Second, "healthy", p.Healthy)

	srv.Stop()

	// Presence: errors within the caller's deadline.
	for name, op := range map[string]func(context.Context) error{
		"Join":             func(ctx context.Context) error { _, err := p.Join(ctx, "r", "v", "V", "c2"); return err },
		"Leave":            func(ctx context.Context) error { _, err := p.Leave(ctx, "r", "w", "c3"); return err },
		"Members":          func(ctx context.Context) error { _, err := p.Members(ctx, "r"); return err },
		"AddConnection":    func(ctx context.Context) error { _, err := p.AddConnection(ctx, "v", "c2", 1); return err },
		"RemoveConnection": func(ctx context.Context) error { return p.RemoveConnection(ctx, "x", "y") },
	} {
		octx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		start := time.Now()
		err := op(octx)
		cancel()
		if err == nil {
			t.Fatalf("%s succeeded with Redis down", name)
		}
		if el := time.Since(start); el > 1500*time.Millisecond {
			t.Fatalf("%s took %v with a 500ms deadline", name, el)
		}
	}
	waitFor(t, 2*time.Second, "unhealthy", func() bool { return !p.Healthy() })

	// Dedupe: answered locally, no error.
	v1, v2 := Accepted{ID: "1", TS: 1}, Accepted{ID: "2", TS: 2}
	if got, dup, err := d.Claim(ctx, "k", v1, time.Minute); err != nil || dup || got != v1 {
		t.Fatalf("claim with Redis down = %v %v %v", got, dup, err)
	}
	if got, dup, err := d.Claim(ctx, "k", v2, time.Minute); err != nil || !dup || got != v1 {
		t.Fatalf("repeat with Redis down = %v %v %v, want the first", got, dup, err)
	}
	if dedupeErrs.Load() == 0 {
		t.Fatal("dedupe errors not reported")
	}

	// Run does not spin.
	before := runErrs.Load()
	time.Sleep(time.Second)
	n := runErrs.Load() - before
	if n < 1 || n >= 50 {
		t.Fatalf("Run reported %d errors in 1s with Redis down, want 1..49", n)
	}
	t.Logf("Run errors in 1s with Redis down: %d", n)

	srv.Restart(t, 0) // empty: no persistence
	waitFor(t, 5*time.Second, "healthy again", p.Healthy)

	// The node re-registers its state (the failed Join included, the failed
	// Leave not) and counts its connections again.
	waitFor(t, 5*time.Second, "presence restored", func() bool {
		m, err := p.Members(ctx, "r")
		return err == nil && reflect.DeepEqual(m, []Member{{"u", "U", 1}, {"v", "V", 1}})
	})
	if ok, err := p.AddConnection(ctx, "u", "c9", 1); err != nil || ok {
		t.Fatalf("connection count not restored: %v %v", ok, err)
	}
	if first, err := p.Join(ctx, "r2", "u", "U", "c1"); err != nil || !first {
		t.Fatalf("join after restart = %v %v", first, err)
	}
	if gone.len() != 0 {
		t.Fatalf("onGone %q", gone.get())
	}

	// Dedupe uses Redis again, and remembers what was claimed during the
	// outage.
	errsBefore := dedupeErrs.Load()
	if got, dup, err := d.Claim(ctx, "k", Accepted{ID: "3"}, time.Minute); err != nil || !dup || got != v1 {
		t.Fatalf("repeat after restart = %v %v %v, want %v", got, dup, err, v1)
	}
	if got, dup, _ := d.Claim(ctx, "k2", v2, time.Minute); dup || got != v2 {
		t.Fatalf("new claim after restart = %v %v", got, dup)
	}
	for _, k := range []string{"k", "k2"} {
		if n, _ := c.Exists(ctx, prefix+":sb:dedupe:"+k).Result(); n != 1 {
			t.Fatalf("dedupe key %s not in Redis after restart", k)
		}
	}
	if dedupeErrs.Load() != errsBefore {
		t.Fatal("dedupe errors after restart")
	}
}

// ---- dedupe ----

func TestDedupeBehaviour(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	impls := []struct {
		name string
		new  func(t *testing.T) Dedupe
	}{
		{"memory", func(*testing.T) Dedupe { return NewMemoryDedupe() }},
		{"redis", func(t *testing.T) Dedupe {
			return NewRedisDedupe(c, testPrefix(t), func(err error) { t.Errorf("dedupe error: %v", err) })
		}},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			d := impl.new(t)
			ctx := tctx(t, 10*time.Second)
			first := Accepted{ID: "id-1", TS: 1700000000000}
			if got, dup, err := d.Claim(ctx, "u\x00c", first, 300*time.Millisecond); err != nil || dup || got != first {
				t.Fatalf("first claim = %v %v %v", got, dup, err)
			}
			if got, dup, err := d.Claim(ctx, "u\x00c", Accepted{ID: "id-2"}, 300*time.Millisecond); err != nil || !dup || got != first {
				t.Fatalf("repeat = %v %v %v, want the first", got, dup, err)
			}
			if got, dup, _ := d.Claim(ctx, "u\x00other", Accepted{ID: "id-3"}, 300*time.Millisecond); dup || got.ID != "id-3" {
				t.Fatalf("other key = %v %v", got, dup)
			}
			time.Sleep(450 * time.Millisecond)
			if got, dup, err := d.Claim(ctx, "u\x00c", Accepted{ID: "id-4"}, time.Minute); err != nil || dup || got.ID != "id-4" {
				t.Fatalf("after the window = %v %v %v", got, dup, err)
			}
		})
	}
}

func TestRedisDedupeShared(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	fail := func(err error) { t.Errorf("dedupe error: %v", err) }
	nodes := []*RedisDedupe{NewRedisDedupe(srv.Client(t), prefix, fail), NewRedisDedupe(srv.Client(t), prefix, fail)}
	ctx := tctx(t, 10*time.Second)
	v := Accepted{ID: "a", TS: 5}
	if _, dup, _ := nodes[0].Claim(ctx, "k", v, time.Minute); dup {
		t.Fatal("first claim duplicate")
	}
	if got, dup, _ := nodes[1].Claim(ctx, "k", Accepted{ID: "b"}, time.Minute); !dup || got != v {
		t.Fatalf("claim on the other node = %v %v", got, dup)
	}
	if ttl, _ := srv.Client(t).PTTL(ctx, prefix+":sb:dedupe:k").Result(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("key ttl = %v", ttl)
	}

	// Racing claims across nodes: exactly one wins, everyone gets its entry.
	for round := range 5 {
		key := fmt.Sprint("race", round)
		var wg sync.WaitGroup
		var wins atomic.Int64
		results := make([]Accepted, 32)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, dup, err := nodes[i%2].Claim(ctx, key, Accepted{ID: fmt.Sprint(i), TS: int64(i)}, time.Minute)
				if err != nil {
					t.Error(err)
				}
				if !dup {
					wins.Add(1)
				}
				results[i] = got
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d claims won, want 1", wins.Load())
		}
		for _, r := range results {
			if r != results[0] {
				t.Fatalf("claims disagree: %v vs %v", r, results[0])
			}
		}
	}
}
