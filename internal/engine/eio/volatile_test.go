package eio

import (
	"testing"
	"time"
)

func TestSendVolatileDropsUnlessWritable(t *testing.T) {
	e := newEnv(t)
	// WebSocket: idle, it is sent; behind a backlog it is dropped.
	c, _, r := e.openWS("")
	waitFor(t, "the open packet written", func() bool {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return r.s.writableLocked()
	})
	if !r.s.SendVolatile(TextMessage([]byte("idle"))) {
		t.Fatal("a volatile message to an idle WebSocket was dropped")
	}
	if got := c.text(); got != "4idle" {
		t.Fatalf("got %q", got)
	}
	r.s.Cork()
	r.s.Send(TextMessage([]byte("queued")))
	if r.s.SendVolatile(TextMessage([]byte("busy"))) {
		t.Fatal("a volatile message behind a backlog was queued")
	}
	r.s.Uncork()
	if got := c.text(); got != "4queued" {
		t.Fatalf("got %q", got)
	}
	if _, _, err := c.tryRead(200 * time.Millisecond); err == nil {
		t.Fatal("the dropped volatile message arrived")
	}

	// Polling: dropped with no poll waiting, sent to a waiting poll.
	sid, pr := e.handshake()
	if pr.s.SendVolatile(TextMessage([]byte("nobody"))) {
		t.Fatal("a volatile message with no poll waiting was queued")
	}
	poll := e.pollAsync(sid)
	waitFor(t, "the poll to wait", func() bool {
		pr.s.mu.Lock()
		defer pr.s.mu.Unlock()
		return pr.s.poll.wake != nil
	})
	if !pr.s.SendVolatile(TextMessage([]byte("waited"))) {
		t.Fatal("a volatile message to a waiting poll was dropped")
	}
	if got := recv(t, poll); got != "4waited" {
		t.Fatalf("poll answered %q", got)
	}
}
