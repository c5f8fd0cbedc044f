package eio

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// A poll whose answer fails (the client resets the connection mid-answer)
// has taken its messages off the queue: the session is closed at once with
// the recoverable "transport close", not left open with the messages gone,
// and it is not reported as a slow consumer (the write did not time out).
func TestPollingFailedAnswerClosesTheSession(t *testing.T) {
	var lim limits
	e := newSlowEnv(t, &lim, nil, func(o *Options) { o.WriteTimeout = 30 * time.Second })
	sid, r := e.handshake()
	for range 12 {
		if !r.s.Send(TextMessage(bytes.Repeat([]byte("d"), 64<<10))) {
			t.Fatal("Send refused")
		}
	}
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := conn.(*net.TCPConn)
	_ = tc.SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", sid)
	// Read the start of the answer: the server is then writing it.
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(conn, make([]byte, 1024)); err != nil {
		t.Fatalf("reading the start of the answer: %v", err)
	}
	waitFor(t, "the answer to be in flight", func() bool {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return r.s.inflight > 0
	})
	_ = tc.SetLinger(0) // a reset: the server's next write fails
	start := time.Now()
	conn.Close()

	r.wantClosed("transport close")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("closed %v after the failed answer, want at once", took)
	}
	if n := lim.get(LimitSlowConsumer); n != 0 {
		t.Errorf("slow_consumer reported %d times for a client that went away", n)
	}
	// The session is gone: a new poll is refused, it does not wait for
	// messages that were dropped.
	res, _ := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil)
	if res.StatusCode != 400 {
		t.Errorf("poll after the failed answer: %d, want 400 (session closed)", res.StatusCode)
	}
}

// A poll that fails while the session closes gracefully ends it with the
// graceful close's reason (what the application asked for), at once.
func TestPollingFailedAnswerDuringGracefulClose(t *testing.T) {
	var lim limits
	e := newSlowEnv(t, &lim, nil, func(o *Options) { o.WriteTimeout = 30 * time.Second })
	sid, r := e.handshake()
	for range 12 {
		if !r.s.Send(TextMessage(bytes.Repeat([]byte("d"), 64<<10))) {
			t.Fatal("Send refused")
		}
	}
	r.s.Close() // graceful: the queue is still to be delivered
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := conn.(*net.TCPConn)
	_ = tc.SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", sid)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(conn, make([]byte, 1024)); err != nil {
		t.Fatalf("reading the start of the answer: %v", err)
	}
	_ = tc.SetLinger(0)
	start := time.Now()
	conn.Close()
	r.wantClosed("forced close")
	// Without the close on failure, the session would end only at the close
	// timeout (or a next poll): this one ends as soon as the write fails.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("closed %v after the failed answer, want at once", took)
	}
}
