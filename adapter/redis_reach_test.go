package adapter

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/internal/sio"
)

// A publish that reaches fewer servers than a moment ago (one's
// subscription is down) is counted: that server missed it.
func TestRedisShortPublishesCounted(t *testing.T) {
	r := redistest.Start(t)
	prefix := testPrefix(t)
	a := NewRedisCluster(testClient(t, r.Addr), prefix, quietLog(t))
	la := a.Attach("/", newFakeLocal())
	runCluster(t, a.Run)
	b := NewRedisCluster(testClient(t, r.Addr), prefix, quietLog(t))
	b.Attach("/", newFakeLocal())
	ctx, stopB := context.WithCancel(context.Background())
	bDone := make(chan struct{})
	go func() { defer close(bDone); b.Run(ctx) }()
	t.Cleanup(func() { stopB(); <-bDone })
	waitFor(t, 5*time.Second, "both subscribed", func() bool {
		n, err := testClient(t, r.Addr).PubSubNumSub(tctx(t, time.Second), prefix+"-request#/#").Result()
		return err == nil && n[prefix+"-request#/#"] == 2
	})
	p := sio.Packet{Type: 2, Nsp: "/", Data: []any{"m", 1}}
	once := la.(sio.OnceLink)
	if !la.Publish(p, sio.BroadcastOpts{}) {
		t.Fatal("publish failed")
	}
	if _, err := once.PublishOnce(p, sio.BroadcastOpts{Rooms: []string{"R"}}, sio.Once{Key: "k1", Value: []byte(`{}`), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if n := a.ShortPublishes(); n != 0 {
		t.Fatalf("%d short publishes while both servers listen", n)
	}
	stopB() // B goes deaf
	<-bDone
	waitFor(t, 5*time.Second, "B unsubscribed", func() bool {
		n, err := testClient(t, r.Addr).PubSubNumSub(tctx(t, time.Second), prefix+"-request#/#").Result()
		return err == nil && n[prefix+"-request#/#"] == 1
	})
	if !la.Publish(p, sio.BroadcastOpts{}) {
		t.Fatal("publish failed")
	}
	if _, err := once.PublishOnce(p, sio.BroadcastOpts{Rooms: []string{"R"}}, sio.Once{Key: "k2", Value: []byte(`{}`), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if n := a.ShortPublishes(); n != 2 {
		t.Fatalf("%d short publishes counted with B deaf, want 2", n)
	}
}
