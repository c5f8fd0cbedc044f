package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/internal/sio"
)

// ---- a fake engine: sio.Local over an in-memory set of sockets ----

type fakeSocket struct {
	id    string
	rooms map[string]uint64 // room -> join order
	data  any
}

// fakeLocal is one node's sockets of one namespace. Its disconnect hook
// (when set) runs before Disconnect returns, as the contract says, and may
// broadcast through the node's link like namespaces/rooms.go does.
type fakeLocal struct {
	mu     sync.Mutex
	socks  map[string]*fakeSocket
	seq    uint64
	got    map[string][]string // socket id -> events received, "event:firstArg"
	gone   []string            // disconnected, in order
	link   sio.Link
	onGone func(l *fakeLocal, s *fakeSocket)
}

func newFakeLocal() *fakeLocal {
	return &fakeLocal{socks: map[string]*fakeSocket{}, got: map[string][]string{}}
}

func (f *fakeLocal) add(id string, rooms ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakeSocket{id: id, rooms: map[string]uint64{}, data: map[string]any{"userId": "u-" + id}}
	f.seq++
	s.rooms[id] = f.seq
	for _, r := range rooms {
		f.seq++
		s.rooms[r] = f.seq
	}
	f.socks[id] = s
}

// selectLocked lists the sockets opts selects in Node's order.
func (f *fakeLocal) selectLocked(opts sio.BroadcastOpts) []*fakeSocket {
	type ranked struct {
		s    *fakeSocket
		room int
		seq  uint64
	}
	var out []ranked
	for _, s := range f.socks {
		excluded := false
		for _, e := range opts.Except {
			if _, ok := s.rooms[e]; ok {
				excluded = true
			}
		}
		if excluded {
			continue
		}
		if len(opts.Rooms) == 0 {
			out = append(out, ranked{s, 0, s.rooms[s.id]})
			continue
		}
		for i, r := range opts.Rooms {
			if seq, ok := s.rooms[r]; ok {
				out = append(out, ranked{s, i, seq})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].room < out[j].room || (out[i].room == out[j].room && out[i].seq < out[j].seq)
	})
	socks := make([]*fakeSocket, len(out))
	for i, r := range out {
		socks[i] = r.s
	}
	return socks
}

func (f *fakeLocal) Deliver(p sio.Packet, opts sio.BroadcastOpts) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := fmt.Sprint(p.Data[0])
	if len(p.Data) > 1 {
		ev += ":" + fmt.Sprint(p.Data[1])
	}
	for _, s := range f.selectLocked(opts) {
		f.got[s.id] = append(f.got[s.id], ev)
	}
}

func (f *fakeLocal) DeliverWithAck(p sio.Packet, opts sio.BroadcastOpts, onCount func(int), onAck func(any)) {
	f.Deliver(p, opts)
	onCount(0)
}

func (f *fakeLocal) HasRoom(room string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.socks {
		if _, ok := s.rooms[room]; ok {
			return true
		}
	}
	return false
}

func (f *fakeLocal) HasSocket(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.socks[id] != nil
}

func (f *fakeLocal) Join(opts sio.BroadcastOpts, rooms []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.selectLocked(opts) {
		for _, r := range rooms {
			if _, ok := s.rooms[r]; !ok {
				f.seq++
				s.rooms[r] = f.seq
			}
		}
	}
}

func (f *fakeLocal) Leave(opts sio.BroadcastOpts, rooms []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.selectLocked(opts) {
		for _, r := range rooms {
			delete(s.rooms, r)
		}
	}
}

func (f *fakeLocal) Disconnect(opts sio.BroadcastOpts, _ bool) {
	f.mu.Lock()
	socks := f.selectLocked(opts)
	for _, s := range socks {
		delete(f.socks, s.id)
		f.gone = append(f.gone, s.id)
	}
	hook := f.onGone
	f.mu.Unlock()
	for _, s := range socks {
		if hook != nil {
			hook(f, s)
		}
	}
}

func (f *fakeLocal) Sockets(rooms []string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, s := range f.selectLocked(sio.BroadcastOpts{Rooms: rooms}) {
		out = append(out, s.id)
	}
	return out
}

func (f *fakeLocal) Rooms() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	set := map[string]bool{}
	for _, s := range f.socks {
		for r := range s.rooms {
			set[r] = true
		}
	}
	var out []string
	for r := range set {
		out = append(out, r)
	}
	return out
}

func (f *fakeLocal) Fetch(opts sio.BroadcastOpts) []sio.SocketInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sio.SocketInfo
	for _, s := range f.selectLocked(opts) {
		var rooms []string
		for r := range s.rooms {
			rooms = append(rooms, r)
		}
		sort.Strings(rooms)
		out = append(out, sio.SocketInfo{ID: s.id, Rooms: rooms, Data: s.data, Handshake: map[string]any{"address": "test"}})
	}
	return out
}

func (f *fakeLocal) events(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got[id]...)
}

func (f *fakeLocal) roomsOf(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.socks[id]
	if s == nil {
		return nil
	}
	var out []string
	for r := range s.rooms {
		if r != id {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

func (f *fakeLocal) gotGone() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.gone...)
}

// userLeftHook broadcasts "user-left" to the socket's rooms as the rooms
// namespace does, through the cluster (delivering locally when it is not
// published, as the engine does).
func userLeftHook(f *fakeLocal, s *fakeSocket) {
	var rooms []string
	for r := range s.rooms {
		if r != s.id {
			rooms = append(rooms, r)
		}
	}
	p := sio.Packet{Type: 2, Nsp: "/", Data: []any{"user-left", s.id}}
	opts := sio.BroadcastOpts{Rooms: rooms}
	if !f.link.Publish(p, opts) {
		f.Deliver(p, opts)
	}
}

// ---- nodes on both adapters ----

type testNode struct {
	local *fakeLocal
	link  sio.Link
	rq    sio.Requester
}

type clusterKind struct {
	name  string
	start func(t *testing.T, addr, prefix string) func(nsp string, l sio.Local) sio.Link
}

func clusterKinds() []clusterKind {
	return []clusterKind{
		{"redis", func(t *testing.T, addr, prefix string) func(string, sio.Local) sio.Link {
			c := NewRedisCluster(testClient(t, addr), prefix, func(err error) { t.Logf("redis: %v", err) })
			runCluster(t, c.Run)
			return func(nsp string, l sio.Local) sio.Link {
				link := c.Attach(nsp, l)
				waitFor(t, 5*time.Second, "the cluster is subscribed", c.Healthy)
				return link
			}
		}},
		{"redis-streams", func(t *testing.T, addr, prefix string) func(string, sio.Local) sio.Link {
			c := NewRedisStreamsCluster(testClient(t, addr), testClient(t, addr), StreamsOptions{
				Prefix: prefix, HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second,
				OnError: func(err error) { t.Logf("streams: %v", err) },
			})
			runCluster(t, c.Run)
			return func(nsp string, l sio.Local) sio.Link {
				link := c.AttachLog(nsp, l)
				waitFor(t, 5*time.Second, "the cluster is reading", c.Healthy)
				return link
			}
		}},
	}
}

func runCluster(t *testing.T, run func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5s of cancel")
		}
	})
}

// startNodes starts n nodes of kind on namespace "/" and waits until each
// counts all of them.
func startNodes(t *testing.T, k clusterKind, addr string, n int) []*testNode {
	t.Helper()
	prefix := testPrefix(t)
	nodes := make([]*testNode, n)
	for i := range nodes {
		attach := k.start(t, addr, prefix)
		f := newFakeLocal()
		link := attach("/", f)
		f.link = link
		rq, ok := link.(sio.Requester)
		if !ok {
			t.Fatalf("%s link is not a sio.Requester", k.name)
		}
		nodes[i] = &testNode{local: f, link: link, rq: rq}
	}
	for i, nd := range nodes {
		waitFor(t, 5*time.Second, fmt.Sprintf("node %d counts %d servers", i, n), func() bool {
			c, err := nd.rq.ServerCount(tctx(t, time.Second))
			return err == nil && c == n
		})
	}
	return nodes
}

func ids(infos []sio.SocketInfo) []string {
	var out []string
	for _, s := range infos {
		out = append(out, s.ID)
	}
	sort.Strings(out)
	return out
}

func TestRequests(t *testing.T) {
	r := redistest.Start(t)
	for _, k := range clusterKinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Run("fetchSockets", func(t *testing.T) {
				nodes := startNodes(t, k, r.Addr, 3)
				a, b, c := nodes[0], nodes[1], nodes[2]
				a.local.add("a1", "R")
				b.local.add("b1", "R")
				b.local.add("b2", "R", "X")
				b.local.add("b3")
				c.local.add("c1", "R")
				got, err := a.rq.FetchSockets(tctx(t, 5*time.Second), sio.BroadcastOpts{Rooms: []string{"R"}, Except: []string{"X"}})
				if err != nil {
					t.Fatal(err)
				}
				if want := []string{"b1", "c1"}; !reflect.DeepEqual(ids(got), want) {
					t.Fatalf("fetchSockets(R except X) = %v, want %v (remote only)", ids(got), want)
				}
				for _, s := range got {
					if s.ID == "b1" {
						if !reflect.DeepEqual(s.Rooms, []string{"R", "b1"}) || !reflect.DeepEqual(s.Data, map[string]any{"userId": "u-b1"}) ||
							s.Handshake["address"] != "test" {
							t.Fatalf("b1 = %+v", s)
						}
					}
				}
				all, err := a.rq.FetchSockets(context.Background(), sio.BroadcastOpts{})
				if err != nil || !reflect.DeepEqual(ids(all), []string{"b1", "b2", "b3", "c1"}) {
					t.Fatalf("fetchSockets() = %v, %v", ids(all), err)
				}
			})

			t.Run("serverSideEmit", func(t *testing.T) {
				nodes := startNodes(t, k, r.Addr, 3)
				var mu sync.Mutex
				got := map[int][]string{}
				for i, nd := range nodes {
					nd.rq.OnServerSideEmit(func(_ context.Context, event string, args []any) any {
						mu.Lock()
						got[i] = append(got[i], fmt.Sprintf("%s%v", event, args))
						mu.Unlock()
						return map[string]any{"node": float64(i)}
					})
				}
				if err := nodes[0].rq.ServerSideEmit(tctx(t, time.Second), "hello", []any{"x", float64(1)}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 3*time.Second, "both others receive", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(got[1]) == 1 && len(got[2]) == 1
				})
				time.Sleep(200 * time.Millisecond)
				mu.Lock()
				if len(got[0]) != 0 || got[1][0] != "hello[x 1]" || got[2][0] != "hello[x 1]" {
					t.Fatalf("received: %v (the sender must not receive its own)", got)
				}
				mu.Unlock()

				acks, err := nodes[0].rq.ServerSideEmitWithAck(tctx(t, 3*time.Second), "ping", []any{"?"})
				if err != nil {
					t.Fatal(err)
				}
				var nums []float64
				for _, a := range acks {
					m, _ := a.(map[string]any)
					n, _ := m["node"].(float64)
					if v, ok := m["node"].(int8); ok { // msgpack keeps small ints small
						n = float64(v)
					}
					nums = append(nums, n)
				}
				slices.Sort(nums)
				if !reflect.DeepEqual(nums, []float64{1, 2}) {
					t.Fatalf("serverSideEmitWithAck answers = %#v, want one per other node", acks)
				}

				// A server without a handler does not answer (as Node): the
				// call times out with the answers that arrived.
				nodes[2].rq.OnServerSideEmit(nil)
				start := time.Now()
				acks, err = nodes[0].rq.ServerSideEmitWithAck(tctx(t, 700*time.Millisecond), "ping", nil)
				if err == nil || !strings.Contains(err.Error(), "timeout") || len(acks) != 1 {
					t.Fatalf("with a silent server: %v, %v", acks, err)
				}
				if d := time.Since(start); d < 600*time.Millisecond || d > 2*time.Second {
					t.Fatalf("timed out after %v", d)
				}
			})

			t.Run("socketsJoin and socketsLeave", func(t *testing.T) {
				nodes := startNodes(t, k, r.Addr, 3)
				a, b, c := nodes[0], nodes[1], nodes[2]
				a.local.add("a1", "R")
				a.local.add("a2")
				b.local.add("b1", "R")
				c.local.add("c1", "R", "Y")
				if err := a.rq.SocketsJoin(tctx(t, time.Second), sio.BroadcastOpts{Rooms: []string{"R"}, Except: []string{"Y"}}, []string{"X", "Z"}); err != nil {
					t.Fatal(err)
				}
				// This node's part comes back through the cluster too.
				waitFor(t, 3*time.Second, "a1 and b1 join X and Z", func() bool {
					return reflect.DeepEqual(a.local.roomsOf("a1"), []string{"R", "X", "Z"}) &&
						reflect.DeepEqual(b.local.roomsOf("b1"), []string{"R", "X", "Z"})
				})
				if got := c.local.roomsOf("c1"); !reflect.DeepEqual(got, []string{"R", "Y"}) {
					t.Fatalf("c1 (excepted) rooms %v", got)
				}
				if got := a.local.roomsOf("a2"); got != nil {
					t.Fatalf("a2 (not in R) rooms %v", got)
				}
				if err := c.rq.SocketsLeave(tctx(t, time.Second), sio.BroadcastOpts{Rooms: []string{"X"}}, []string{"Z"}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 3*time.Second, "a1 and b1 leave Z", func() bool {
					return reflect.DeepEqual(a.local.roomsOf("a1"), []string{"R", "X"}) &&
						reflect.DeepEqual(b.local.roomsOf("b1"), []string{"R", "X"})
				})
			})

			t.Run("disconnectSockets", func(t *testing.T) {
				nodes := startNodes(t, k, r.Addr, 3)
				a, b, c := nodes[0], nodes[1], nodes[2]
				a.local.add("a1", "R")
				a.local.add("a2")
				b.local.add("b1", "R")
				b.local.add("b2")
				c.local.add("c1", "R")
				if err := a.rq.DisconnectSockets(tctx(t, time.Second), sio.BroadcastOpts{Rooms: []string{"R"}}, false); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 3*time.Second, "R's members disconnected on every node", func() bool {
					return len(a.local.gotGone()) == 1 && len(b.local.gotGone()) == 1 && len(c.local.gotGone()) == 1
				})
				if !a.local.HasSocket("a2") || !b.local.HasSocket("b2") || a.local.HasSocket("a1") {
					t.Fatal("wrong sockets disconnected")
				}
			})

			t.Run("serverCount", func(t *testing.T) {
				nodes := startNodes(t, k, r.Addr, 2)
				if n, err := nodes[1].rq.ServerCount(tctx(t, time.Second)); err != nil || n != 2 {
					t.Fatalf("serverCount = %d, %v", n, err)
				}
			})

			// Node disconnects a node's sockets one at a time and delivers
			// what each one's disconnect hook broadcasts at once: the sockets
			// disconnected later in the same batch receive it. Broadcasts sent
			// by other nodes after the request reach none of them.
			t.Run("disconnect batch delivers each user-left to the later ones", func(t *testing.T) {
				nodes := startNodes(t, k, r.Addr, 2)
				a, b := nodes[0], nodes[1]
				a.local.onGone = userLeftHook
				b.local.onGone = userLeftHook
				a.local.add("watcher", "R2")
				for _, id := range []string{"s1", "s2", "s3", "s4"} {
					b.local.add(id, "R", "R2")
				}
				b.local.add("other", "R2")
				ctx := tctx(t, 3*time.Second)
				if err := a.rq.DisconnectSockets(ctx, sio.BroadcastOpts{Rooms: []string{"R"}}, false); err != nil {
					t.Fatal(err)
				}
				if !a.link.Publish(sio.Packet{Type: 2, Nsp: "/", Data: []any{"after", "request"}}, sio.BroadcastOpts{Rooms: []string{"R"}}) {
					t.Fatal("not published")
				}
				waitFor(t, 5*time.Second, "all four disconnected and other got the last user-left", func() bool {
					return len(b.local.gotGone()) == 4 && len(userLefts(b.local.events("other"))) == 4
				})
				if got := b.local.gotGone(); !reflect.DeepEqual(got, []string{"s1", "s2", "s3", "s4"}) {
					t.Fatalf("disconnected in order %v, want the join order", got)
				}
				for i, id := range []string{"s1", "s2", "s3", "s4"} {
					want := []string{}
					for _, prev := range []string{"s1", "s2", "s3"}[:i] {
						want = append(want, "user-left:"+prev)
					}
					if got := userLefts(b.local.events(id)); !reflect.DeepEqual(got, want) {
						t.Errorf("%s got %v, want %v", id, got, want)
					}
					for _, e := range b.local.events(id) {
						if strings.HasPrefix(e, "after") {
							t.Errorf("%s got %q, sent after the request", id, e)
						}
					}
				}
				waitFor(t, 3*time.Second, "the watcher on the requester's node gets every user-left", func() bool {
					return len(userLefts(a.local.events("watcher"))) == 4
				})
			})
		})
	}
}

func userLefts(events []string) []string {
	out := []string{}
	for _, e := range events {
		if strings.HasPrefix(e, "user-left:") {
			out = append(out, e)
		}
	}
	return out
}

// The classic adapter's requests are byte for byte what @socket.io/redis-
// adapter 8.3 publishes (JSON.stringify of its objects).
func TestRedisRequestsWireFormat(t *testing.T) {
	r := redistest.Start(t)
	prefix := testPrefix(t)
	c := NewRedisCluster(testClient(t, r.Addr), prefix, nil)
	runCluster(t, c.Run)
	f := newFakeLocal()
	link := c.Attach("/chat", f).(*redisLink)
	f.link = link
	waitFor(t, 5*time.Second, "the cluster is subscribed", c.Healthy)

	sub := testClient(t, r.Addr).Subscribe(context.Background(), prefix+"-request#/chat#")
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(tctx(t, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		m, err := sub.ReceiveMessage(tctx(t, 2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return m.Payload
	}
	uid := c.UID()
	ctx := tctx(t, 5*time.Second)
	opts := sio.BroadcastOpts{Rooms: []string{"r1"}, Except: []string{"<x&y>"}}
	if err := link.SocketsJoin(ctx, opts, []string{"j"}); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), `{"uid":"`+uid+`","type":2,"opts":{"rooms":["r1"],"except":["<x&y>"]},"rooms":["j"]}`; got != want {
		t.Fatalf("socketsJoin:\n got %s\nwant %s", got, want)
	}
	if err := link.SocketsLeave(ctx, sio.BroadcastOpts{}, []string{"j"}); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), `{"uid":"`+uid+`","type":3,"opts":{"rooms":[],"except":[]},"rooms":["j"]}`; got != want {
		t.Fatalf("socketsLeave:\n got %s\nwant %s", got, want)
	}
	if err := link.DisconnectSockets(ctx, opts, true); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), `{"uid":"`+uid+`","type":4,"opts":{"rooms":["r1"],"except":["<x&y>"]},"close":true}`; got != want {
		t.Fatalf("disconnectSockets:\n got %s\nwant %s", got, want)
	}
	if err := link.ServerSideEmit(ctx, "ev", []any{"a", map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	if got, want := next(), `{"uid":"`+uid+`","type":6,"data":["ev","a",{"n":1}]}`; got != want {
		t.Fatalf("serverSideEmit:\n got %s\nwant %s", got, want)
	}

	// fetchSockets and serverSideEmitWithAck wait for NUMSUB - 1 answers: a
	// second subscriber of the request channel (our probe) makes it one.
	// Answer as a Node server does.
	type res struct {
		socks []sio.SocketInfo
		acks  []any
		err   error
	}
	done := make(chan res, 1)
	go func() {
		s, err := link.FetchSockets(ctx, opts)
		done <- res{socks: s, err: err}
	}()
	raw := next()
	var req struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal([]byte(raw), &req)
	if want := `{"uid":"` + uid + `","requestId":"` + req.RequestID + `","type":5,"opts":{"rooms":["r1"],"except":["<x&y>"]}}`; raw != want {
		t.Fatalf("fetchSockets:\n got %s\nwant %s", raw, want)
	}
	pub := testClient(t, r.Addr)
	answer := `{"requestId":"` + req.RequestID + `","sockets":[{"id":"n1","handshake":{"address":"::1"},"rooms":["n1","r1"],"data":{"k":"v"}}]}`
	if err := pub.Publish(ctx, prefix+"-response#/chat#", answer).Err(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil || len(got.socks) != 1 || got.socks[0].ID != "n1" || !reflect.DeepEqual(got.socks[0].Rooms, []string{"n1", "r1"}) {
		t.Fatalf("fetchSockets = %+v, %v", got.socks, got.err)
	}

	go func() {
		a, err := link.ServerSideEmitWithAck(ctx, "q", []any{true})
		done <- res{acks: a, err: err}
	}()
	raw = next()
	_ = json.Unmarshal([]byte(raw), &req)
	if want := `{"uid":"` + uid + `","requestId":"` + req.RequestID + `","type":6,"data":["q",true]}`; raw != want {
		t.Fatalf("serverSideEmitWithAck:\n got %s\nwant %s", raw, want)
	}
	if err := pub.Publish(ctx, prefix+"-response#/chat#", `{"type":6,"requestId":"`+req.RequestID+`","data":"pong"}`).Err(); err != nil {
		t.Fatal(err)
	}
	got = <-done
	if got.err != nil || !reflect.DeepEqual(got.acks, []any{"pong"}) {
		t.Fatalf("serverSideEmitWithAck = %v, %v", got.acks, got.err)
	}

	// Answering: a serverSideEmit with ack from a Node server gets our
	// handler's result, as Node writes it, on the common response channel.
	link.OnServerSideEmit(func(_ context.Context, event string, args []any) any {
		return map[string]any{"event": event, "args": args}
	})
	rsub := testClient(t, r.Addr).Subscribe(context.Background(), prefix+"-response#/chat#")
	t.Cleanup(func() { _ = rsub.Close() })
	if _, err := rsub.Receive(tctx(t, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, prefix+"-request#/chat#", `{"uid":"nodeuid","requestId":"rq1","type":6,"data":["hi",1]}`).Err(); err != nil {
		t.Fatal(err)
	}
	m, err := rsub.ReceiveMessage(tctx(t, 3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":6,"requestId":"rq1","data":{"args":[1],"event":"hi"}}`; m.Payload != want {
		t.Fatalf("answer:\n got %s\nwant %s", m.Payload, want)
	}
}

// While Redis is down, requests fail at once; the caller acts locally.
func TestRequestsRedisDown(t *testing.T) {
	for _, k := range clusterKinds() {
		t.Run(k.name, func(t *testing.T) {
			r := redistest.Start(t)
			nodes := startNodes(t, k, r.Addr, 1)
			r.Stop()
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := nodes[0].rq.SocketsJoin(tctx(t, 2*time.Second), sio.BroadcastOpts{}, []string{"x"})
				if err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("socketsJoin kept succeeding with Redis down")
				}
				time.Sleep(100 * time.Millisecond)
			}
			start := time.Now()
			if _, err := nodes[0].rq.FetchSockets(context.Background(), sio.BroadcastOpts{}); err == nil && k.name == "redis" {
				t.Fatal("fetchSockets succeeded with Redis down")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("fetchSockets took %v with Redis down", d)
			}
		})
	}
}
