package sio

import (
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eio"
)

// addText adds a broadcast of n bytes of text to r and returns its offset.
func addText(r *recoveryStore, n int) string {
	var offset string
	r.add(BroadcastOpts{}, func(off string) []*eio.Message {
		offset = off
		b := make([]byte, n)
		for i := range b {
			b[i] = 'x'
		}
		return []*eio.Message{eio.TextMessage(b)}
	})
	return offset
}

func persistSession(r *recoveryStore, pid string) {
	r.persist(Session{Sid: "sid-" + pid, Pid: pid, Rooms: []string{"sid-" + pid}})
}

func TestRecoveryStoreBytesCap(t *testing.T) {
	one := int64(eio.TextMessage(make([]byte, 100)).Size())
	evictions := 0
	r := newRecoveryStore(time.Minute, 3*one, func() { evictions++ })
	var offsets []string
	for range 5 {
		offsets = append(offsets, addText(r, 100))
		if r.size() > 3*one {
			t.Fatalf("store holds %d bytes, over its cap of %d", r.size(), 3*one)
		}
	}
	if r.size() != 3*one || len(r.kept()) != 3 || evictions != 2 {
		t.Fatalf("store holds %d bytes in %d packets after %d evictions; want %d, 3, 2", r.size(), len(r.kept()), evictions, 3*one)
	}
	persistSession(r, "old")
	persistSession(r, "recent")
	if s, _ := r.take("old", offsets[1]); s != nil {
		t.Fatal("a session whose offset was evicted was taken")
	}
	s, after := r.take("recent", offsets[2])
	if s == nil {
		t.Fatal("a session whose offset is kept was not taken")
	}
	if missed, ok := r.missed(s.Rooms, after); !ok || len(missed) != 2 {
		t.Fatalf("missed: %d packets, complete %v; want 2, true", len(missed), ok)
	}

	// What no longer holds its offset is incomplete, even after a take.
	persistSession(r, "late")
	s, after = r.take("late", offsets[2])
	if s == nil {
		t.Fatal("not taken")
	}
	for range 3 {
		addText(r, 100)
	}
	if _, ok := r.missed(s.Rooms, after); ok {
		t.Fatal("missed reported complete although the offset was evicted since take")
	}

	// A packet over the cap by itself is not kept.
	addText(r, int(4*one))
	if r.size() != 0 || len(r.kept()) != 0 {
		t.Fatalf("an oversize packet left %d bytes, %d packets", r.size(), len(r.kept()))
	}
}

func TestRecoveryStoreUncappedAndWindow(t *testing.T) {
	evictions := 0
	r := newRecoveryStore(40*time.Millisecond, -1, func() { evictions++ })
	first := addText(r, 1000)
	for range 100 {
		addText(r, 1000)
	}
	if len(r.kept()) != 101 || evictions != 0 {
		t.Fatalf("uncapped store kept %d packets, evicted %d", len(r.kept()), evictions)
	}
	persistSession(r, "p")
	time.Sleep(60 * time.Millisecond)
	last := addText(r, 10)
	if len(r.kept()) != 1 || r.size() != int64(eio.TextMessage(make([]byte, 10)).Size()) || evictions != 0 {
		t.Fatalf("after the window: %d packets, %d bytes, %d evictions; want the last one only, none counted", len(r.kept()), r.size(), evictions)
	}
	persistSession(r, "q")
	if s, _ := r.take("q", first); s != nil {
		t.Fatal("an expired offset recovered")
	}
	if len(r.sessions) != 0 {
		t.Fatalf("%d sessions kept past the window", len(r.sessions))
	}
	persistSession(r, "q")
	if s, _ := r.take("q", last); s == nil {
		t.Fatal("a recent offset did not recover")
	}
}

func TestRecoveryStoreSessionsCap(t *testing.T) {
	evictions := 0
	r := newRecoveryStore(time.Minute, -1, func() { evictions++ })
	r.maxSessions = 3
	offset := addText(r, 10)
	for i := range 5 {
		persistSession(r, "p"+strconv.Itoa(i))
	}
	if len(r.sessions) != 3 || evictions != 2 {
		t.Fatalf("%d sessions kept, %d evicted; want 3, 2", len(r.sessions), evictions)
	}
	if s, _ := r.take("p1", offset); s != nil {
		t.Fatal("an evicted session was recovered")
	}
	if s, _ := r.take("p4", offset); s == nil {
		t.Fatal("a kept session was not recovered")
	}
	// Sessions persisted and taken leave no unbounded trail.
	for i := range 10000 {
		pid := "c" + strconv.Itoa(i)
		persistSession(r, pid)
		if s, _ := r.take(pid, offset); s == nil {
			t.Fatal("not recovered")
		}
	}
	if len(r.order)-r.head > 2*len(r.sessions)+64 || cap(r.order) > 1024 {
		t.Fatalf("persist order holds %d entries (capacity %d) for %d sessions", len(r.order)-r.head, cap(r.order), len(r.sessions))
	}
	if evictions != 2 {
		t.Fatalf("%d evictions, want still 2", evictions)
	}
}
