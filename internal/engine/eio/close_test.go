package eio

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestCloseGracefulPolling(t *testing.T) {
	e := newEnv(t)
	// Data queued, no poll pending: the next poll gets the data, the one after the close packet
	// (Node's socket.close waits for "drain", then its polling transport sends close on the next poll).
	sid, r := e.handshake()
	r.s.Send(TextMessage([]byte("x")), BinaryMessage([]byte{1}))
	r.s.Close()
	if r.s.Send(TextMessage([]byte("late"))) {
		t.Error("Send accepted while closing")
	}
	r.stillOpen(20 * time.Millisecond) // waits for the client to poll
	if got := e.poll(sid); got != "4x\x1ebAQ==" {
		t.Errorf("poll with the queued data %q", got)
	}
	if got := e.poll(sid); got != "1" {
		t.Errorf("last poll %q", got)
	}
	r.wantClosed("forced close")
	if r.s.Send(TextMessage([]byte("later"))) {
		t.Error("Send accepted after close")
	}
	if e.srv.Count() != 0 {
		t.Errorf("count %d", e.srv.Count())
	}

	// A poll pending and nothing queued: it gets the close packet at once.
	sid, r = e.handshake()
	pending := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)
	r.s.Close()
	if got := recv(t, pending); got != "1" {
		t.Errorf("pending poll %q", got)
	}
	r.wantClosed("forced close")

	// Incoming messages are ignored while closing (as Node does).
	sid, r = e.handshake()
	r.s.Send(TextMessage([]byte("q")))
	r.s.Close()
	e.post(sid, "4ignored")
	r.noMessage(20 * time.Millisecond)
	if got := e.poll(sid) + "|" + e.poll(sid); got != "4q|1" {
		t.Errorf("polls while closing %q, want the data then the close packet", got)
	}
	r.wantClosed("forced close")
}

func TestCloseGracefulPollingTimeout(t *testing.T) {
	// A client that never polls again: the close completes after PingInterval+PingTimeout.
	e := newEnv(t, func(o *Options) {
		o.PingInterval = 50 * time.Millisecond
		o.PingTimeout = 50 * time.Millisecond
	})
	_, r := e.handshake()
	r.s.Close()
	start := time.Now()
	r.wantClosed("forced close")
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
}

func TestCloseGracefulWebSocket(t *testing.T) {
	e := newEnv(t)
	c, _, r := e.openWS("")
	for i := 0; i < 100; i++ {
		r.s.Send(TextMessage(fmt.Appendf(nil, "m%d", i)))
	}
	r.s.Close()
	if r.s.Send(TextMessage([]byte("late"))) {
		t.Error("Send accepted while closing")
	}
	for i := 0; i < 100; i++ {
		if got := c.text(); got != fmt.Sprintf("4m%d", i) {
			t.Fatalf("got %q", got)
		}
	}
	if code := c.expectClose(); code != ws.StatusNormalClosure {
		t.Errorf("close code %d", code)
	}
	c.expectEOF()
	r.wantClosed("forced close")
}

func TestCloseNow(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	r.s.Send(TextMessage([]byte("dropped")))
	r.s.CloseNow()
	r.wantClosed("forced close")
	if r.s.Send(TextMessage([]byte("x"))) {
		t.Error("Send accepted after CloseNow")
	}
	if res, _ := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil); res.StatusCode != 400 {
		t.Errorf("poll after CloseNow: %d", res.StatusCode)
	}
	r.s.CloseNow() // idempotent
	r.s.Close()

	sid, r = e.handshake()
	pending := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)
	r.s.CloseNow()
	if got := recv(t, pending); got != "1" {
		t.Errorf("pending poll %q", got)
	}

	c, _, r := e.openWS("")
	r.s.CloseNow()
	r.wantClosed("forced close")
	if code := c.expectClose(); code != ws.StatusNormalClosure {
		t.Errorf("close code %d", code)
	}
	c.expectEOF()

	// Close then CloseNow: the graceful close is cut short.
	_, r = e.handshake()
	r.s.Send(TextMessage([]byte("x")))
	r.s.Close()
	r.s.CloseNow()
	r.wantClosed("forced close")
}

func TestCloseFromHandler(t *testing.T) {
	e := newEnv(t)
	e.onMsg = func(r *rec, m msg) {
		switch m.data {
		case "close":
			r.s.CloseNow() // OnClose must come after this OnMessage returns
		case "echo":
			r.s.Send(TextMessage([]byte("echoed")))
		}
	}
	c, _, r := e.openWS("")
	c.send("4echo")
	if got := c.text(); got != "4echoed" {
		t.Errorf("got %q", got)
	}
	c.send("4close")
	c.send("4after")
	r.next()
	r.next()
	r.wantClosed("forced close")
	r.noMessage(20 * time.Millisecond)

	sid, r := e.handshake()
	e.post(sid, "4close\x1e4after")
	r.next()
	r.wantClosed("forced close")
	r.noMessage(20 * time.Millisecond)
}

func TestSharedMessage(t *testing.T) {
	e := newEnv(t)
	const n = 20
	var polls []string
	var pollRecs, wsRecs []*rec
	var clients []*wsClient
	for i := 0; i < n; i++ {
		sid, r := e.handshake()
		polls = append(polls, sid)
		pollRecs = append(pollRecs, r)
		c, _, wr := e.openWS("")
		clients = append(clients, c)
		wsRecs = append(wsRecs, wr)
	}
	big := bytes.Repeat([]byte("payload "), 5000)
	text, bin := TextMessage([]byte("hello all")), BinaryMessage(big)
	var wg sync.WaitGroup
	for _, r := range append(pollRecs, wsRecs...) {
		wg.Go(func() {
			if !r.s.Send(text, bin) || !r.s.Send(text) {
				t.Error("Send refused")
			}
		})
	}
	wg.Wait()
	wantPoll := "4hello all\x1e" + string(bin.polling()) + "\x1e4hello all"
	for _, sid := range polls {
		if got := e.poll(sid); got != wantPoll {
			t.Fatalf("poll payload wrong (%d bytes)", len(got))
		}
	}
	for _, c := range clients {
		if got := c.text(); got != "4hello all" {
			t.Fatalf("got %q", got)
		}
		if op, p := c.read(); op != ws.OpBinary || !bytes.Equal(p, big) {
			t.Fatal("binary frame corrupted")
		}
		if got := c.text(); got != "4hello all" {
			t.Fatalf("got %q", got)
		}
	}
	if string(text.polling()) != "4hello all" {
		t.Error("message modified by sending")
	}
}

func TestServerClose(t *testing.T) {
	e := newEnv(t)
	sid, pr := e.handshake()
	c, _, wr := e.openWS("")
	pending := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)
	wr.s.Send(TextMessage([]byte("last")))
	e.srv.Close()
	if got := recv(t, pending); got != "1" {
		t.Errorf("pending poll %q", got)
	}
	pr.wantClosed("forced server close")
	if got := c.text(); got != "4last" {
		t.Errorf("got %q", got)
	}
	c.expectClose()
	wr.wantClosed("forced server close")
	if e.srv.Count() != 0 {
		t.Errorf("count %d", e.srv.Count())
	}
	res, body := e.do("GET", "EIO=4&transport=polling", nil)
	if res.StatusCode != 400 || body != `{"code":3,"message":"Bad request"}` {
		t.Errorf("handshake after Close: %d %s", res.StatusCode, body)
	}
	if _, err := e.tryDialWS("EIO=4&transport=websocket"); err == nil {
		t.Error("websocket handshake after Close accepted")
	}
}

func TestManySessionsNoLeak(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.PingInterval = 50 * time.Millisecond
		o.PingTimeout = 50 * time.Millisecond
	})
	var recs []*rec
	for i := 0; i < 30; i++ {
		_, r := e.handshake()
		recs = append(recs, r)
		c, _, wr := e.openWS("")
		recs = append(recs, wr)
		c.send("4x")
		wr.s.Send(TextMessage([]byte("y")))
	}
	for _, r := range recs { // nobody answers the pings
		r.wantClosed("ping timeout")
	}
	waitFor(t, "no sessions", func() bool { return e.srv.Count() == 0 })
	checkNoLeaks(t)
}

// lockingHandler takes mu in OnClose, as an application cleaning up shared state does.
type lockingHandler struct {
	mu     *sync.Mutex
	closed chan string
}

func (h lockingHandler) OnMessage([]byte, bool) {}
func (h lockingHandler) OnClose(reason string) {
	h.mu.Lock()
	h.mu.Unlock()
	h.closed <- reason
}

func TestOnCloseNotCalledInsideAPI(t *testing.T) {
	var mu sync.Mutex
	closed := make(chan string, 8)
	e := newEnv(t, func(o *Options) {
		o.MaxBuffered = 100
		o.OnConnection = func(s *Socket) { s.SetHandler(lockingHandler{&mu, closed}) }
	})
	for _, end := range []func(s *Socket){
		func(s *Socket) { s.CloseNow() },
		func(s *Socket) { s.Send(TextMessage(make([]byte, 200))) }, // over MaxBuffered
		func(s *Socket) { s.Close() },
	} {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		var s *Socket
		waitFor(t, "the session", func() bool {
			e.srv.Range(func(x *Socket) bool { s = x; return false })
			return s != nil
		})
		done := make(chan struct{})
		go func() {
			mu.Lock() // held across the call, as a broadcast holding its room lock does
			end(s)
			mu.Unlock()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatal("deadlock: OnClose called inside the API call")
		}
		select {
		case <-closed:
		case <-time.After(wait):
			t.Fatal("OnClose not called")
		}
		waitFor(t, "the session to go", func() bool { return e.srv.Count() == 0 })
	}
}
