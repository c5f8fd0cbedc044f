package emitter_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/adapter/emitter"
	"github.com/switchboard/switchboard/internal/redistest"
)

// nodeLine is a line testdata/node-server.mjs prints.
type nodeLine struct {
	Ready  bool              `json:"ready"`
	SIDs   map[string]string `json:"sids"`
	Client string            `json:"client"`
	Event  string            `json:"event"`
	Reason string            `json:"reason"`
	Server string            `json:"server"`
	Args   json.RawMessage   `json:"args"`
}

// nodeServer is testdata/node-server.mjs running: its lines by client
// ("" for the server's own).
type nodeServer struct {
	sids   map[string]string
	mu     sync.Mutex
	lines  map[string]chan nodeLine
	stderr *bytes.Buffer
}

func (n *nodeServer) of(who string) chan nodeLine {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch := n.lines[who]
	if ch == nil {
		ch = make(chan nodeLine, 100)
		n.lines[who] = ch
	}
	return ch
}

func startNodeServer(t *testing.T, redisURL, prefix string) *nodeServer {
	t.Helper()
	node, _ := nodeAndModules(t, "socket.io", "socket.io-client", "@socket.io/redis-adapter", "redis")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, node, "testdata/node-server.mjs")
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL, "PREFIX="+prefix)
	n := &nodeServer{lines: map[string]chan nodeLine{}, stderr: &bytes.Buffer{}}
	cmd.Stderr = n.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	ready := make(chan map[string]string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l nodeLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				continue
			}
			switch {
			case l.Ready:
				ready <- l.SIDs
			case l.Server != "":
				n.of("") <- l
			default:
				n.of(l.Client) <- l
			}
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the script exits when stdin ends
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node-server.mjs stderr:\n%s", n.stderr.Bytes())
		}
	})
	select {
	case n.sids = <-ready:
	case <-done:
		t.Fatalf("node-server.mjs ended before its clients connected:\n%s", n.stderr.Bytes())
	case <-time.After(20 * time.Second):
		t.Fatalf("node-server.mjs not ready within 20 s:\n%s", n.stderr.Bytes())
	}
	return n
}

// expect returns the args of who's next line, which must be event.
func (n *nodeServer) expect(t *testing.T, who, event string) string {
	t.Helper()
	select {
	case l := <-n.of(who):
		if l.Event != event {
			t.Fatalf("%s: got %q %s (%s), want %q first", who, l.Event, l.Args, l.Reason, event)
		}
		return string(l.Args)
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no %q within 5 s", who, event)
		return ""
	}
}

// waitNodeSubscribed waits until a server subscribed to the request
// channels of nsps (the adapter subscribes to its broadcast pattern first,
// on the same connection).
func waitNodeSubscribed(t *testing.T, c *redis.Client, prefix string, nsps ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, nsp := range nsps {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			n, err := c.PubSubNumSub(ctx, prefix+"-request#"+nsp+"#").Result()
			cancel()
			if err == nil && n[prefix+"-request#"+nsp+"#"] >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no server subscribed to namespace %s within 5 s (%v)", nsp, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestNodeServer has the emitter drive a Node socket.io 4.8 server with
// @socket.io/redis-adapter 8.3 through a real Redis; socket.io-client
// clients report what they receive.
func TestNodeServer(t *testing.T) {
	r := redistest.Start(t)
	const prefix = "nodeemit"
	n := startNodeServer(t, r.URL, prefix)
	rc := r.Client(t)
	waitNodeSubscribed(t, rc, prefix, "/", "/calc")
	ctx := testContext(t, 30*time.Second)
	e := emitter.New(rc, emitter.Options{Prefix: prefix})

	t.Run("namespace", func(t *testing.T) {
		must(t, e.Emit(ctx, "hello", "world", 1, 2.5, map[string]any{"k": true}, nil, []any{"x", int64(-3)}))
		for _, who := range []string{"alice", "bob"} {
			if a := n.expect(t, who, "hello"); a != `["world",1,2.5,{"k":true},null,["x",-3]]` {
				t.Errorf("%s got hello %s", who, a)
			}
		}
	})

	t.Run("room", func(t *testing.T) {
		must(t, e.To("lobby").Emit(ctx, "news", "for the lobby"))
		must(t, e.Emit(ctx, "sync", 1))
		if a := n.expect(t, "alice", "news"); a != `["for the lobby"]` {
			t.Errorf("alice got news %s", a)
		}
		n.expect(t, "alice", "sync")
		n.expect(t, "bob", "sync") // not the news before it
	})

	t.Run("except", func(t *testing.T) {
		must(t, e.Except("lobby").Emit(ctx, "not-lobby"))
		must(t, e.To("lobby", n.sids["bob"]).Except(n.sids["alice"]).Emit(ctx, "not-alice"))
		must(t, e.Emit(ctx, "sync", 2))
		n.expect(t, "bob", "not-lobby")
		n.expect(t, "bob", "not-alice")
		n.expect(t, "bob", "sync")
		n.expect(t, "alice", "sync")
	})

	t.Run("values", func(t *testing.T) {
		type msg struct {
			ID   string   `json:"id"`
			Tags []string `json:"tags"`
		}
		must(t, e.To("lobby").Emit(ctx, "values", []byte{0, 1, 2, 255},
			map[string]any{"name": "f.txt", "data": []byte("hello")},
			time.UnixMilli(1700000000123), msg{ID: "m1", Tags: []string{"a"}}, float32(0.5)))
		want := `[{"$bin":"000102ff"},{"data":{"$bin":"68656c6c6f"},"name":"f.txt"},"2023-11-14T22:13:20.123Z",{"id":"m1","tags":["a"]},0.5]`
		if a := n.expect(t, "alice", "values"); a != want {
			t.Errorf("alice got values %s\nwant %s", a, want)
		}
	})

	t.Run("flags", func(t *testing.T) {
		must(t, e.To("lobby").Volatile().Compress(false).Emit(ctx, "flagged"))
		n.expect(t, "alice", "flagged")
	})

	t.Run("other namespace", func(t *testing.T) {
		must(t, e.Of("calc").Emit(ctx, "calc-news", 42))
		must(t, e.Emit(ctx, "sync", 3))
		if a := n.expect(t, "dave", "calc-news"); a != `[42]` {
			t.Errorf("dave got calc-news %s", a)
		}
		n.expect(t, "alice", "sync")
		n.expect(t, "bob", "sync")
	})

	t.Run("join and leave", func(t *testing.T) {
		must(t, e.In(n.sids["bob"]).SocketsJoin(ctx, "vip", "vip2"))
		must(t, e.To("vip").Emit(ctx, "vip-news", "a"))
		must(t, e.Emit(ctx, "sync", 4))
		n.expect(t, "bob", "vip-news")
		n.expect(t, "bob", "sync")
		n.expect(t, "alice", "sync")

		must(t, e.In("vip").SocketsLeave(ctx, "vip"))
		must(t, e.To("vip").Emit(ctx, "vip-news", "b"))
		must(t, e.To("vip2").Emit(ctx, "vip2-news"))
		n.expect(t, "bob", "vip2-news") // not the vip-news before it
	})

	t.Run("server-side emit", func(t *testing.T) {
		must(t, e.ServerSideEmit(ctx, "reload", "config", 2, map[string]any{"b": 1, "a": []byte{7}}))
		if a := n.expect(t, "", "reload"); a != `["config",2,{"a":{"type":"Buffer","data":[7]},"b":1}]` {
			t.Errorf("server got reload %s", a)
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		must(t, e.In(n.sids["bob"]).DisconnectSockets(ctx, false))
		n.expect(t, "bob", "$disconnect")
		must(t, e.Of("/calc").DisconnectSockets(ctx, true))
		n.expect(t, "dave", "$disconnect")
		must(t, e.Emit(ctx, "after"))
		n.expect(t, "alice", "after")
	})
}
