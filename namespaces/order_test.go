package namespaces_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/adapter"
	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
	"github.com/switchboard/switchboard/namespaces"
)

// fakeCluster stands for Redis: a published broadcast comes back to this
// node (Deliver) as the redis adapter's does, after the room's delay; while
// down, or for the failures asked for with failNext, it is not published.
type fakeCluster struct {
	mu        sync.Mutex
	down      bool
	failNext  int                      // publishes that fail (after their delay) before the next succeeds
	delay     map[string]time.Duration // per room
	published atomic.Int64
}

func newFakeCluster() *fakeCluster { return &fakeCluster{delay: map[string]time.Duration{}} }

func (f *fakeCluster) Attach(_ string, local sio.Local) sio.Link {
	return &fakeLink{f: f, local: local}
}

func (f *fakeCluster) set(fn func(f *fakeCluster)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type fakeLink struct {
	f     *fakeCluster
	local sio.Local
}

func (l *fakeLink) Publish(p sio.Packet, opts sio.BroadcastOpts) bool {
	// A socket's own room is delivered by the node itself (as the redis adapter).
	if len(opts.Rooms) == 1 && len(opts.Except) == 0 && l.local.HasSocket(opts.Rooms[0]) {
		return false
	}
	l.f.mu.Lock()
	var d time.Duration
	for _, r := range opts.Rooms {
		d = max(d, l.f.delay[r])
	}
	l.f.mu.Unlock()
	time.Sleep(d)
	l.f.mu.Lock()
	fail := l.f.down || l.f.failNext > 0
	if l.f.failNext > 0 {
		l.f.failNext--
	}
	l.f.mu.Unlock()
	if fail {
		return false
	}
	l.f.published.Add(1)
	l.local.Deliver(p, opts)
	return true
}

func (l *fakeLink) Close() {}

// slowDedupe is a MemoryDedupe whose claims take delay(key) first.
type slowDedupe struct {
	*adapter.MemoryDedupe
	delay func(key string) time.Duration
}

func (d slowDedupe) Claim(ctx context.Context, key string, v adapter.Accepted, ttl time.Duration) (adapter.Accepted, bool, error) {
	select {
	case <-time.After(d.delay(key)):
	case <-ctx.Done():
		return adapter.Accepted{}, false, ctx.Err()
	}
	return d.MemoryDedupe.Claim(ctx, key, v, ttl)
}

// sameStripe is a room that the 64 FNV-1a lock stripes rooms.go used before
// put with room: with a shared stripe, the two would wait on each other.
func sameStripe(t *testing.T, room string) string {
	t.Helper()
	stripe := func(s string) uint32 {
		h := uint32(2166136261)
		for i := 0; i < len(s); i++ {
			h ^= uint32(s[i])
			h *= 16777619
		}
		return h % 64
	}
	for i := range 10000 {
		if c := "other-" + strconv.Itoa(i); stripe(c) == stripe(room) {
			return c
		}
	}
	t.Fatal("no room on the same stripe")
	return ""
}

func send(c *rawclient.Client, room, text, clientID string) <-chan json.RawMessage {
	m := map[string]any{"roomId": room, "text": text}
	if clientID != "" {
		m["clientId"] = clientID
	}
	ch, _ := c.EmitAck("message", m)
	return ch
}

func wait(t *testing.T, ch <-chan json.RawMessage, d time.Duration) reply {
	t.Helper()
	select {
	case raw := <-ch:
		var r reply
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("ack %s: %v", raw, err)
		}
		return r
	case <-time.After(d):
		t.Fatalf("no ack within %v", d)
		return reply{}
	}
}

// messages is what c received within d: the texts of message events.
func messages(c *rawclient.Client, d time.Duration) []Msg {
	var out []Msg
	for _, e := range events(c, d) {
		if e.Name == "message" {
			var m Msg
			_ = json.Unmarshal(e.Args[0], &m)
			out = append(out, m)
		}
	}
	return out
}

type Msg struct{ ID, RoomID, Text, ClientID string }

// A slow Redis call (dedupe claim or publish) for one room does not delay a
// message to another room, even one the old lock stripes put with it.
func TestSlowRoomDoesNotDelayOtherRooms(t *testing.T) {
	const slowRoom = "slow-a"
	other := sameStripe(t, slowRoom)
	for _, slow := range []string{"claim", "publish"} {
		t.Run(slow, func(t *testing.T) {
			f := newFakeCluster()
			cfg := namespaces.RoomsConfig{}
			if slow == "claim" {
				cfg.Dedupe = slowDedupe{adapter.NewMemoryDedupe(), func(key string) time.Duration {
					if strings.HasSuffix(key, "\x00slow") {
						return 500 * time.Millisecond
					}
					return 0
				}}
			} else {
				f.delay[slowRoom] = 500 * time.Millisecond
			}
			url, _ := startOpts(t, sio.Options{Cluster: f}, cfg)
			a, b := connect(t, url, "a"), connect(t, url, "b")
			call(t, a, "join-room", slowRoom)
			call(t, b, "join-room", other)
			events(a, 50*time.Millisecond)

			start := time.Now()
			slowAck := send(a, slowRoom, "slow", "slow")
			time.Sleep(50 * time.Millisecond) // a's message is in its slow call
			bStart := time.Now()
			r := wait(t, send(b, other, "fast", "fast"), 2*time.Second)
			if el := time.Since(bStart); !r.OK || el > 100*time.Millisecond {
				t.Fatalf("message to %s while %s's %s is slow: %+v after %v, want ok within 100ms", other, slowRoom, slow, r, el)
			}
			if r := wait(t, slowAck, 3*time.Second); !r.OK || time.Since(start) < 450*time.Millisecond {
				t.Fatalf("slow message: %+v after %v", r, time.Since(start))
			}
		})
	}
}

// Messages of one room are delivered in the order they were accepted
// (their ids' sequence), however long each one's dedupe claim takes, and
// every member sees the same order.
func TestRoomOrderUnderConcurrentSlowClaims(t *testing.T) {
	var rnd sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	d := slowDedupe{adapter.NewMemoryDedupe(), func(string) time.Duration {
		rnd.Lock()
		defer rnd.Unlock()
		return time.Duration(rng.IntN(15)) * time.Millisecond
	}}
	url, rooms := startOpts(t, sio.Options{Cluster: newFakeCluster()}, namespaces.RoomsConfig{Dedupe: d})
	const senders, perSender = 6, 24
	var clients []*rawclient.Client
	for i := range senders {
		c := connect(t, url, "s"+strconv.Itoa(i))
		call(t, c, "join-room", "x")
		call(t, c, "join-room", "y")
		clients = append(clients, c)
	}
	readers := []*rawclient.Client{connect(t, url, "r1"), connect(t, url, "r2")}
	for _, r := range readers {
		call(t, r, "join-room", "x")
		call(t, r, "join-room", "y")
	}
	for _, c := range append(clients, readers...) {
		events(c, 50*time.Millisecond)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for si, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var acks []<-chan json.RawMessage
			for i := range perSender {
				room := []string{"x", "y"}[i%2]
				acks = append(acks, send(c, room, fmt.Sprintf("%d-%d", si, i), fmt.Sprintf("c%d-%d", si, i)))
			}
			for _, ch := range acks {
				select {
				case raw := <-ch:
					if !strings.Contains(string(raw), `"ok":true`) {
						failed.Add(1)
					}
				case <-time.After(10 * time.Second):
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d messages not acknowledged ok", n)
	}
	seqOf := func(id string) uint64 {
		n, err := strconv.ParseUint(id[strings.LastIndexByte(id, '-')+1:], 36, 64)
		if err != nil {
			t.Fatalf("id %q", id)
		}
		return n
	}
	var orders [2]map[string][]string
	for ri, r := range readers {
		orders[ri] = map[string][]string{}
		deadline := time.Now().Add(10 * time.Second)
		for n := 0; n < senders*perSender && time.Now().Before(deadline); {
			for _, m := range messages(r, 100*time.Millisecond) {
				orders[ri][m.RoomID] = append(orders[ri][m.RoomID], m.ID)
				n++
			}
		}
		for room, ids := range orders[ri] {
			if len(ids) != senders*perSender/2 {
				t.Fatalf("reader %d: %d messages in %s, want %d: %v", ri, len(ids), room, senders*perSender/2, ids)
			}
			for i := 1; i < len(ids); i++ {
				if seqOf(ids[i]) <= seqOf(ids[i-1]) {
					t.Fatalf("reader %d, room %s: %s delivered after %s, accepted before it", ri, room, ids[i], ids[i-1])
				}
			}
		}
	}
	for _, room := range []string{"x", "y"} {
		if strings.Join(orders[0][room], ",") != strings.Join(orders[1][room], ",") {
			t.Fatalf("readers disagree on the order of room %s", room)
		}
	}
	if n := rooms.Lines(); n != 0 {
		t.Fatalf("%d room lines left with no message in flight", n)
	}
}

// While the cluster cannot take a message, its sender gets unavailable and
// nobody gets the message, this node included; the retry with the same
// clientId once the cluster is back is delivered once, not "duplicate".
func TestUnavailableClusterIsAnsweredAndRetryDelivers(t *testing.T) {
	f := newFakeCluster()
	var errs []error
	var mu sync.Mutex
	url, _ := startOpts(t, sio.Options{Cluster: f}, namespaces.RoomsConfig{OnError: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}})
	a, b := connect(t, url, "a"), connect(t, url, "b")
	call(t, a, "join-room", "r")
	call(t, b, "join-room", "r")
	events(a, 50*time.Millisecond)

	f.set(func(f *fakeCluster) { f.down = true })
	if r := call(t, a, "message", map[string]any{"roomId": "r", "text": "hi", "clientId": "k1"}); code(r) != "unavailable" {
		t.Fatalf("message while the cluster is down: %+v, want unavailable", r)
	}
	if r := call(t, a, "message", map[string]any{"roomId": "r", "text": "no clientId"}); code(r) != "unavailable" {
		t.Fatalf("message without clientId while the cluster is down: %+v, want unavailable", r)
	}
	// Presence notifications are not sent either; the join itself stands.
	c := connect(t, url, "c")
	if r := call(t, c, "join-room", "r"); !r.OK {
		t.Fatalf("join while the cluster is down: %+v", r)
	}
	for _, cl := range []*rawclient.Client{a, b} {
		if got := events(cl, 200*time.Millisecond); len(got) != 0 {
			t.Fatalf("delivered while the cluster is down: %v", names(got))
		}
	}
	mu.Lock()
	if len(errs) != 1 || !errors.Is(errs[0], sio.ErrUnavailable) || !strings.Contains(errs[0].Error(), "user-joined") {
		t.Fatalf("OnError got %v, want one user-joined not sent", errs)
	}
	mu.Unlock()

	f.set(func(f *fakeCluster) { f.down = false })
	r := call(t, a, "message", map[string]any{"roomId": "r", "text": "hi", "clientId": "k1"})
	if !r.OK || r.Duplicate {
		t.Fatalf("retry once the cluster is back: %+v, want delivered (not duplicate)", r)
	}
	again := call(t, a, "message", map[string]any{"roomId": "r", "text": "hi", "clientId": "k1"})
	if !again.Duplicate || again.ID != r.ID {
		t.Fatalf("second retry %+v, want duplicate of %s", again, r.ID)
	}
	for _, cl := range []*rawclient.Client{a, b, c} {
		got := messages(cl, 200*time.Millisecond)
		if len(got) != 1 || got[0].ID != r.ID || got[0].ClientID != "k1" {
			t.Fatalf("after the retry: %+v, want the message once", got)
		}
	}
}

// A retry over another connection while the first attempt is still
// publishing waits for its outcome: when that attempt fails, the retry is
// delivered rather than answered "duplicate" for a message nobody got.
func TestRetryDuringFailingAttemptIsNotDuplicate(t *testing.T) {
	f := newFakeCluster()
	url, _ := startOpts(t, sio.Options{Cluster: f}, namespaces.RoomsConfig{})
	tab1, tab2, b := connect(t, url, "alice"), connect(t, url, "alice"), connect(t, url, "b")
	for _, c := range []*rawclient.Client{tab1, tab2, b} {
		call(t, c, "join-room", "r")
	}
	events(tab1, 50*time.Millisecond)
	events(tab2, 50*time.Millisecond)
	events(b, 50*time.Millisecond)
	f.set(func(f *fakeCluster) {
		f.delay["r"] = 300 * time.Millisecond
		f.failNext = 1
	})
	first := send(tab1, "r", "hello", "k2")
	time.Sleep(50 * time.Millisecond) // the first attempt is publishing
	retry := send(tab2, "r", "hello", "k2")
	if r := wait(t, first, 3*time.Second); code(r) != "unavailable" {
		t.Fatalf("first attempt: %+v, want unavailable", r)
	}
	r := wait(t, retry, 3*time.Second)
	if !r.OK || r.Duplicate {
		t.Fatalf("retry: %+v, want delivered, not duplicate", r)
	}
	got := messages(b, 500*time.Millisecond)
	if len(got) != 1 || got[0].ID != r.ID {
		t.Fatalf("member got %+v, want the message once", got)
	}
}
