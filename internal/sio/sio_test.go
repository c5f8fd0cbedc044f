package sio_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

type ack struct {
	OK    bool            `json:"ok"`
	Error *sio.Error      `json:"error"`
	Data  json.RawMessage `json:"data"`
	N     int             `json:"n"`
}

func start(t *testing.T, setup func(s *sio.Server)) (*httptest.Server, *sio.Server) {
	t.Helper()
	s := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second})
	setup(s)
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return ts, s
}

func dial(t *testing.T, ts *httptest.Server, nsp string, auth any) *rawclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, ts.URL, "/socket.io/", nsp, auth, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(t *testing.T, c *rawclient.Client, event string, args ...any) ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := c.Call(ctx, event, args...)
	if err != nil {
		t.Fatalf("%s: %v", event, err)
	}
	var a ack
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s: ack %s: %v", event, raw, err)
	}
	return a
}

func TestPanicIsRecoveredAndAnsweredInternal(t *testing.T) {
	var panics atomic.Int32
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		sio.Handle(n, "boom", func(context.Context, *sio.Conn, string) (any, error) {
			panics.Add(1)
			panic("handler bug")
		})
		sio.Handle(n, "echo", func(_ context.Context, _ *sio.Conn, v string) (map[string]any, error) {
			return map[string]any{"data": v}, nil
		})
	})
	a, b := dial(t, ts, "/", nil), dial(t, ts, "/", nil)
	got := call(t, a, "boom", "x")
	if got.OK || got.Error == nil || got.Error.Code != "internal" {
		t.Fatalf("panic ack = %+v, want internal", got)
	}
	if panics.Load() != 1 {
		t.Fatalf("handler ran %d times", panics.Load())
	}
	// The same connection and another one keep working.
	if got := call(t, a, "echo", "after"); !got.OK || string(got.Data) != `"after"` {
		t.Fatalf("echo after panic on same conn = %+v", got)
	}
	if got := call(t, b, "echo", "other"); !got.OK || string(got.Data) != `"other"` {
		t.Fatalf("echo on other conn = %+v", got)
	}
}

func TestEventsOfOneConnectionRunInOrderOneAtATime(t *testing.T) {
	const n = 300
	var mu sync.Mutex
	var seen []int
	var running, overlap atomic.Int32
	ts, _ := start(t, func(s *sio.Server) {
		type res struct {
			N int `json:"n"`
		}
		sio.Handle(s.Of("/"), "seq", func(_ context.Context, _ *sio.Conn, i int) (res, error) {
			if running.Add(1) > 1 {
				overlap.Add(1)
			}
			defer running.Add(-1)
			if i%7 == 0 { // uneven handler times must not reorder anything
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			seen = append(seen, i)
			mu.Unlock()
			return res{N: i}, nil
		})
	})
	c := dial(t, ts, "/", nil)
	chans := make([]<-chan json.RawMessage, n)
	for i := range n {
		ch, err := c.EmitAck("seq", i)
		if err != nil {
			t.Fatal(err)
		}
		chans[i] = ch
	}
	for i, ch := range chans {
		select {
		case raw := <-ch:
			var a ack
			_ = json.Unmarshal(raw, &a)
			if !a.OK || a.N != i {
				t.Fatalf("ack %d = %s", i, raw)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ack %d never came", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range seen {
		if v != i {
			t.Fatalf("handled out of order at %d: got %d", i, v)
		}
	}
	if len(seen) != n || overlap.Load() != 0 {
		t.Fatalf("handled %d of %d, %d overlapping", len(seen), n, overlap.Load())
	}
}

func TestDecodingWrongShapesIsBadRequest(t *testing.T) {
	type in struct {
		Room *string `json:"room"`
		N    int     `json:"n"`
	}
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		n.RefuseUnknownEvents() // the contract answers unknown events bad_request
		sio.Handle(n, "str", func(_ context.Context, _ *sio.Conn, v string) (any, error) { return nil, nil })
		sio.Handle(n, "obj", func(_ context.Context, _ *sio.Conn, v in) (any, error) { return nil, nil })
	})
	c := dial(t, ts, "/", nil)
	for _, tc := range []struct {
		event string
		args  []any
		ok    bool
	}{
		{"str", []any{"fine"}, true},
		{"str", []any{42}, false},
		{"str", nil, false},
		{"str", []any{nil}, false},
		{"str", []any{map[string]any{}}, false},
		{"obj", []any{map[string]any{"room": "a", "n": 1}}, true},
		{"obj", []any{map[string]any{"n": "one"}}, false},
		{"obj", []any{"not an object"}, false},
		{"obj", []any{[]any{1, 2}}, false},
		{"unknown-event", []any{1}, false},
	} {
		got := call(t, c, tc.event, tc.args...)
		if got.OK != tc.ok || (!tc.ok && got.Error.Code != "bad_request") {
			t.Errorf("%s %v: ack %+v (error %+v), want ok=%v or bad_request", tc.event, tc.args, got, got.Error, tc.ok)
		}
	}
}

func TestResultsAndErrorsBecomeAckEnvelopes(t *testing.T) {
	type res struct {
		Room string `json:"room"`
	}
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		sio.Handle(n, "struct", func(context.Context, *sio.Conn, string) (res, error) { return res{Room: "r"}, nil })
		sio.Handle(n, "empty", func(context.Context, *sio.Conn, string) (struct{}, error) { return struct{}{}, nil })
		sio.Handle(n, "coded", func(context.Context, *sio.Conn, string) (any, error) {
			return nil, sio.Errorf("not_in_room", "nope")
		})
		sio.Handle(n, "plain", func(context.Context, *sio.Conn, string) (any, error) {
			return nil, errors.New("db down: secret detail")
		})
	})
	c := dial(t, ts, "/", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for event, want := range map[string]string{
		"struct": `{"ok":true,"room":"r"}`,
		"empty":  `{"ok":true}`,
		"coded":  `{"ok":false,"error":{"code":"not_in_room","message":"nope"}}`,
		"plain":  `{"ok":false,"error":{"code":"internal","message":"internal error"}}`,
	} {
		raw, err := c.Call(ctx, event, "x")
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != want {
			t.Errorf("%s: ack %s, want %s", event, raw, want)
		}
	}
}

func TestConnectMiddlewareRefusalCarriesCode(t *testing.T) {
	var released atomic.Int32
	ts, _ := start(t, func(s *sio.Server) {
		s.Use(func(_ context.Context, h *sio.Handshake) error {
			h.OnClose(func() { released.Add(1) })
			if tok, _ := h.Auth["token"].(string); tok != "good" {
				return &sio.Error{Code: "token_invalid", Message: "Invalid token"}
			}
			h.User = &sio.User{ID: "u1", Name: "U"}
			return nil
		})
		sio.Handle(s.Of("/"), "whoami", func(_ context.Context, c *sio.Conn, _ any) (sio.User, error) {
			return c.User(), nil
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := rawclient.Dial(ctx, ts.URL, "/socket.io/", "/", map[string]any{"token": "bad"}, nil)
	var ce *rawclient.ConnectError
	if !errors.As(err, &ce) || ce.Message != "Invalid token" || ce.Data["code"] != "token_invalid" {
		t.Fatalf("refusal = %v (%+v)", err, ce)
	}
	if released.Load() != 1 {
		t.Fatalf("OnClose ran %d times after a refusal, want 1", released.Load())
	}
	c := dial(t, ts, "/", map[string]any{"token": "good"})
	raw, err := c.Call(ctx, "whoami", nil)
	if err != nil || string(raw) != `{"ok":true,"id":"u1","name":"U"}` {
		t.Fatalf("whoami = %s, %v", raw, err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if released.Load() != 2 {
		t.Fatalf("OnClose after disconnect ran %d times total, want 2", released.Load())
	}
}

func TestUnknownNamespaceIsRefused(t *testing.T) {
	ts, _ := start(t, func(*sio.Server) {})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := rawclient.Dial(ctx, ts.URL, "/socket.io/", "/nope", nil, nil)
	var ce *rawclient.ConnectError
	if !errors.As(err, &ce) || ce.Message != "Invalid namespace" {
		t.Fatalf("err = %v", err)
	}
}

func TestDisconnectHookWaitsForRunningHandler(t *testing.T) {
	var mu sync.Mutex
	var order []string
	entered := make(chan struct{})
	hookDone := make(chan struct{})
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		sio.Handle(n, "slow", func(context.Context, *sio.Conn, any) (any, error) {
			close(entered)
			time.Sleep(300 * time.Millisecond)
			mu.Lock()
			order = append(order, "handler")
			mu.Unlock()
			return nil, nil
		})
		n.OnDisconnect(func(context.Context, *sio.Conn, string) {
			mu.Lock()
			order = append(order, "disconnect")
			mu.Unlock()
			close(hookDone)
		})
	})
	c := dial(t, ts, "/", nil)
	if _, err := c.EmitAck("slow", nil); err != nil {
		t.Fatal(err)
	}
	<-entered
	c.Close()
	select {
	case <-hookDone:
	case <-time.After(5 * time.Second):
		t.Fatal("disconnect hook never ran")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 2 || order[0] != "handler" || order[1] != "disconnect" {
		t.Fatalf("order = %v, want handler then disconnect", order)
	}
}

func TestDisconnectFromHandlerSendsDisconnectAfterAck(t *testing.T) {
	ts, _ := start(t, func(s *sio.Server) {
		sio.Handle(s.Of("/"), "kick-me", func(_ context.Context, c *sio.Conn, _ any) (any, error) {
			c.Disconnect()
			return map[string]any{"bye": true}, nil
		})
	})
	c := dial(t, ts, "/", nil)
	got := call(t, c, "kick-me", nil)
	if !got.OK {
		t.Fatalf("ack = %+v", got)
	}
	select {
	case <-c.Disconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT after the ack")
	}
}

func TestBroadcastReachesRoomMembersOnly(t *testing.T) {
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		sio.Handle(n, "join", func(_ context.Context, c *sio.Conn, room string) (any, error) {
			c.Join(room)
			return nil, nil
		})
		sio.Handle(n, "shout", func(_ context.Context, c *sio.Conn, room string) (any, error) {
			return nil, n.To(room).Except(c.ID()).Emit("shout", map[string]any{"from": c.ID()})
		})
	})
	a, b, outsider := dial(t, ts, "/", nil), dial(t, ts, "/", nil), dial(t, ts, "/", nil)
	call(t, a, "join", "r")
	call(t, b, "join", "r")
	call(t, a, "shout", "r")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ev, err := b.Next(ctx); err != nil || ev.Name != "shout" {
		t.Fatalf("member got %+v, %v", ev, err)
	}
	quick, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if ev, err := a.Next(quick); err == nil {
		t.Fatalf("excepted sender got %+v", ev)
	}
	if ev, err := outsider.Next(quick); err == nil {
		t.Fatalf("outsider got %+v", ev)
	}
}

// The engine writes CONNECT before registering the namespace on the client;
// an event sent right after CONNECT used to close the connection (gate.go).
func TestEventRightAfterConnectIsHandled(t *testing.T) {
	ts, _ := start(t, func(s *sio.Server) {
		sio.Handle(s.Of("/"), "hi", func(context.Context, *sio.Conn, any) (string, error) { return "hello", nil })
	})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, err := rawclient.Dial(ctx, ts.URL, "/socket.io/", "/", nil, nil)
				if err != nil {
					failed.Add(1)
					cancel()
					continue
				}
				if raw, err := c.Call(ctx, "hi", nil); err != nil || string(raw) != `{"ok":true,"data":"hello"}` {
					failed.Add(1)
				}
				c.Close()
				cancel()
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 200 first events after CONNECT were lost", n)
	}
}
