package adapter

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/internal/sio"
)

// PublishOnce publishes a key's first message only, on both adapters; the
// entry is RedisDedupe's (same key, same value, with its ttl).
func TestPublishOnce(t *testing.T) {
	r := redistest.Start(t)
	for _, k := range clusterKinds() {
		t.Run(k.name, func(t *testing.T) {
			nodes := startNodes(t, k, r.Addr, 2)
			a, b := nodes[0], nodes[1]
			b.local.add("b1", "R")
			ol, ok := a.link.(sio.OnceLink)
			if !ok {
				t.Fatalf("%s link is not a sio.OnceLink", k.name)
			}
			pub := func(key, text string) []byte {
				t.Helper()
				p := sio.Packet{Type: 2, Nsp: "/", Data: []any{"message", text}}
				prev, err := ol.PublishOnce(p, sio.BroadcastOpts{Rooms: []string{"R"}}, sio.Once{Key: key, Value: []byte(`{"id":"` + text + `","ts":1}`), TTL: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				return prev
			}
			if prev := pub("u\x00k1", "first"); prev != nil {
				t.Fatalf("first publish answered duplicate %s", prev)
			}
			if prev := pub("u\x00k1", "retry"); string(prev) != `{"id":"first","ts":1}` {
				t.Fatalf("retry: prev %q, want the first entry", prev)
			}
			if prev := pub("u\x00k2", "other"); prev != nil {
				t.Fatalf("another key answered duplicate %s", prev)
			}
			waitFor(t, 5*time.Second, "b1 gets both messages", func() bool { return len(b.local.events("b1")) >= 2 })
			time.Sleep(100 * time.Millisecond) // a third would come by now
			if got := b.local.events("b1"); len(got) != 2 || got[0] != "message:first" || got[1] != "message:other" {
				t.Fatalf("b1 got %v, want the first and the other, once each", got)
			}
			// The same entry a RedisDedupe claim sees.
			d := NewRedisDedupe(testClient(t, r.Addr), prefixOf(t, a.link), nil)
			got, dup, err := d.Claim(tctx(t, time.Second), "u\x00k1", Accepted{ID: "x"}, time.Minute)
			if err != nil || !dup || got.ID != "first" {
				t.Fatalf("RedisDedupe sees %+v dup %v err %v, want the published entry", got, dup, err)
			}
			ttl, err := testClient(t, r.Addr).PTTL(tctx(t, time.Second), onceKey(prefixOf(t, a.link), "u\x00k1")).Result()
			if err != nil || ttl <= 0 || ttl > time.Minute {
				t.Fatalf("entry ttl %v (%v), want (0, 1m]", ttl, err)
			}
		})
	}
}

func prefixOf(t *testing.T, l sio.Link) string {
	switch x := l.(type) {
	case *redisLink:
		return x.r.prefix
	case *streamLink:
		return x.r.stream
	}
	t.Fatalf("link %T", l)
	return ""
}

// A publish no server hears (every subscription down, this node's included)
// reached nobody: it is refused, and PublishOnce leaves no entry, so that the
// retry with the same key is delivered, not answered duplicate.
func TestPublishHeardByNobodyIsRefused(t *testing.T) {
	r := redistest.Start(t)
	k := clusterKinds()[0] // pub/sub
	nodes := startNodes(t, k, r.Addr, 1)
	real := nodes[0].link.(*redisLink)
	deaf := &redisLink{r: real.r, nsp: real.nsp, local: real.local, channel: "nobody-listens#"} // outside every subscription
	p := sio.Packet{Type: 2, Nsp: "/", Data: []any{"message", "x"}}
	opts := sio.BroadcastOpts{Rooms: []string{"R"}}
	if deaf.Publish(p, opts) {
		t.Fatal("a publish heard by no server was taken")
	}
	prev, err := deaf.PublishOnce(p, opts, sio.Once{Key: "u\x00deaf", Value: []byte(`{"id":"x"}`), TTL: time.Minute})
	if !errors.Is(err, errNoReceivers) || prev != nil {
		t.Fatalf("PublishOnce heard by nobody: prev %q err %v, want errNoReceivers", prev, err)
	}
	if n, err := testClient(t, r.Addr).Exists(tctx(t, time.Second), onceKey(prefixOf(t, nodes[0].link), "u\x00deaf")).Result(); err != nil || n != 0 {
		t.Fatalf("the entry of a refused publish exists (%d, %v)", n, err)
	}
	if !deaf.r.healthy.Load() {
		t.Fatal("a publish nobody heard marked Redis unhealthy")
	}
	// The real channel is heard (by this node): taken.
	if !nodes[0].link.(*redisLink).Publish(p, opts) {
		t.Fatal("a publish on the namespace's channel was refused")
	}
}
