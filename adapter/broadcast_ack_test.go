package adapter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/internal/sio"
)

var (
	_ sio.AckBroadcaster = (*redisLink)(nil)
	_ sio.AckBroadcaster = (*streamLink)(nil)
)

// ackNode is a real Socket.IO server on a cluster, with a "join" event.
type ackNode struct {
	url string
	ns  *sio.Namespace
}

func startAckNodes(t *testing.T, kind, addr string, n int) []*ackNode {
	t.Helper()
	prefix := testPrefix(t)
	nodes := make([]*ackNode, n)
	for i := range nodes {
		var cluster sio.Cluster
		var run func(context.Context)
		switch kind {
		case "redis":
			c := NewRedisCluster(testClient(t, addr), prefix, func(err error) { t.Logf("redis: %v", err) })
			cluster, run = c, c.Run
		default:
			c := NewRedisStreamsCluster(testClient(t, addr), testClient(t, addr), StreamsOptions{
				Prefix: prefix, HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second,
				OnError: func(err error) { t.Logf("streams: %v", err) },
			})
			cluster, run = c, c.Run
		}
		s := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second, Cluster: cluster})
		ns := s.Of("/")
		runCluster(t, run) // once the namespace is attached
		sio.Handle(ns, "join", func(_ context.Context, c *sio.Conn, room string) (any, error) {
			c.Join(room)
			return nil, nil
		})
		mux := http.NewServeMux()
		mux.Handle(s.Path(), s.Handler())
		ts := httptest.NewServer(mux)
		t.Cleanup(func() {
			s.Close()
			ts.Close()
		})
		nodes[i] = &ackNode{url: ts.URL, ns: ns}
	}
	for i, nd := range nodes {
		waitFor(t, 5*time.Second, "every node counts every node", func() bool {
			c, err := nd.ns.ServerCount(tctx(t, time.Second))
			if err != nil {
				t.Logf("node %d: %v", i, err)
			}
			return err == nil && c == n
		})
	}
	return nodes
}

// ackClient connects to nd, joins rooms and, unless silent, answers the
// server's events expecting an ack with {"sid": its id, "got": first arg}.
func ackClient(t *testing.T, nd *ackNode, silent bool, rooms ...string) *rawclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, nd.url, "/socket.io/", "/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !silent {
		c.AckEvents(func(e rawclient.Event) any {
			var got any
			if len(e.Args) > 0 {
				_ = json.Unmarshal(e.Args[0], &got)
			}
			return map[string]any{"sid": c.SID, "got": got}
		})
	}
	for _, r := range rooms {
		if _, err := c.Call(ctx, "join", r); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func ackSIDs(t *testing.T, responses []any) []string {
	t.Helper()
	var out []string
	for _, r := range responses {
		m, ok := r.(map[string]any)
		if !ok {
			t.Fatalf("response %#v is not an object", r)
		}
		if got, _ := m["got"].(map[string]any); got["q"] != "?" {
			t.Fatalf("response %#v: the client did not get the payload", r)
		}
		sid, _ := m["sid"].(string)
		out = append(out, sid)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestBroadcastWithAckAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	for _, kind := range []string{"redis", "redis-streams"} {
		t.Run(kind, func(t *testing.T) {
			nodes := startAckNodes(t, kind, r.Addr, 3)
			a, b, c := nodes[0], nodes[1], nodes[2]
			a1 := ackClient(t, a, false, "R")
			a2 := ackClient(t, a, false)
			b1 := ackClient(t, b, false, "R")
			b2 := ackClient(t, b, false, "R", "X")
			c1 := ackClient(t, c, false)
			payload := map[string]any{"q": "?"}

			// Every member of R but X, on every node (two nodes with recipients,
			// one without: its count of 0 is awaited too).
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			begin := time.Now()
			res, err := a.ns.To("R").Except("X").EmitWithAck(ctx, "question", payload)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ackSIDs(t, res), sorted(a1.SID, b1.SID); !slices.Equal(got, want) {
				t.Fatalf("responses from %v, want %v", got, want)
			}
			if d := time.Since(begin); d > time.Second {
				t.Fatalf("took %v: it must return once every recipient answered", d)
			}

			// All sockets, from another node, without a deadline of its own.
			res, err = b.ns.To().EmitWithAck(context.Background(), "question", payload)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ackSIDs(t, res), sorted(a1.SID, a2.SID, b1.SID, b2.SID, c1.SID); !slices.Equal(got, want) {
				t.Fatalf("responses from %v, want %v", got, want)
			}

			// Remote recipients only.
			res, err = c.ns.To("R").EmitWithAck(tctx(t, 3*time.Second), "question", payload)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ackSIDs(t, res), sorted(a1.SID, b1.SID, b2.SID); !slices.Equal(got, want) {
				t.Fatalf("responses from %v, want %v", got, want)
			}

			// Nobody selected anywhere.
			res, err = a.ns.To("nobody").EmitWithAck(tctx(t, 3*time.Second), "question", payload)
			if err != nil || len(res) != 0 {
				t.Fatalf("= %v, %v; want no response, no error", res, err)
			}

			// A member that never answers: the timeout returns the others'.
			ackClient(t, c, true, "R")
			ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel2()
			begin = time.Now()
			res, err = a.ns.To("R").EmitWithAck(ctx2, "question", payload)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a deadline error", err)
			}
			if got, want := ackSIDs(t, res), sorted(a1.SID, b1.SID, b2.SID); !slices.Equal(got, want) {
				t.Fatalf("partial responses from %v, want %v", got, want)
			}
			if d := time.Since(begin); d < 400*time.Millisecond || d > 2*time.Second {
				t.Fatalf("returned after %v, want the 500ms deadline", d)
			}
			t.Logf("timeout: %v", err)
		})
	}
}

// A Node server (here, a bare subscriber) sees this node's broadcast with
// acks as @socket.io/redis-adapter 8.3 writes it, and its answers (client
// count in JSON, acks in msgpack) reach the callbacks until ctx ends.
func TestBroadcastWithAckRedisWireFormat(t *testing.T) {
	r := redistest.Start(t)
	prefix := testPrefix(t)
	c := NewRedisCluster(testClient(t, r.Addr), prefix, func(err error) { t.Logf("redis: %v", err) })
	link := c.Attach("/", newFakeLocal()).(*redisLink)
	runCluster(t, c.Run)
	waitFor(t, 5*time.Second, "the cluster is subscribed", c.Healthy)

	node := testClient(t, r.Addr)
	ps := node.Subscribe(tctx(t, 5*time.Second), prefix+"-request#/#")
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(tctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "two servers", func() bool {
		n, err := link.ServerCount(tctx(t, time.Second))
		return err == nil && n == 2
	})

	var mu sync.Mutex
	var counts []int
	var acks []any
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	p := sio.Packet{Type: 2, Nsp: "/", Data: []any{"question", map[string]any{"q": "?"}, []byte{1, 2}}}
	servers, err := link.BroadcastWithAck(ctx, p, sio.BroadcastOpts{Rooms: []string{"R"}, Except: []string{"X"}},
		func(n int) { mu.Lock(); counts = append(counts, n); mu.Unlock() },
		func(arg any) { mu.Lock(); acks = append(acks, arg); mu.Unlock() })
	if err != nil || servers != 1 {
		t.Fatalf("BroadcastWithAck = %d, %v; want 1 other server", servers, err)
	}

	var payload []byte
	select {
	case m := <-ps.Channel():
		payload = []byte(m.Payload)
	case <-time.After(3 * time.Second):
		t.Fatal("no request published")
	}
	// msgpack, a map of 5 in Node's key order: uid, requestId, type, packet, opts.
	if !bytes.HasPrefix(payload, []byte("\x85\xa3uid")) {
		t.Fatalf("request %q: not a msgpack map starting with uid", payload)
	}
	var req map[string]any
	if err := msgpack.Unmarshal(payload, &req); err != nil {
		t.Fatal(err)
	}
	id, _ := req["requestId"].(string)
	pkt, _ := req["packet"].(map[string]any)
	opts, _ := req["opts"].(map[string]any)
	flags, _ := opts["flags"].(map[string]any)
	if req["uid"] != c.UID() || id == "" || toInt(req["type"]) != reqBroadcast ||
		toInt(pkt["type"]) != 2 || pkt["nsp"] != "/" ||
		!reflect.DeepEqual(pkt["data"], []any{"question", map[string]any{"q": "?"}, []byte{1, 2}}) ||
		!reflect.DeepEqual(opts["rooms"], []any{"R"}) || !reflect.DeepEqual(opts["except"], []any{"X"}) ||
		toInt(flags["timeout"]) <= 0 {
		t.Fatalf("request = %#v", req)
	}

	// Node's answers: the count in JSON, each ack in msgpack.
	respond := func(b []byte) {
		t.Helper()
		if err := node.Publish(tctx(t, time.Second), prefix+"-response#/#", b).Err(); err != nil {
			t.Fatal(err)
		}
	}
	respond([]byte(`{"type":8,"requestId":"` + id + `","clientCount":2}`))
	for _, v := range []any{"a", map[string]any{"b": true}} {
		b, err := msgpack.Marshal(map[string]any{"type": reqBroadcastAck, "requestId": id, "packet": v})
		if err != nil {
			t.Fatal(err)
		}
		respond(b)
	}
	waitFor(t, 3*time.Second, "the count and both acks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(counts) == 1 && len(acks) == 2
	})
	mu.Lock()
	if counts[0] != 2 || acks[0] != "a" || !reflect.DeepEqual(acks[1], map[string]any{"b": true}) {
		t.Fatalf("counts %v, acks %#v", counts, acks)
	}
	mu.Unlock()

	// Once ctx ended, late answers are dropped.
	cancel()
	time.Sleep(50 * time.Millisecond)
	b, _ := msgpack.Marshal(map[string]any{"type": reqBroadcastAck, "requestId": id, "packet": "late"})
	respond(b)
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(acks) != 2 {
		t.Fatalf("acks after ctx ended: %#v", acks)
	}
}
