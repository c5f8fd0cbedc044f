package emitter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/adapter/emitter"
	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/server"
)

const sbPrefix = "sbemit"

// sbNode starts a Switchboard node with ADAPTER=redis on redisURL.
func sbNode(t *testing.T, redisURL string, setup func(*server.Server)) (*server.Server, string) {
	t.Helper()
	cfg := server.Defaults()
	cfg.JWTSecret = "emitter-secret"
	cfg.Adapter = "redis"
	cfg.RedisURL = redisURL
	cfg.RedisPrefix = sbPrefix
	cfg.NodeID = "emitter-test"
	cfg.DrainTimeout = 0
	sb, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(sb)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sb.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sb, "http://" + ln.Addr().String()
}

// waitSubscribed waits until the node's namespace is subscribed on Redis
// (it counts itself), so that nothing published afterwards is missed.
func waitSubscribed(t *testing.T, ns *server.Namespace) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n, err := ns.ServerCount(ctx)
		cancel()
		if err == nil && n >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not subscribed to Redis within 5 s: %d servers (%v)", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dialUser(t *testing.T, sb *server.Server, url, user, nsp string) *rawclient.Client {
	t.Helper()
	tok, err := sb.MintToken(user, "N-"+user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rawclient.Dial(testContext(t, 5*time.Second), url, "/socket.io/", nsp, map[string]any{"token": tok}, nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", nsp, user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// contractEvent reports the events the client contract sends on its own
// (the session on connect, presence changes), which the tests skip.
func contractEvent(name string) bool {
	return name == "session" || name == "user-joined" || name == "user-left" || name == "presence"
}

// expectNext returns the args of c's next event, which must be name (the
// contract's own events skipped): what was published before it and is not
// for c was not delivered to c.
func expectNext(t *testing.T, c *rawclient.Client, who, name string) string {
	t.Helper()
	ctx := testContext(t, 5*time.Second)
	for {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("%s: no %q within 5 s", who, name)
		}
		if contractEvent(e.Name) {
			continue
		}
		if e.Name != name {
			t.Fatalf("%s: got %q %s, want %q first", who, e.Name, args(e.Args), name)
		}
		return args(e.Args)
	}
}

func args(a []json.RawMessage) string {
	b, _ := json.Marshal(a)
	return string(b)
}

func expectDisconnected(t *testing.T, c *rawclient.Client, who string) {
	t.Helper()
	select {
	case <-c.Disconnected:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still connected after 5 s", who)
	}
}

// TestSwitchboardNode has the emitter drive a Switchboard node
// (ADAPTER=redis) and its clients through a real Redis: emits to the
// namespace, a room, except rooms, another namespace, with flags and with
// binary; joins, leaves and disconnects; a server-side event.
func TestSwitchboardNode(t *testing.T) {
	r := redistest.Start(t)
	type serverSide struct {
		event string
		args  []any
	}
	got := make(chan serverSide, 4)
	sb, url := sbNode(t, r.URL, func(sb *server.Server) {
		sb.Of("/").OnServerSideEmit(func(_ context.Context, event string, args []any) any {
			got <- serverSide{event, args}
			return nil
		})
		sb.Of("/calc")
	})
	waitSubscribed(t, sb.Of("/"))
	waitSubscribed(t, sb.Of("/calc"))

	alice := dialUser(t, sb, url, "alice", "/")
	bob := dialUser(t, sb, url, "bob", "/")
	dave := dialUser(t, sb, url, "dave", "/calc")
	if raw, err := alice.Call(testContext(t, 5*time.Second), "join-room", "lobby"); err != nil || !strings.Contains(string(raw), `"ok":true`) {
		t.Fatalf("alice join-room: %s %v", raw, err)
	}
	ctx := testContext(t, 30*time.Second)
	e := emitter.New(r.Client(t), emitter.Options{Prefix: sbPrefix})

	t.Run("namespace", func(t *testing.T) {
		if err := e.Emit(ctx, "hello", "world", 1, map[string]any{"k": true}, nil); err != nil {
			t.Fatal(err)
		}
		for who, c := range map[string]*rawclient.Client{"alice": alice, "bob": bob} {
			if a := expectNext(t, c, who, "hello"); a != `["world",1,{"k":true},null]` {
				t.Errorf("%s got hello %s", who, a)
			}
		}
	})

	t.Run("room", func(t *testing.T) {
		if err := e.To("lobby").Emit(ctx, "news", "for the lobby"); err != nil {
			t.Fatal(err)
		}
		if err := e.Emit(ctx, "sync", 1); err != nil {
			t.Fatal(err)
		}
		if a := expectNext(t, alice, "alice", "news"); a != `["for the lobby"]` {
			t.Errorf("alice got news %s", a)
		}
		expectNext(t, alice, "alice", "sync")
		expectNext(t, bob, "bob", "sync") // not the news before it
	})

	t.Run("except", func(t *testing.T) {
		must(t, e.Except("user:bob").Emit(ctx, "not-bob"))
		must(t, e.To("lobby", "user:bob").Except(alice.SID).Emit(ctx, "not-alice", []string{"x"}))
		must(t, e.Emit(ctx, "sync", 2))
		expectNext(t, alice, "alice", "not-bob")
		expectNext(t, alice, "alice", "sync")
		if a := expectNext(t, bob, "bob", "not-alice"); a != `[["x"]]` {
			t.Errorf("bob got not-alice %s", a)
		}
		expectNext(t, bob, "bob", "sync")
	})

	t.Run("flags", func(t *testing.T) {
		must(t, e.To("lobby").Compress(true).Volatile().Emit(ctx, "flagged", 1.5))
		if a := expectNext(t, alice, "alice", "flagged"); a != `[1.5]` {
			t.Errorf("alice got flagged %s", a)
		}
	})

	t.Run("other namespace", func(t *testing.T) {
		must(t, e.Of("calc").Emit(ctx, "calc-news", 42))
		must(t, e.Emit(ctx, "sync", 3))
		if a := expectNext(t, dave, "dave", "calc-news"); a != `[42]` {
			t.Errorf("dave got calc-news %s", a)
		}
		expectNext(t, alice, "alice", "sync")
		expectNext(t, bob, "bob", "sync")
	})

	t.Run("binary", func(t *testing.T) {
		carol := dialRaw(t, sb, url, "carol")
		must(t, e.Except("user:alice", "user:bob").Emit(ctx, "bin", []byte{0, 1, 2, 255},
			map[string]any{"name": "f.txt", "data": []byte("hello")}))
		text, attachments := carol.nextEvent(t, "bin")
		// (The node appends the recovery offset: a last string argument.)
		if !strings.HasPrefix(text, `52-["bin",{"_placeholder":true,"num":0},{"data":{"_placeholder":true,"num":1},"name":"f.txt"},"`) {
			t.Errorf("carol got %s", text)
		}
		if len(attachments) != 2 || !bytes.Equal(attachments[0], []byte{0, 1, 2, 255}) || string(attachments[1]) != "hello" {
			t.Errorf("carol's attachments %q", attachments)
		}
	})

	t.Run("join and leave", func(t *testing.T) {
		must(t, e.In(bob.SID).SocketsJoin(ctx, "vip", "vip2"))
		must(t, e.To("vip").Emit(ctx, "vip-news", "a"))
		must(t, e.Emit(ctx, "sync", 4))
		expectNext(t, bob, "bob", "vip-news")
		expectNext(t, bob, "bob", "sync")
		expectNext(t, alice, "alice", "sync")

		must(t, e.In("user:bob").SocketsLeave(ctx, "vip"))
		must(t, e.To("vip").Emit(ctx, "vip-news", "b"))
		must(t, e.To("vip2").Emit(ctx, "vip2-news"))
		expectNext(t, bob, "bob", "vip2-news") // not the vip-news before it

		// Everyone of the namespace, but not the lobby's.
		must(t, e.Except("lobby").SocketsJoin(ctx, "not-lobby"))
		must(t, e.To("not-lobby").Emit(ctx, "nl"))
		must(t, e.Emit(ctx, "sync", 5))
		expectNext(t, bob, "bob", "nl")
		expectNext(t, bob, "bob", "sync")
		expectNext(t, alice, "alice", "sync")
		rooms := roomsOf(t, sb.Of("/"), bob.SID)
		if !slices.Contains(rooms, "vip2") || !slices.Contains(rooms, "not-lobby") || slices.Contains(rooms, "vip") {
			t.Errorf("bob's rooms %q", rooms)
		}
	})

	t.Run("server-side emit", func(t *testing.T) {
		must(t, e.ServerSideEmit(ctx, "reload", "config", 2, []byte{7}))
		select {
		case s := <-got:
			b, _ := json.Marshal(s.args)
			if s.event != "reload" || string(b) != `["config",2,{"data":[7],"type":"Buffer"}]` {
				t.Errorf("handler got %q %s", s.event, b)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no server-side event within 5 s")
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		must(t, e.In("user:bob").DisconnectSockets(ctx, false))
		expectDisconnected(t, bob, "bob")
		must(t, e.Of("/calc").DisconnectSockets(ctx, true))
		expectDisconnected(t, dave, "dave")
		must(t, e.Emit(ctx, "after"))
		expectNext(t, alice, "alice", "after")
		select {
		case <-alice.Disconnected:
			t.Fatal("alice disconnected too")
		default:
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// roomsOf is the rooms of socket sid, as the node reports them.
func roomsOf(t *testing.T, ns *server.Namespace, sid string) []string {
	t.Helper()
	socks, err := ns.FetchSockets(testContext(t, 5*time.Second), server.BroadcastOpts{Rooms: []string{sid}})
	if err != nil || len(socks) != 1 {
		t.Fatalf("fetch socket %s: %v %v", sid, socks, err)
	}
	return socks[0].Rooms
}

// rawWS is a Socket.IO client on a bare WebSocket, for what rawclient does
// not read: binary events (a BINARY_EVENT text frame, then one binary frame
// per attachment).
type rawWS struct {
	ws *websocket.Conn
}

func dialRaw(t *testing.T, sb *server.Server, url, user string) *rawWS {
	t.Helper()
	tok, _ := sb.MintToken(user, "N-"+user, time.Hour)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.DialContext(testContext(t, 5*time.Second),
		"ws"+strings.TrimPrefix(url, "http")+"/socket.io/?EIO=4&transport=websocket", http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	c := &rawWS{ws}
	if _, open := c.read(t); !strings.HasPrefix(open, "0{") {
		t.Fatalf("open: %q", open)
	}
	auth, _ := json.Marshal(map[string]string{"token": tok})
	if err := ws.WriteMessage(websocket.TextMessage, append([]byte("40"), auth...)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, s := c.read(t); strings.HasPrefix(s, "40{") {
			return c
		} else if strings.HasPrefix(s, "44") {
			t.Fatalf("connect refused: %s", s)
		}
	}
}

// read returns the next frame (answering pings), binary or text.
func (c *rawWS) read(t *testing.T) ([]byte, string) {
	t.Helper()
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			t.Fatalf("raw client: %v", err)
		}
		if typ == websocket.BinaryMessage {
			return msg, ""
		}
		if string(msg) == "2" {
			_ = c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
			continue
		}
		return nil, string(msg)
	}
}

// nextEvent returns the Socket.IO packet of the next event named name
// (without the Engine.IO "4") and its attachments.
func (c *rawWS) nextEvent(t *testing.T, name string) (string, [][]byte) {
	t.Helper()
	for {
		_, s := c.read(t)
		if s == "" || !strings.HasPrefix(s, "4") {
			continue
		}
		p := s[1:]
		if !strings.Contains(p, `["`+name+`"`) {
			continue
		}
		var atts [][]byte
		if p[0] == '5' { // BINARY_EVENT: 5<n>-[...]
			n := 0
			for _, ch := range p[1:strings.IndexByte(p, '-')] {
				n = 10*n + int(ch-'0')
			}
			for range n {
				b, _ := c.read(t)
				if b == nil {
					t.Fatalf("attachment expected after %s", p)
				}
				atts = append(atts, b)
			}
		}
		return p, atts
	}
}
