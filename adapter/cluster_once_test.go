package adapter

import (
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
