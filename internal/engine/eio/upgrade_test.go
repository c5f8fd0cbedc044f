package eio

import (
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestUpgrade follows engine.io-client's upgrade: probe while a poll is pending, the poll is
// released with a noop, the client pauses polling and sends "5"; traffic then uses the WebSocket.
func TestUpgrade(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	e.post(sid, "4p1")
	pending := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)

	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	if r.s.Transport() != "polling" {
		t.Error("switched before the upgrade packet")
	}
	c.send("2probe")
	if got := c.text(); got != "3probe" {
		t.Fatalf("probe answer %q", got)
	}
	if got := recv(t, pending); got != "6" {
		t.Fatalf("pending poll released with %q, want a noop", got)
	}
	// Polling still works until the switch: a POST, and polls are answered with noops.
	e.post(sid, "4p2")
	if got := e.poll(sid); got != "6" {
		t.Errorf("poll during the upgrade: %q", got)
	}
	// Sent while the client has paused polling: delivered over WebSocket after the switch.
	r.s.Send(TextMessage([]byte("queued")))
	c.send("5")
	if got := c.text(); got != "4queued" {
		t.Fatalf("queued message over websocket: %q", got)
	}
	if r.s.Transport() != "websocket" {
		t.Errorf("transport %s after the upgrade", r.s.Transport())
	}
	c.send("4w1")
	for _, want := range []string{"p1", "p2", "w1"} {
		if got := r.next(); got.data != want {
			t.Fatalf("got %+v, want %s (ordering across the switch)", got, want)
		}
	}
	r.s.Send(TextMessage([]byte("after")))
	if got := c.text(); got != "4after" {
		t.Errorf("got %q", got)
	}
	// The polling transport is gone.
	res, body := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil)
	if res.StatusCode != 400 || body != `{"code":3,"message":"Bad request"}` {
		t.Errorf("poll after the upgrade: %d %s", res.StatusCode, body)
	}
	// A second WebSocket on the upgraded sid is accepted and closed at once, as
	// by Node; the session goes on over the first.
	second, err := e.tryDialWS("EIO=4&transport=websocket&sid=" + sid)
	if err != nil {
		t.Fatalf("second WebSocket on an upgraded sid: %v (Node accepts it, then closes it)", err)
	}
	second.expectClose()
	r.stillOpen(20 * time.Millisecond)
	r.s.Send(TextMessage([]byte("still")))
	if got := c.text(); got != "4still" {
		t.Errorf("after the second WebSocket: %q", got)
	}
}

// TestUpgradeOrdering floods messages from both sides across the switch.
func TestUpgradeOrdering(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	const n = 200
	for i := 0; i < n; i++ {
		r.s.Send(TextMessage(fmt.Appendf(nil, "s%d", i)))
	}
	got := e.poll(sid)
	if len(got) == 0 {
		t.Fatal("nothing polled")
	}
	for i := 0; i < 10; i++ {
		e.post(sid, fmt.Sprintf("4c%d", i))
	}
	c := e.upgradeWS(sid)
	for i := n; i < 2*n; i++ {
		r.s.Send(TextMessage(fmt.Appendf(nil, "s%d", i)))
	}
	for i := 10; i < 20; i++ {
		c.send(fmt.Sprintf("4c%d", i))
	}
	for i := 0; i < 20; i++ {
		if m := r.next(); m.data != fmt.Sprintf("c%d", i) {
			t.Fatalf("message %d: %q", i, m.data)
		}
	}
	for i := n; i < 2*n; i++ {
		if m := c.text(); m != fmt.Sprintf("4s%d", i) {
			t.Fatalf("server message %d: %q", i, m)
		}
	}
}

func TestUpgradePendingPollDiscarded(t *testing.T) {
	// A poll sent while the WebSocket is probing and still pending when "5"
	// arrives: a client pauses polling before it sends "5", so this poll is
	// taken as sent after it (the order Node, reading the WebSocket first,
	// sees) and gets the 400 of a poll after the upgrade. The session goes on.
	e := newEnv(t)
	sid, r := e.handshake()
	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	c.send("2probe")
	c.text()
	pending := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)
	c.send("5")
	if got := recv(t, pending); got != "status: 400 Bad Request" {
		t.Errorf("discarded poll got %q", got)
	}
	waitFor(t, "the switch", func() bool { return r.s.Transport() == "websocket" })
	r.s.Send(TextMessage([]byte("ws")))
	if got := c.text(); got != "4ws" {
		t.Errorf("got %q", got)
	}
	r.stillOpen(20 * time.Millisecond)
}

func TestUpgradeTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.UpgradeTimeout = 150 * time.Millisecond })
	sid, r := e.handshake()
	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	c.send("2probe")
	c.text()
	start := time.Now()
	if code := c.expectClose(); code != ws.StatusNormalClosure {
		t.Errorf("close code %d", code)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("websocket closed after %v", d)
	}
	c.expectEOF()
	// Only the WebSocket was closed: the session goes on over polling, and may upgrade again.
	r.stillOpen(20 * time.Millisecond)
	r.s.Send(TextMessage([]byte("still")))
	if got := e.poll(sid); got != "4still" {
		t.Errorf("poll after a failed upgrade: %q", got)
	}
	if r.s.Transport() != "polling" {
		t.Error("transport changed")
	}
	c = e.upgradeWS(sid)
	waitFor(t, "the switch", func() bool { return r.s.Transport() == "websocket" })
}

func TestUpgradeRefusals(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	first := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	// A second WebSocket while the first is upgrading: accepted and closed at once (Node).
	if second, err := e.tryDialWS("EIO=4&transport=websocket&sid=" + sid); err != nil {
		t.Errorf("concurrent WebSocket: %v (Node accepts it, then closes it)", err)
	} else {
		second.expectClose()
	}
	// Anything but the probe or the upgrade packet aborts the upgrade, not the session.
	first.send("4nope")
	first.expectClose()
	r.stillOpen(20 * time.Millisecond)
	r.noMessage(10 * time.Millisecond)
	// Closing the probing WebSocket does not end the session either.
	second := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	second.send("2probe")
	second.text()
	second.conn.Close()
	r.stillOpen(50 * time.Millisecond)
	waitFor(t, "the probe to be dropped", func() bool {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return r.s.probe == nil
	})
	e.upgradeWS(sid)
	waitFor(t, "the switch", func() bool { return r.s.Transport() == "websocket" })
}

func TestAbortedPollDuringUpgradeKeepsSession(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	c.send("2probe")
	c.text()
	raw := e.dialRaw()
	raw.writeRaw([]byte("GET /engine.io/?EIO=4&transport=polling&sid=" + sid + " HTTP/1.1\r\nHost: x\r\n\r\n"))
	raw.conn.Close()
	r.stillOpen(200 * time.Millisecond)
	c.send("5")
	waitFor(t, "the switch", func() bool { return r.s.Transport() == "websocket" })
}

func TestSessionCloseDuringUpgrade(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	c.send("2probe")
	c.text()
	r.s.CloseNow()
	r.wantClosed("forced close")
	c.expectClose() // the probing WebSocket is closed with the session
	c.expectEOF()
}

func TestGracefulCloseCompletesOnUpgrade(t *testing.T) {
	// Close while the client has paused polling: the queue goes over the new WebSocket, then it closes.
	e := newEnv(t)
	sid, r := e.handshake()
	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	c.send("2probe")
	c.text()
	r.s.Send(TextMessage([]byte("bye")))
	r.s.Close()
	c.send("5")
	if got := c.text(); got != "4bye" {
		t.Errorf("got %q", got)
	}
	c.expectClose()
	r.wantClosed("forced close")
}
