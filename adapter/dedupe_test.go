package adapter

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestMemoryDedupeMaxEntries(t *testing.T) {
	ctx := context.Background()
	d := NewMemoryDedupe()
	evictions := 0
	d.SetMaxEntries(3, func() { evictions++ })
	for i := range 5 {
		k := "k" + strconv.Itoa(i)
		if _, dup, _ := d.Claim(ctx, k, Accepted{ID: k}, time.Hour); dup {
			t.Fatalf("%s: duplicate on first claim", k)
		}
	}
	if d.Len() != 3 || evictions != 2 {
		t.Fatalf("%d entries after %d evictions, want 3 and 2", d.Len(), evictions)
	}
	if got, dup, _ := d.Claim(ctx, "k4", Accepted{ID: "again"}, time.Hour); !dup || got.ID != "k4" {
		t.Fatalf("a kept entry was not a duplicate: %v %v", got, dup)
	}
	if got, dup, _ := d.Claim(ctx, "k0", Accepted{ID: "again"}, time.Hour); dup || got.ID != "again" {
		t.Fatalf("the oldest entry was not forgotten: %v %v", got, dup)
	}
	// k0's claim evicted k2, the oldest left (k1 went with k0 before).
	if evictions != 3 {
		t.Fatalf("%d evictions, want 3", evictions)
	}
	if _, dup, _ := d.Claim(ctx, "k2", Accepted{}, time.Hour); dup {
		t.Fatal("k2 should have been forgotten")
	}

	// Many more: the bound holds and the order does not grow with them.
	for i := range 10000 {
		k := "m" + strconv.Itoa(i)
		d.Claim(ctx, k, Accepted{ID: k}, time.Hour)
	}
	if d.Len() != 3 || len(d.order)-d.head > 3+65 || len(d.order) > 2*(3+65) {
		t.Fatalf("%d entries, order %d (head %d)", d.Len(), len(d.order), d.head)
	}
}

func TestMemoryDedupeUnbounded(t *testing.T) {
	ctx := context.Background()
	d := NewMemoryDedupe()
	for i := range 1000 {
		d.Claim(ctx, strconv.Itoa(i), Accepted{}, time.Hour)
	}
	if d.Len() != 1000 {
		t.Fatalf("%d entries, want 1000 (no bound by default)", d.Len())
	}
}
