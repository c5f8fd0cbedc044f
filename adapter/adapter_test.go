package adapter

import (
	"context"
	"testing"
	"time"
)

func TestMemoryDedupeWindow(t *testing.T) {
	ctx := context.Background()
	clock := time.Unix(1000, 0)
	d := NewMemoryDedupe()
	d.now = func() time.Time { return clock }
	first := Accepted{ID: "1", TS: 1}
	if got, dup, _ := d.Claim(ctx, "k", first, time.Minute); dup || got != first {
		t.Fatalf("first claim: %v %v", got, dup)
	}
	clock = clock.Add(59 * time.Second)
	if got, dup, _ := d.Claim(ctx, "k", Accepted{ID: "2"}, time.Minute); !dup || got != first {
		t.Fatalf("claim within the window: %v %v, want the first entry", got, dup)
	}
	clock = clock.Add(2 * time.Second)
	if got, dup, _ := d.Claim(ctx, "k", Accepted{ID: "3"}, time.Minute); dup || got.ID != "3" {
		t.Fatalf("claim after the window: %v %v", got, dup)
	}
	// Eviction keeps the store bounded by the window.
	for i := range 1000 {
		clock = clock.Add(time.Second)
		d.Claim(ctx, string(rune(i)), Accepted{}, 10*time.Second)
	}
	if n := d.Len(); n > 11 {
		t.Fatalf("%d live entries, want <= 11", n)
	}
	if len(d.order)-d.head > 11 || cap(d.order) > 4096 {
		t.Fatalf("order queue not compacted: len %d head %d cap %d", len(d.order), d.head, cap(d.order))
	}
}

func TestMemoryPresence(t *testing.T) {
	ctx := context.Background()
	p := NewMemoryPresence()
	if first, _ := p.Join(ctx, "r", "u", "U", "c1"); !first {
		t.Fatal("first connection not first")
	}
	if first, _ := p.Join(ctx, "r", "u", "U", "c2"); first {
		t.Fatal("second connection reported first")
	}
	p.Join(ctx, "r", "a", "A", "c3")
	m, _ := p.Members(ctx, "r")
	if len(m) != 2 || m[0] != (Member{"a", "A", 1}) || m[1] != (Member{"u", "U", 2}) {
		t.Fatalf("members = %+v", m)
	}
	if last, _ := p.Leave(ctx, "r", "u", "c1"); last {
		t.Fatal("leaving with a tab left reported last")
	}
	if last, _ := p.Leave(ctx, "r", "u", "nope"); last {
		t.Fatal("unknown connection reported last")
	}
	if last, _ := p.Leave(ctx, "r", "u", "c2"); !last {
		t.Fatal("last connection not last")
	}
	p.Leave(ctx, "r", "a", "c3")
	if p.RoomCount() != 0 {
		t.Fatalf("empty room kept: %d", p.RoomCount())
	}
	for i, want := range []bool{true, true, false} {
		if ok, _ := p.AddConnection(ctx, "u", string(rune('a'+i)), 2); ok != want {
			t.Fatalf("AddConnection %d = %v, want %v", i, ok, want)
		}
	}
	p.RemoveConnection(ctx, "u", "a")
	if ok, _ := p.AddConnection(ctx, "u", "z", 2); !ok {
		t.Fatal("slot not released")
	}
}
