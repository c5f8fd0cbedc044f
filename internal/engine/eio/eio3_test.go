package eio

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func allowEIO3(o *Options) { o.AllowEIO3 = true }

// openV3 opens a protocol 3 polling session; extra is added to the query.
func (e *env) openV3(extra string) (string, *rec) {
	e.t.Helper()
	res, body := e.do("GET", "EIO=3&transport=polling"+extra, nil)
	if res.StatusCode != 200 {
		e.t.Fatalf("handshake: %d %s", res.StatusCode, body)
	}
	n, p, ok := strings.Cut(body, ":")
	if !ok || n == "" {
		e.t.Fatalf("v3 handshake payload %q is not length-prefixed", body)
	}
	return parseOpen(e.t, p).SID, e.session()
}

func TestEIO3IsRefusedUnlessAllowed(t *testing.T) {
	e := newEnv(t)
	res, body := e.do("GET", "EIO=3&transport=polling", nil)
	if res.StatusCode != 400 || !strings.Contains(body, `"code":5`) {
		t.Fatalf("EIO=3 without AllowEIO3: %d %s", res.StatusCode, body)
	}
	e3 := newEnv(t, allowEIO3)
	if res, body := e3.do("GET", "EIO=2&transport=polling", nil); res.StatusCode != 400 || !strings.Contains(body, `"code":5`) {
		t.Fatalf("EIO=2: %d %s", res.StatusCode, body)
	}
	sid, _ := e3.openV3("")
	// A session keeps the protocol of its handshake.
	if res, _ := e3.do("GET", "EIO=4&transport=polling&sid="+sid, nil); res.StatusCode != 400 {
		t.Fatalf("an EIO=4 poll of a v3 session: %d", res.StatusCode)
	}
}

func TestEIO3PollingPayloadsBothWays(t *testing.T) {
	e := newEnv(t, allowEIO3)
	sid, r := e.openV3("")
	if r.s.Protocol() != 3 {
		t.Fatalf("Protocol() = %d", r.s.Protocol())
	}
	q := "EIO=3&transport=polling&sid=" + sid
	res, body := e.do("POST", q, strings.NewReader("9:4héllo 😀6:b4AQID"), "Content-Type", "text/plain;charset=UTF-8")
	if res.StatusCode != 200 || body != "ok" {
		t.Fatalf("post: %d %q", res.StatusCode, body)
	}
	if m := r.next(); m.data != "héllo 😀" || m.binary {
		t.Fatalf("got %+v", m)
	}
	if m := r.next(); m.data != "\x01\x02\x03" || !m.binary {
		t.Fatalf("got %+v", m)
	}
	// A binary body (application/octet-stream) too.
	res, body = e.do("POST", q, bytes.NewReader([]byte("\x00\x03\xff4é\x01\x03\xff\x04\x09\x08")), "Content-Type", "application/octet-stream")
	if res.StatusCode != 200 || body != "ok" {
		t.Fatalf("binary post: %d %q", res.StatusCode, body)
	}
	if m := r.next(); m.data != "é" || m.binary {
		t.Fatalf("got %+v", m)
	}
	if m := r.next(); m.data != "\x09\x08" || !m.binary {
		t.Fatalf("got %+v", m)
	}

	// Text only: a text payload, lengths in UTF-16 code units.
	r.s.Send(TextMessage([]byte("é😀")))
	res, body = e.do("GET", q, nil)
	if ct := res.Header.Get("Content-Type"); body != "4:4é😀" || !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("poll: %q (%s)", body, ct)
	}
	// With binary: a binary payload for a client that takes binary...
	r.s.Send(TextMessage([]byte("a")), BinaryMessage([]byte{1, 2, 3}))
	res, body = e.do("GET", q, nil)
	if ct := res.Header.Get("Content-Type"); body != "\x00\x02\xff4a\x01\x04\xff\x04\x01\x02\x03" || ct != "application/octet-stream" {
		t.Fatalf("binary poll: %q (%s)", body, ct)
	}
	// ...and base64 for a b64 one.
	sid64, r64 := e.openV3("&b64=1")
	r64.s.Send(TextMessage([]byte("a")), BinaryMessage([]byte{1, 2, 3}))
	if _, body := e.do("GET", "EIO=3&transport=polling&b64=1&sid="+sid64, nil); body != "2:4a6:b4AQID" {
		t.Fatalf("b64 poll: %q", body)
	}
	// A malformed payload is a parse error.
	res, _ = e.do("POST", q, strings.NewReader("5:4a"), "Content-Type", "text/plain;charset=UTF-8")
	if res.StatusCode != 400 {
		t.Fatalf("bad length: %d", res.StatusCode)
	}
	r.wantClosed("parse error")
}

func TestEIO3ClientPingsAndServerAnswers(t *testing.T) {
	e := newEnv(t, allowEIO3, func(o *Options) { o.PingInterval, o.PingTimeout = 150*time.Millisecond, 100*time.Millisecond })
	sid, r := e.openV3("")
	q := "EIO=3&transport=polling&sid=" + sid
	// The server never pings: a poll waits; each client ping is answered with a pong and keeps
	// the session past PingInterval + PingTimeout.
	for range 4 {
		poll := e.pollAsync3(q)
		time.Sleep(100 * time.Millisecond)
		e.post3(q, "1:2")
		if got := recv(t, poll); got != "1:3" {
			t.Fatalf("answer to a ping: %q", got)
		}
	}
	r.stillOpen(50 * time.Millisecond)
	// Without pings it ends at PingInterval + PingTimeout.
	start := time.Now()
	r.wantClosed("ping timeout")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v, before PingInterval+PingTimeout", d)
	}

	// A pong from a v3 client is the wrong direction.
	sid, r = e.openV3("")
	if res, _ := e.do("POST", "EIO=3&transport=polling&sid="+sid, strings.NewReader("1:3"), "Content-Type", "text/plain;charset=UTF-8"); res.StatusCode != 400 {
		t.Fatalf("a v3 pong: %d", res.StatusCode)
	}
	r.wantClosed("transport error")
}

func (e *env) pollAsync3(q string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		res, err := e.client.Get(e.url(q))
		if err != nil {
			ch <- "error: " + err.Error()
			return
		}
		defer res.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(res.Body)
		ch <- b.String()
	}()
	return ch
}

func (e *env) post3(q, payload string) {
	e.t.Helper()
	res, body := e.do("POST", q, strings.NewReader(payload), "Content-Type", "text/plain;charset=UTF-8")
	if res.StatusCode != 200 || body != "ok" {
		e.t.Fatalf("post: %d %q", res.StatusCode, body)
	}
}

func TestEIO3WebSocketFramesAndUpgrade(t *testing.T) {
	e := newEnv(t, allowEIO3)
	c := e.dialWS("EIO=3&transport=websocket")
	parseOpen(t, c.text())
	r := e.session()
	c.sendBinary([]byte{4, 7, 8})
	if m := r.next(); m.data != "\x07\x08" || !m.binary {
		t.Fatalf("got %+v", m)
	}
	c.send("b4AQID")
	if m := r.next(); m.data != "\x01\x02\x03" || !m.binary {
		t.Fatalf("got %+v", m)
	}
	r.s.Send(BinaryMessage([]byte{5, 6}))
	if op, b := c.read(); op != ws.OpBinary || !bytes.Equal(b, []byte{4, 5, 6}) {
		t.Fatalf("binary frame %v % x", op, b)
	}
	c.send("2")
	if got := c.text(); got != "3" {
		t.Fatalf("pong %q", got)
	}
	c.sendBinary([]byte{2, 1}) // a binary frame that is not a message
	r.wantClosed("parse error")

	// The upgrade of a v3 polling session, then base64 binary for a b64 client.
	sid, r := e.openV3("&b64=1")
	w := e.dialWS("EIO=3&transport=websocket&b64=1&sid=" + sid)
	w.send("2probe")
	if got := w.text(); got != "3probe" {
		t.Fatalf("probe answer %q", got)
	}
	w.send("5")
	waitFor(t, "the upgrade", func() bool { return r.s.Transport() == "websocket" })
	r.s.Send(BinaryMessage([]byte{1, 2, 3}))
	if got := w.text(); got != "b4AQID" {
		t.Fatalf("b64 binary on v3 WebSocket: %q", got)
	}
}
