package sio_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

// ackWithSID makes c answer the server's events expecting an ack with
// {"sid": its id, "got": the event's first argument}.
func ackWithSID(c *rawclient.Client) {
	c.AckEvents(func(e rawclient.Event) any {
		var got any
		if len(e.Args) > 0 {
			_ = json.Unmarshal(e.Args[0], &got)
		}
		return map[string]any{"sid": c.SID, "got": got}
	})
}

func sidsOf(t *testing.T, responses []any) []string {
	t.Helper()
	var out []string
	for _, r := range responses {
		m, ok := r.(map[string]any)
		if !ok {
			t.Fatalf("response %#v is not an object", r)
		}
		sid, _ := m["sid"].(string)
		out = append(out, sid)
	}
	slices.Sort(out)
	return out
}

func TestBroadcastEmitWithAckOneNode(t *testing.T) {
	var ns *sio.Namespace
	ts, _ := start(t, func(s *sio.Server) {
		ns = s.Of("/")
		sio.Handle(ns, "join", func(_ context.Context, c *sio.Conn, room string) (any, error) {
			c.Join(room)
			return nil, nil
		})
	})
	a, b, c, outsider, silent := dial(t, ts, "/", nil), dial(t, ts, "/", nil), dial(t, ts, "/", nil),
		dial(t, ts, "/", nil), dial(t, ts, "/", nil)
	for _, cl := range []*rawclient.Client{a, b, c, outsider} {
		ackWithSID(cl)
	}
	for _, cl := range []*rawclient.Client{a, b, c} {
		call(t, cl, "join", "r")
	}

	t.Run("every member answers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		res, err := ns.To("r").Except(c.SID).EmitWithAck(ctx, "question", map[string]any{"q": 42})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{a.SID, b.SID}
		slices.Sort(want)
		if got := sidsOf(t, res); !slices.Equal(got, want) {
			t.Fatalf("responses from %v, want %v", got, want)
		}
		if m := res[0].(map[string]any); m["got"].(map[string]any)["q"] != float64(42) {
			t.Fatalf("the clients got %v", m["got"])
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v: it must return once every recipient answered", d)
		}
	})

	t.Run("nobody selected", func(t *testing.T) {
		res, err := ns.To("empty").EmitWithAck(context.Background(), "question", nil)
		if err != nil || res == nil || len(res) != 0 {
			t.Fatalf("= %#v, %v; want [] at once", res, err)
		}
	})

	t.Run("timeout returns the partial responses", func(t *testing.T) {
		call(t, silent, "join", "r") // never answers
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		res, err := ns.To("r").EmitWithAck(ctx, "question", "?")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
		want := []string{a.SID, b.SID, c.SID}
		slices.Sort(want)
		if got := sidsOf(t, res); !slices.Equal(got, want) {
			t.Fatalf("partial responses from %v, want %v", got, want)
		}
		next, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel2()
		if ev, err := silent.Next(next); err != nil || ev.Name != "question" {
			t.Fatalf("the silent member got %+v, %v", ev, err)
		}
	})

	t.Run("all sockets", func(t *testing.T) {
		silent.AckEvents(func(rawclient.Event) any { return map[string]any{"sid": silent.SID} })
		res, err := ns.To().EmitWithAck(context.Background(), "question", "?")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{a.SID, b.SID, c.SID, outsider.SID, silent.SID}
		slices.Sort(want)
		if got := sidsOf(t, res); !slices.Equal(got, want) {
			t.Fatalf("responses from %v, want %v", got, want)
		}
	})
}
