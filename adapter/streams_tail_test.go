package adapter

import (
	"fmt"
	"strings"
	"testing"
)

func tailIDs(t *streamTail) []string {
	var out []string
	for _, e := range t.list {
		out = append(out, e.id)
	}
	return out
}

func TestStreamTailBoundedByEntries(t *testing.T) {
	tl := &streamTail{maxEntries: 3, maxBytes: 1 << 20}
	for i := 1; i <= 5; i++ {
		tl.add(tailEntry{id: fmt.Sprintf("1-%d", i), nsp: "/", data: []any{"m", i}})
	}
	if got := strings.Join(tailIDs(tl), " "); got != "1-3 1-4 1-5" {
		t.Fatalf("kept %q, want the 3 newest", got)
	}
	if _, _, ok := tl.after("1-2", "/", map[string]bool{}); ok {
		t.Error("an evicted offset was found in the tail")
	}
	missed, ids, ok := tl.after("1-3", "/", map[string]bool{})
	if !ok || len(missed) != 2 || strings.Join(ids, " ") != "1-4 1-5" {
		t.Fatalf("after 1-3: %v %v %v", missed, ids, ok)
	}
	// Each replayed packet is its data with its id appended, in a new array.
	if got := fmt.Sprint(missed[0]); got != "[m 4 1-4]" {
		t.Errorf("first replayed packet %s", got)
	}
	if len(tl.list[1].data) != 2 {
		t.Error("the replay changed the tail's data")
	}
}

func TestStreamTailBoundedByBytes(t *testing.T) {
	big := strings.Repeat("x", 1000)
	tl := &streamTail{maxEntries: 1000, maxBytes: 3500}
	for i := 1; i <= 10; i++ {
		tl.add(tailEntry{id: fmt.Sprintf("1-%d", i), nsp: "/", data: []any{big}})
	}
	if n := len(tl.list); n != 3 {
		t.Fatalf("kept %d entries of ~1.1 kB under 3500 bytes, want 3", n)
	}
	if tl.bytes > tl.maxBytes || int64(tl.bytes) != tl.bytesNow.Load() {
		t.Errorf("bytes %d (gauge %d), bound %d", tl.bytes, tl.bytesNow.Load(), tl.maxBytes)
	}
	// One entry over the whole bound: nothing older may stay (it would
	// leave a gap after it).
	tl.add(tailEntry{id: "1-11", nsp: "/", data: []any{strings.Repeat("y", 4000)}})
	if len(tl.list) != 0 || tl.bytesNow.Load() != 0 {
		t.Errorf("after an entry over the bound: %v, %d bytes", tailIDs(tl), tl.bytesNow.Load())
	}
	off := &streamTail{maxEntries: 10, maxBytes: -1}
	off.add(tailEntry{id: "1-1", nsp: "/"})
	if len(off.list) != 0 {
		t.Error("a disabled tail kept an entry")
	}
}

// This node's own broadcasts pass a held inbox, so the loop may deliver an
// id before older ones: the tail keeps stream order.
func TestStreamTailKeepsStreamOrder(t *testing.T) {
	tl := &streamTail{maxEntries: 10, maxBytes: 1 << 20}
	for _, id := range []string{"5-0", "9-0", "7-0", "10-0", "7-0", "6-3"} {
		tl.add(tailEntry{id: id, nsp: "/"})
	}
	if got := strings.Join(tailIDs(tl), " "); got != "5-0 6-3 7-0 9-0 10-0" {
		t.Fatalf("order %q", got)
	}
}

func TestStreamTailAfterSelects(t *testing.T) {
	tl := &streamTail{maxEntries: 10, maxBytes: 1 << 20}
	add := func(id, nsp string, o wireOpts) { tl.add(tailEntry{id: id, nsp: nsp, data: []any{"e", id}, opts: o}) }
	add("1-0", "/", wireOpts{})
	add("2-0", "/", wireOpts{Rooms: []string{"a"}})
	add("3-0", "/other", wireOpts{})
	add("4-0", "/", wireOpts{Rooms: []string{"b"}})
	add("5-0", "/", wireOpts{Except: []string{"a"}})
	add("6-0", "/", wireOpts{Rooms: []string{"a", "b"}})
	_, ids, ok := tl.after("1-0", "/", map[string]bool{"sid": true, "a": true})
	if !ok || strings.Join(ids, " ") != "2-0 6-0" {
		t.Fatalf("a socket in room a missed %v (ok %v), want 2-0 6-0", ids, ok)
	}
	tl.reset()
	if _, _, ok := tl.after("1-0", "/", nil); ok || tl.bytesNow.Load() != 0 {
		t.Error("reset kept the tail")
	}
}
