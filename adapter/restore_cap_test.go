package adapter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/internal/sio"
)

// A restore from the stream replays at most maxRestoreEntries packets to a
// client: one that missed more gets a fresh session, not a partial history.
func TestStreamsRestoreOverTheCapGetsAFreshSession(t *testing.T) {
	srv := redistest.Start(t)
	// The cluster's goroutines may report errors (the closed client) after
	// the test: log only until then.
	var logMu sync.Mutex
	over := false
	t.Cleanup(func() { // runs last
		logMu.Lock()
		over = true
		logMu.Unlock()
	})
	onError := func(err error) {
		logMu.Lock()
		defer logMu.Unlock()
		if !over {
			t.Logf("streams: %v", err)
		}
	}
	c := NewRedisStreamsCluster(testClient(t, srv.Addr), testClient(t, srv.Addr), StreamsOptions{
		Prefix: testPrefix(t), MaxLen: 4 * maxRestoreEntries, // the offsets stay in the stream
		HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second,
		OnError: onError,
	})
	s := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second, Cluster: c})
	ns := s.Of("/")
	runCluster(t, c.Run)
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	waitFor(t, 5*time.Second, "the cluster is reading", c.Healthy)

	dial := func(auth any) *rawclient.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cl, err := rawclient.Dial(ctx, ts.URL, "/socket.io/", "/", auth, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	atCap, overCap, watcher := dial(nil), dial(nil), dial(nil)
	// Healthy says the cluster reads; its first XREAD (from "$") may still be
	// on its way, so tick until both clients have an offset.
	waitFor(t, 5*time.Second, "both got an offset", func() bool {
		if err := ns.To().Emit("tick", 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		return atCap.Offset() != "" && overCap.Offset() != ""
	})
	time.Sleep(200 * time.Millisecond) // a tick still on its way must not count as missed
	atCap.Close()
	overCap.Close()
	waitFor(t, 5*time.Second, "the server let both go", func() bool { return ns.LocalCount() == 1 })

	for i := range maxRestoreEntries {
		if err := ns.To().Except(watcher.SID).Emit("tick", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.To(overCap.SID).Emit("tick", "one more"); err != nil {
		t.Fatal(err)
	}
	// A restore replays what this node delivered; the rest comes live. Wait
	// until it delivered everything, so that the replay is what is counted.
	if err := ns.To(watcher.SID).Emit("sync", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		e, err := watcher.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the node to deliver the broadcasts: %v", err)
		}
		if e.Name == "sync" {
			break
		}
	}
	resume := func(cl *rawclient.Client) map[string]any { return map[string]any{"pid": cl.PID, "offset": cl.Offset()} }

	back := dial(resume(overCap))
	if back.Recovered(overCap.SID) {
		t.Fatalf("a session that missed %d packets was restored (cap %d)", maxRestoreEntries+1, maxRestoreEntries)
	}
	ok := dial(resume(atCap))
	if !ok.Recovered(atCap.SID) {
		t.Fatalf("a session that missed exactly %d packets was not restored", maxRestoreEntries)
	}
	if e, err := ok.Next(ctx); err != nil || e.Name != "tick" {
		t.Fatalf("no replay: %v %v", e, err)
	}
}
