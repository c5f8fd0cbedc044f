package eio

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPollingPayloadServerToClient(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	r.s.Send(TextMessage([]byte("hello")), BinaryMessage([]byte{1, 2, 3}))
	r.s.Send(TextMessage([]byte("é ☃")))
	res, body := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil)
	if want := "4hello\x1ebAQID\x1e4é ☃"; body != want {
		t.Errorf("payload %q, want %q", body, want)
	}
	if res.Header.Get("Content-Type") != "text/plain; charset=UTF-8" || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", res.Header)
	}
	// An empty binary message and an empty text message.
	r.s.Send(BinaryMessage(nil), TextMessage(nil))
	if got := e.poll(sid); got != "b\x1e4" {
		t.Errorf("payload %q", got)
	}
}

func TestPollingWaitsForData(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	ch := e.pollAsync(sid)
	select {
	case got := <-ch:
		t.Fatalf("poll returned %q with nothing to send", got)
	case <-time.After(100 * time.Millisecond):
	}
	r.s.Send(TextMessage([]byte("late")))
	if got := recv(t, ch); got != "4late" {
		t.Errorf("payload %q", got)
	}
}

func TestPollingPayloadClientToServer(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	res, body := e.do("POST", "EIO=4&transport=polling&sid="+sid,
		strings.NewReader("4first\x1ebAQID\x1e4\x1eb\x1e4last ☃\x1e6\x1e0"), "Content-Type", "text/plain;charset=UTF-8")
	if res.StatusCode != 200 || body != "ok" || res.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("POST: %d %q %v", res.StatusCode, body, res.Header)
	}
	for _, want := range []msg{{"first", false}, {"\x01\x02\x03", true}, {"", false}, {"", true}, {"last ☃", false}} {
		if got := r.next(); got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	r.noMessage(50 * time.Millisecond) // noop and open packets are ignored
	// Unpadded base64 is accepted, as by engine.io-parser.
	e.post(sid, "bAQI")
	if got := r.next(); got != (msg{"\x01\x02", true}) {
		t.Errorf("got %+v", got)
	}
}

func TestPollingParseError(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	pending := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)
	// Packets before the bad one are delivered (as Node does), then the session ends; the POST
	// is refused (Node destroys it).
	res, body := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("4a\x1e4b\x1e9bad\x1e4c"))
	if res.StatusCode != 400 || body != `{"code":3,"message":"Bad request"}` {
		t.Errorf("POST with a bad packet: %d %s", res.StatusCode, body)
	}
	if r.next().data != "a" || r.next().data != "b" {
		t.Fatal("messages before the bad packet not delivered")
	}
	r.wantClosed("parse error")
	r.noMessage(20 * time.Millisecond)
	if got := recv(t, pending); got != "1" {
		t.Errorf("pending poll got %q, want a close packet", got)
	}
	res, body = e.do("GET", "EIO=4&transport=polling&sid="+sid, nil)
	if res.StatusCode != 400 || body != `{"code":1,"message":"Session ID unknown"}` {
		t.Errorf("poll after close: %d %s", res.StatusCode, body)
	}
	for _, bad := range []string{"", "\x1e", "4a\x1e", "b!!", "x", "abc"} {
		sid, r := e.handshake()
		if res, _ := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader(bad)); res.StatusCode != 400 {
			t.Errorf("POST %q: %d", bad, res.StatusCode)
		}
		r.wantClosed("parse error")
	}
}

func TestPollingClientClose(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	pending := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)
	e.post(sid, "4bye\x1e1\x1e4ignored")
	if r.next().data != "bye" {
		t.Fatal("message before close lost")
	}
	r.wantClosed("transport close")
	r.noMessage(20 * time.Millisecond)
	if got := recv(t, pending); got != "6" { // Node releases the poll with a noop
		t.Errorf("pending poll got %q", got)
	}
	if e.srv.Count() != 0 {
		t.Errorf("count %d", e.srv.Count())
	}
}

func TestPollingClientPingIsError(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	if res, _ := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("2")); res.StatusCode != 400 {
		t.Errorf("POST of a ping: %d", res.StatusCode)
	}
	r.wantClosed("transport error") // v4: heartbeats go from the server to the client only
}

func TestPollingBinaryContentTypeRefused(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	res, _ := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("4x"), "Content-Type", "application/octet-stream")
	if res.StatusCode != 400 {
		t.Errorf("status %d", res.StatusCode)
	}
	r.wantClosed("transport error")
}

func TestPollingPayloadTooLarge(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPayload = 100 })
	// Exactly MaxPayload is fine.
	sid, r := e.handshake()
	e.post(sid, "4"+strings.Repeat("a", 99))
	if got := r.next().data; len(got) != 99 {
		t.Fatalf("got %d bytes", len(got))
	}

	// Over it, with a Content-Length.
	res, _ := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("4"+strings.Repeat("a", 100)))
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", res.StatusCode)
	}
	r.wantClosed("transport error")
	r.noMessage(20 * time.Millisecond)

	// Over it, chunked (no Content-Length): the body is read up to the limit only.
	sid, r = e.handshake()
	body := io.MultiReader(strings.NewReader("4"), &endless{})
	req, _ := http.NewRequest("POST", e.url("EIO=4&transport=polling&sid="+sid), body)
	req.ContentLength = -1
	res2, err := e.client.Do(req)
	if err == nil {
		if res2.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked: status %d, want 413", res2.StatusCode)
		}
		res2.Body.Close()
	} else {
		t.Logf("chunked: %v (the server may cut the upload before the answer is read)", err)
	}
	r.wantClosed("transport error")
}

// endless is an infinite reader of 'a's, bounded by the test's time.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	if e.n += len(p); e.n > 64<<20 {
		return 0, io.EOF
	}
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestPollingOverlappingGet(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	first := e.pollAsync(sid)
	time.Sleep(20 * time.Millisecond)
	res, body := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil)
	if res.StatusCode != 400 || body != `{"code":3,"message":"Bad request"}` {
		t.Errorf("overlapping poll: %d %s", res.StatusCode, body)
	}
	r.wantClosed("transport error")
	if got := recv(t, first); got != "1" {
		t.Errorf("first poll got %q", got)
	}
}

func TestPollingOverlappingPost(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	// A POST whose body never ends, then a second one.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("4par")) }()
	slow := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.url("EIO=4&transport=polling&sid="+sid), pr)
		res, err := e.client.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		res.Body.Close()
		slow <- res.StatusCode
	}()
	waitFor(t, "the first POST to be read", func() bool {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return r.s.poll != nil && r.s.poll.postActive
	})
	res, _ := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("4x"))
	if res.StatusCode != 400 {
		t.Errorf("overlapping POST: %d", res.StatusCode)
	}
	r.wantClosed("transport error")
	// The first POST's body read is cut by the session's end.
	select {
	case <-slow:
	case <-time.After(wait):
		t.Fatal("first POST still blocked")
	}
	r.noMessage(20 * time.Millisecond)
}

func TestPollingAbortedPollClosesSession(t *testing.T) {
	e := newEnv(t)
	sid, r := e.handshake()
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET /engine.io/?EIO=4&transport=polling&sid="+sid+" HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	r.stillOpen(10 * time.Millisecond)
	conn.Close()
	start := time.Now()
	r.wantClosed("transport close")
	if d := time.Since(start); d > time.Second {
		t.Errorf("closed after %v", d)
	}
}

func TestPollingPingPong(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.PingInterval = 100 * time.Millisecond
		o.PingTimeout = 150 * time.Millisecond
	})
	sid, r := e.handshake()
	start := time.Now()
	for i := 0; i < 3; i++ {
		if got := e.poll(sid); got != "2" {
			t.Fatalf("poll %d: %q, want a ping", i, got)
		}
		e.post(sid, "3")
	}
	// Three pings at ~100ms intervals (each after the previous pong).
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("3 pings in %v", d)
	}
	r.stillOpen(50 * time.Millisecond)

	// No pong: the session ends PingTimeout after the ping; the pending poll gets a close packet.
	if got := e.poll(sid); got != "2" {
		t.Fatalf("poll: %q", got)
	}
	pinged := time.Now()
	pending := e.pollAsync(sid)
	r.wantClosed("ping timeout")
	if d := time.Since(pinged); d < 100*time.Millisecond || d > time.Second {
		t.Errorf("ping timeout after %v", d)
	}
	if got := recv(t, pending); got != "1" {
		t.Errorf("pending poll got %q", got)
	}
}

func TestPingTimeoutExtendedOnceByOtherPackets(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.PingInterval = 50 * time.Millisecond
		o.PingTimeout = 200 * time.Millisecond
	})
	sid, r := e.handshake()
	if got := e.poll(sid); got != "2" {
		t.Fatalf("poll: %q", got)
	}
	pinged := time.Now()
	time.Sleep(150 * time.Millisecond)
	e.post(sid, "4still here") // Node refreshes the pong timeout, once
	r.next()
	time.Sleep(100 * time.Millisecond)
	e.post(sid, "4again")
	r.next()
	r.wantClosed("ping timeout")
	if d := time.Since(pinged); d < 300*time.Millisecond {
		t.Errorf("closed %v after the ping, want the timeout extended", d)
	}
}

func TestMaxBuffered(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBuffered = 1000 })
	sid, r := e.handshake()
	big := TextMessage(bytes.Repeat([]byte("x"), 400))
	if !r.s.Send(big) || !r.s.Send(big) {
		t.Fatal("Send refused under MaxBuffered")
	}
	if r.s.Send(big) {
		t.Fatal("Send accepted over MaxBuffered")
	}
	r.wantClosed("transport error")
	if res, _ := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil); res.StatusCode != 400 {
		t.Errorf("poll after overflow: %d", res.StatusCode)
	}
}
