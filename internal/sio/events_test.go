package sio_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

func rawJSON(t *testing.T, args []json.RawMessage) string {
	t.Helper()
	b, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOnGetsEveryArgumentAndAcksAnyNumber(t *testing.T) {
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		n.On("echo", func(_ context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
			_ = ack(args...)
		})
		n.On("count", func(_ context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
			_ = ack(len(args))
		})
	})
	c := dial(t, ts, "/", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	got, err := c.CallArgs(ctx, "echo", 1, "two", map[string]any{"three": 3}, nil, []any{true})
	if err != nil {
		t.Fatal(err)
	}
	if s := rawJSON(t, got); s != `[1,"two",{"three":3},null,[true]]` {
		t.Fatalf("echo acked %s", s)
	}
	got, err = c.CallArgs(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("echo of nothing acked %s, want no arguments", rawJSON(t, got))
	}
	got, err = c.CallArgs(ctx, "count", "a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	if s := rawJSON(t, got); s != `[3]` {
		t.Fatalf("count acked %s", s)
	}
}

func TestAckIsSentOnceAndMayComeAfterTheHandler(t *testing.T) {
	second := make(chan error, 1)
	ts, _ := start(t, func(s *sio.Server) {
		s.Of("/").On("later", func(_ context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
			go func() {
				_ = ack("done", args[0])
				second <- ack("again")
			}()
		})
	})
	c := dial(t, ts, "/", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := c.CallArgs(ctx, "later", 7)
	if err != nil {
		t.Fatal(err)
	}
	if s := rawJSON(t, got); s != `["done",7]` {
		t.Fatalf("acked %s", s)
	}
	if err := <-second; !errors.Is(err, sio.ErrAckSent) { // sent right after the ack that arrived
		t.Fatalf("second ack: %v, want ErrAckSent", err)
	}
}

// Node sends no ack for an event nobody handles, so the client's timeout()
// fires; the contract's namespaces refuse it instead.
func TestUnknownEventGetsNoAckUnlessRefused(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		ts, _ := start(t, func(s *sio.Server) {
			n := s.Of("/")
			if refuse {
				n.RefuseUnknownEvents()
			}
			n.On("known", func(_ context.Context, _ *sio.Conn, _ sio.Args, ack sio.Ack) { _ = ack("ok") })
		})
		c := dial(t, ts, "/", nil)
		unknown, err := c.EmitAck("nobody-handles-this", 1)
		if err != nil {
			t.Fatal(err)
		}
		// Events of one connection are answered in order: once "known" is
		// acknowledged, an ack of the unknown event would have arrived.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := c.CallArgs(ctx, "known"); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case raw := <-unknown:
			var a ack
			_ = json.Unmarshal(raw, &a)
			if !refuse {
				t.Fatalf("unknown event acked %s; Node sends no ack", raw)
			}
			if a.OK || a.Error == nil || a.Error.Code != "bad_request" {
				t.Fatalf("refused unknown event acked %s, want bad_request", raw)
			}
		default:
			if refuse {
				t.Fatal("RefuseUnknownEvents: no bad_request ack for an unknown event")
			}
		}
	}
}

func TestEmitAnyNumberOfArguments(t *testing.T) {
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		n.On("go", func(_ context.Context, c *sio.Conn, _ sio.Args, _ sio.Ack) {
			_ = c.Emit("none")
			_ = c.Emit("two", 1, map[string]any{"b": "x"})
			_ = n.To(c.ID()).Emit("three", "a", nil, false)
		})
	})
	c := dial(t, ts, "/", nil)
	if err := c.Emit("go"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, want := range []struct{ name, args string }{{"none", `[]`}, {"two", `[1,{"b":"x"}]`}, {"three", `["a",null,false]`}} {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want.name, err)
		}
		args := e.Args
		if args == nil {
			args = []json.RawMessage{}
		}
		if e.Name != want.name || rawJSON(t, args) != want.args {
			t.Fatalf("got %s %s, want %s %s", e.Name, rawJSON(t, args), want.name, want.args)
		}
	}
}

// Handle and On share one event table: the last registration wins.
func TestOnReplacesHandle(t *testing.T) {
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		sio.Handle(n, "x", func(context.Context, *sio.Conn, any) (any, error) { return nil, nil })
		n.On("x", func(_ context.Context, _ *sio.Conn, _ sio.Args, ack sio.Ack) { _ = ack("raw") })
		n.On("y", func(_ context.Context, _ *sio.Conn, _ sio.Args, ack sio.Ack) { _ = ack("raw") })
		sio.Handle(n, "y", func(context.Context, *sio.Conn, any) (any, error) { return nil, nil })
	})
	c := dial(t, ts, "/", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := c.CallArgs(ctx, "x")
	if err != nil || rawJSON(t, got) != `["raw"]` {
		t.Fatalf("x: %v %v", got, err)
	}
	got, err = c.CallArgs(ctx, "y")
	if err != nil || rawJSON(t, got) != `[{"ok":true}]` {
		t.Fatalf("y: %s %v", rawJSON(t, got), err)
	}
}

func TestEmitWithAckReturnsTheClientsAnswerOrFails(t *testing.T) {
	type result struct {
		args sio.Args
		err  error
	}
	results := make(chan result, 3)
	conns := make(chan *sio.Conn, 1)
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		n.OnConnect(func(_ context.Context, c *sio.Conn) { conns <- c })
		n.On("ask", func(_ context.Context, c *sio.Conn, args sio.Args, _ sio.Ack) {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(args[0].(float64))*time.Millisecond)
				defer cancel()
				a, err := c.EmitWithAck(ctx, "question", "x", args[0])
				results <- result{a, err}
			}()
		})
	})
	c := dial(t, ts, "/", nil)
	var conn *sio.Conn
	select {
	case conn = <-conns:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
	}
	var seen []string
	conn.OnAnyOutgoing(func(event string, args sio.Args) { seen = append(seen, event) })
	c.AckEvents(func(e rawclient.Event) any { return rawJSON(t, e.Args) })
	if err := c.Emit("ask", 5000); err != nil {
		t.Fatal(err)
	}
	next := func() result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("EmitWithAck did not return")
			return result{}
		}
	}
	r := next()
	if r.err != nil || len(r.args) != 1 || r.args[0] != `["x",5000]` {
		t.Fatalf("EmitWithAck: %v %v", r.args, r.err)
	}
	if len(seen) != 1 || seen[0] != "question" {
		t.Fatalf("OnAnyOutgoing saw %v", seen)
	}

	c.AckEvents(nil) // the client stops answering: the deadline ends the wait
	if err := c.Emit("ask", 100); err != nil {
		t.Fatal(err)
	}
	if r := next(); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("unanswered EmitWithAck: %v %v, want DeadlineExceeded", r.args, r.err)
	}

	if err := c.Emit("ask", 60000); err != nil {
		t.Fatal(err)
	}
	// Once the event is out (the client reads it), the connection drops.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Name == "question" && len(e.Args) == 2 && string(e.Args[1]) == "60000" { // not an earlier one
			break
		}
	}
	_ = c.Close()
	if r := next(); !errors.Is(r.err, sio.ErrConnClosed) {
		t.Fatalf("EmitWithAck on a closed connection: %v %v, want ErrConnClosed", r.args, r.err)
	}
}

func TestOnAnySeesEveryIncomingEventInOrder(t *testing.T) {
	type seen struct {
		event string
		args  string
	}
	got := make(chan seen, 10)
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		n.OnConnect(func(_ context.Context, c *sio.Conn) {
			c.OnAny(func(event string, args sio.Args) {
				b, _ := json.Marshal(args)
				got <- seen{event, string(b)}
			})
		})
		n.On("handled", func(_ context.Context, _ *sio.Conn, _ sio.Args, ack sio.Ack) { _ = ack() })
	})
	c := dial(t, ts, "/", nil)
	_ = c.Emit("unhandled", 1, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.CallArgs(ctx, "handled", map[string]any{"k": true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []seen{{"unhandled", `[1,"a"]`}, {"handled", `[{"k":true}]`}} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("OnAny saw %v, want %v", g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("OnAny did not see %v", want)
		}
	}
}
