package sio_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

// limitObserver counts the limits reported to it.
type limitObserver struct {
	mu     sync.Mutex
	limits map[string]int
}

func (o *limitObserver) Handshake(string, string)                    {}
func (o *limitObserver) Event(string, string, time.Duration, string) {}
func (o *limitObserver) Emitted(string, string)                      {}
func (o *limitObserver) Panic(string, string)                        {}
func (o *limitObserver) Limit(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.limits == nil {
		o.limits = map[string]int{}
	}
	o.limits[name]++
}

func (o *limitObserver) count(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.limits[name]
}

// startOpts is start with opts (and a limitObserver).
func startOpts(t *testing.T, opts sio.Options, setup func(s *sio.Server)) (*httptest.Server, *sio.Server, *limitObserver) {
	t.Helper()
	obs := &limitObserver{}
	opts.PingInterval, opts.PingTimeout, opts.Observer = time.Second, 2*time.Second, obs
	s := sio.NewServer(opts)
	setup(s)
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return ts, s, obs
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// drop closes c's transport (recoverable) and waits until the server let go
// of its connection, the session kept.
func drop(t *testing.T, n *sio.Namespace, c *rawclient.Client) {
	t.Helper()
	before := n.LocalCount()
	c.Close()
	eventually(t, "the server to notice the drop", func() bool { return n.LocalCount() < before })
}

// nextEvent waits for the next event called name.
func nextEvent(t *testing.T, c *rawclient.Client, name string) rawclient.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %q: %v", name, err)
		}
		if e.Name == name {
			return e
		}
	}
}

func resume(c *rawclient.Client) map[string]any {
	return map[string]any{"pid": c.PID, "offset": c.Offset()}
}

func TestRecoveryLogBoundedAndEvictedOffsetGetsAFreshSession(t *testing.T) {
	const maxBytes = 32 << 10
	var n *sio.Namespace
	ts, s, obs := startOpts(t, sio.Options{RecoveryMaxBytes: maxBytes}, func(s *sio.Server) { n = s.Of("/") })

	// old receives a broadcast, then drops: its offset is the oldest.
	old := dial(t, ts, "/", nil)
	if err := n.To().Emit("tick", "first"); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, old, "tick")
	if old.Offset() == "" || old.PID == "" {
		t.Fatalf("no offset (%q) or pid (%q)", old.Offset(), old.PID)
	}
	drop(t, n, old)

	// A flood of broadcasts, four times the cap: the log stays under it.
	payload := strings.Repeat("x", 500)
	const flood = 4 * maxBytes / 500
	for i := range flood {
		if err := n.To().Emit("tick", payload); err != nil {
			t.Fatal(err)
		}
		if b := s.RecoveryLogBytes(); b > maxBytes {
			t.Fatalf("after %d broadcasts the recovery log holds %d bytes, over its cap of %d", i+1, b, maxBytes)
		}
	}
	kept, bytes := sio.RecoveryLog(n)
	if bytes != s.RecoveryLogBytes() || bytes < maxBytes/2 {
		t.Fatalf("log bytes %d (gauge %d): not the sum of what is kept, or far under the cap %d", bytes, s.RecoveryLogBytes(), maxBytes)
	}
	if ev := obs.count(sio.LimitRecoveryEvict); ev == 0 || ev != 1+flood-kept {
		t.Fatalf("%d evictions counted, want %d (%d broadcasts, %d kept)", ev, 1+flood-kept, 1+flood, kept)
	}

	// recent receives a broadcast after the flood, drops, and misses one.
	recent := dial(t, ts, "/", nil)
	if err := n.To().Emit("tick", "recent"); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, recent, "tick")
	drop(t, n, recent)
	if err := n.To().Emit("missed", "while away"); err != nil {
		t.Fatal(err)
	}

	back := dial(t, ts, "/", resume(old))
	if back.Recovered(old.SID) || back.PID == old.PID {
		t.Fatalf("a session whose offset was evicted was recovered (sid %s, pid %s)", back.SID, back.PID)
	}
	again := dial(t, ts, "/", resume(recent))
	if !again.Recovered(recent.SID) {
		t.Fatalf("a session with a recent offset was not recovered: sid %s, was %s", again.SID, recent.SID)
	}
	if e := nextEvent(t, again, "missed"); len(e.Args) != 1 || string(e.Args[0]) != `"while away"` {
		t.Fatalf("missed event replayed as %v", e.Args)
	}
}

func TestRecoveryReplayOverTheCapGetsAFreshSession(t *testing.T) {
	var n *sio.Namespace
	ts, _, _ := startOpts(t, sio.Options{}, func(s *sio.Server) { n = s.Of("/") })
	atCap, overCap := dial(t, ts, "/", nil), dial(t, ts, "/", nil)
	if err := n.To().Emit("tick", 0); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, atCap, "tick")
	nextEvent(t, overCap, "tick")
	drop(t, n, atCap)
	drop(t, n, overCap)

	// Both miss MaxReplayPackets broadcasts; overCap one more, to its own room.
	for i := range sio.MaxReplayPackets {
		if err := n.To().Emit("tick", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.To(overCap.SID).Emit("tick", "one more"); err != nil {
		t.Fatal(err)
	}

	back := dial(t, ts, "/", resume(overCap))
	if back.Recovered(overCap.SID) {
		t.Fatalf("a session that missed %d packets was recovered (replay capped at %d)", sio.MaxReplayPackets+1, sio.MaxReplayPackets)
	}
	ok := dial(t, ts, "/", resume(atCap))
	if !ok.Recovered(atCap.SID) {
		t.Fatalf("a session that missed exactly %d packets was not recovered", sio.MaxReplayPackets)
	}
}

func TestServerAcksExpire(t *testing.T) {
	conns := make(chan *sio.Conn, 1)
	var n *sio.Namespace
	ts, _, obs := startOpts(t, sio.Options{AckTimeout: 200 * time.Millisecond}, func(s *sio.Server) {
		n = s.Of("/")
		n.OnConnect(func(_ context.Context, c *sio.Conn) { conns <- c })
	})
	cl := dial(t, ts, "/", nil) // never answers
	c := <-conns
	if got := sio.PendingAcks(c); got != -1 {
		t.Fatalf("a connection that was asked no ack keeps ack state (%d)", got)
	}

	// Through the real caller: a broadcast with ack that gives up first.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	bc := n.To(c.ID())
	if res, err := bc.EmitWithAck(ctx, "ask", 1); err == nil || len(res) != 0 {
		t.Fatalf("unanswered broadcast with ack: %v %v", res, err)
	}
	if got := sio.PendingAcks(c); got != 1 {
		t.Fatalf("%d acks pending after the broadcast gave up, want 1 (until AckTimeout)", got)
	}
	// One later, so that the timer must re-arm for it.
	if !sio.EmitWithAck(c, "ask", 2, func([]any) { t.Error("an expired ack was called") }) {
		t.Fatal("emitWithAck refused")
	}
	eventually(t, "the acks to expire", func() bool { return sio.PendingAcks(c) == -1 })
	if got := obs.count(sio.LimitAckExpired); got != 2 {
		t.Fatalf("%d expired acks counted, want 2", got)
	}

	// An answered ack is not counted, and leaves nothing behind.
	ackWithSID(cl)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if res, err := bc.EmitWithAck(ctx2, "ask", 3); err != nil || len(res) != 1 {
		t.Fatalf("answered broadcast with ack: %v %v", res, err)
	}
	if got := sio.PendingAcks(c); got != -1 {
		t.Fatalf("ack state left after the answer: %d", got)
	}
	time.Sleep(300 * time.Millisecond)
	if got := obs.count(sio.LimitAckExpired); got != 2 {
		t.Fatalf("%d expired acks counted, want still 2", got)
	}
}

func TestServerAcksPendingCap(t *testing.T) {
	conns := make(chan *sio.Conn, 1)
	var n *sio.Namespace
	ts, _, obs := startOpts(t, sio.Options{AckTimeout: time.Minute}, func(s *sio.Server) {
		n = s.Of("/")
		n.OnConnect(func(_ context.Context, c *sio.Conn) { conns <- c })
	})
	cl := dial(t, ts, "/", nil) // never answers
	c := <-conns
	for i := range sio.MaxPendingAcks {
		if !sio.EmitWithAck(c, "ask", i, func([]any) {}) {
			t.Fatalf("ack %d refused under the cap", i)
		}
	}
	if sio.EmitWithAck(c, "ask", "over", func([]any) {}) {
		t.Fatalf("ack %d accepted over the cap of %d", sio.MaxPendingAcks+1, sio.MaxPendingAcks)
	}
	if got := sio.PendingAcks(c); got != sio.MaxPendingAcks {
		t.Fatalf("%d acks pending, want %d", got, sio.MaxPendingAcks)
	}
	if got := obs.count(sio.LimitAckExpired); got != 1 {
		t.Fatalf("%d refusals counted, want 1", got)
	}
	// The broadcast with ack counts the refused recipient out: it completes at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res, err := n.To(c.ID()).EmitWithAck(ctx, "ask", "over"); err != nil || len(res) != 0 || ctx.Err() != nil {
		t.Fatalf("broadcast with ack to a capped connection: %v %v", res, err)
	}
	drop(t, n, cl)
	if got := sio.PendingAcks(c); got != -1 {
		t.Fatalf("a closed connection keeps %d pending acks", got)
	}
}

func TestRecoveryOffsetEvictedDuringMiddlewareGetsAFreshSession(t *testing.T) {
	const maxBytes = 16 << 10
	var n *sio.Namespace
	var flooded atomic.Bool
	ts, _, _ := startOpts(t, sio.Options{RecoveryMaxBytes: maxBytes}, func(s *sio.Server) {
		n = s.Of("/")
		// Past take, before registration: the log turns over.
		s.Use(func(_ context.Context, h *sio.Handshake) error {
			if h.Recovered && !flooded.Swap(true) {
				for range 4 * maxBytes / 500 {
					_ = n.To("nobody").Emit("tick", strings.Repeat("x", 500))
				}
			}
			return nil
		})
	})
	c := dial(t, ts, "/", nil)
	if err := n.To().Emit("tick", "first"); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, c, "tick")
	drop(t, n, c)
	if err := n.To().Emit("missed", 1); err != nil {
		t.Fatal(err)
	}
	back := dial(t, ts, "/", resume(c))
	if !flooded.Load() {
		t.Fatal("the middleware did not see a recovery")
	}
	if back.Recovered(c.SID) {
		t.Fatal("recovered although the offset was evicted while the middleware ran")
	}
	select {
	case e := <-back.Events:
		t.Fatalf("a fresh session got %q replayed", e.Name)
	case <-time.After(100 * time.Millisecond):
	}
}
