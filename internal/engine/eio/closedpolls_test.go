package eio

import (
	"strings"
	"testing"
	"time"
)

// The poll a client sent before its close packet may reach the server after
// it: it is answered noop, as if it had been pending, not 400.
func TestPollAfterTheClientsCloseIsAnsweredNoop(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	res, body := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("1"))
	if res.StatusCode != 200 || body != "ok" {
		t.Fatalf("close packet: %d %s", res.StatusCode, body)
	}
	r.wantClosed("transport close")
	res, body = e.do("GET", "EIO=4&transport=polling&sid="+sid, nil)
	if res.StatusCode != 200 || body != "6" {
		t.Fatalf("the late poll: %d %q, want 200 noop", res.StatusCode, body)
	}
	// One late poll only: the next one finds the session unknown.
	if res, _ := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil); res.StatusCode != 400 {
		t.Fatalf("a second poll after the close: %d, want 400", res.StatusCode)
	}
	// Only that poll's GET: a POST is refused as for any unknown session.
	res, _ = e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("4x"))
	if res.StatusCode != 400 {
		t.Fatalf("POST after the close: %d, want 400", res.StatusCode)
	}

	// A session the server closed is unknown at once.
	sid2, r2 := e.handshake()
	r2.s.CloseNow()
	r2.wantClosed("forced close")
	if res, _ := e.do("GET", "EIO=4&transport=polling&sid="+sid2, nil); res.StatusCode != 400 {
		t.Fatalf("poll of a session the server closed: %d, want 400", res.StatusCode)
	}
}

func TestClosedPollsAreBounded(t *testing.T) {
	var c closedPolls
	now := time.Now()
	for i := 0; i < maxClosedPolls+10; i++ {
		c.add(string(rune('a'+i%26))+strings.Repeat("x", i), now)
	}
	if len(c.ids) != maxClosedPolls {
		t.Fatalf("%d remembered, want the cap %d", len(c.ids), maxClosedPolls)
	}
	later := now.Add(2 * closedPollLinger)
	c.add("fresh", later) // the expired ones make room
	if len(c.ids) != 1 || !c.take("fresh", later) || c.take("fresh", later) {
		t.Fatalf("after expiry: %d remembered", len(c.ids))
	}
}
