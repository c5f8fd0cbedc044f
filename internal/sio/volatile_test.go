package sio_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

// Volatile emits reach an idle client without a recovery offset (they are
// not kept for recovery); the same emits without Volatile carry one.
func TestVolatileEmitsCarryNoOffset(t *testing.T) {
	ts, _ := start(t, func(s *sio.Server) {
		n := s.Of("/")
		n.On("join", func(_ context.Context, c *sio.Conn, _ sio.Args, ack sio.Ack) {
			c.Join("r")
			_ = ack()
		})
		n.On("to-me", func(_ context.Context, c *sio.Conn, args sio.Args, ack sio.Ack) {
			if args[0] == true {
				_ = c.Volatile().Emit("v", 1)
			} else {
				_ = c.Emit("v", 1)
			}
			_ = ack()
		})
		n.On("to-room", func(_ context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
			b := n.To("r")
			if args[0] == true {
				b = b.Volatile()
			}
			_ = b.Emit("b", 2)
			_ = ack()
		})
	})
	c := dial(t, ts, "/", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.CallArgs(ctx, "join"); err != nil {
		t.Fatal(err)
	}
	for _, volatile := range []bool{true, false} {
		for _, ev := range []string{"to-me", "to-room"} {
			before := c.Offset()
			var got rawclient.Event
			// A volatile emit is dropped while the transport still writes the
			// previous ack: tried until one goes through. It is sent before its
			// ack, so it has arrived when the ack has.
			for try := 0; ; try++ {
				if _, err := c.CallArgs(ctx, ev, volatile); err != nil {
					t.Fatal(err)
				}
				select {
				case got = <-c.Events:
				default:
					if !volatile || try == 50 {
						t.Fatalf("%s (volatile %v): no event after %d tries", ev, volatile, try+1)
					}
					time.Sleep(20 * time.Millisecond)
					continue
				}
				break
			}
			if len(got.Args) != 1 { // the client takes the offset off, as socket.io-client does
				t.Fatalf("%s (volatile %v): %s %s", ev, volatile, got.Name, rawJSON(t, got.Args))
			}
			if moved := c.Offset() != before; moved == volatile {
				t.Fatalf("%s (volatile %v): offset %q → %q", ev, volatile, before, c.Offset())
			}
		}
	}
}

// What SetData stored comes back with a recovered session, in its plain
// (JSON) form, as Node restores socket.data.
func TestSetDataSurvivesRecovery(t *testing.T) {
	var n *sio.Namespace
	got := make(chan any, 2)
	ts, _, _ := startOpts(t, sio.Options{}, func(s *sio.Server) {
		n = s.Of("/")
		n.On("set", func(_ context.Context, c *sio.Conn, args sio.Args, ack sio.Ack) {
			c.SetData(map[string]any{"score": args[0], "tags": []string{"a", "b"}})
			_ = ack()
		})
		n.OnConnect(func(_ context.Context, c *sio.Conn) { got <- c.Data() })
	})
	old := dial(t, ts, "/", nil)
	if d := <-got; d != nil {
		t.Fatalf("a new connection has data %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := old.CallArgs(ctx, "set", 7); err != nil {
		t.Fatal(err)
	}
	if err := n.To().Emit("tick", 1); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, old, "tick")
	drop(t, n, old)
	back := dial(t, ts, "/", resume(old))
	if !back.Recovered(old.SID) {
		t.Fatal("not recovered")
	}
	d := <-got
	b, _ := json.Marshal(d)
	if string(b) != `{"score":7,"tags":["a","b"]}` {
		t.Fatalf("recovered data %s", b)
	}
}
