package eio

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestWebSocketOnlySession(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPayload = 5000 })
	c, o, r := e.openWS("&foo=1")
	if len(o.SID) != 20 || len(o.Upgrades) != 0 || o.MaxPayload != 5000 || o.PingInterval != 10000 {
		t.Errorf("open packet %+v", o)
	}
	if r.s.Transport() != "websocket" || r.s.Handshake().Query().Get("foo") != "1" {
		t.Errorf("transport %s, handshake %+v", r.s.Transport(), r.s.Handshake())
	}
	// Client to server: text and binary messages.
	c.send("4hello ☃")
	c.sendBinary([]byte{0, 1, 2})
	c.send("4")
	c.sendBinary(nil)
	for _, want := range []msg{{"hello ☃", false}, {"\x00\x01\x02", true}, {"", false}, {"", true}} {
		if got := r.next(); got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	// Server to client: one frame per packet, binary as binary frames.
	r.s.Send(TextMessage([]byte("a")), BinaryMessage([]byte{9, 8}), TextMessage([]byte("b")))
	if got := c.text(); got != "4a" {
		t.Errorf("got %q", got)
	}
	if op, p := c.read(); op != ws.OpBinary || !bytes.Equal(p, []byte{9, 8}) {
		t.Errorf("got %v %v", op, p)
	}
	if got := c.text(); got != "4b" {
		t.Errorf("got %q", got)
	}
	// A polling request for a WebSocket session is a transport mismatch.
	res, body := e.do("GET", "EIO=4&transport=polling&sid="+o.SID, nil)
	if res.StatusCode != 400 || body != `{"code":3,"message":"Bad request"}` {
		t.Errorf("poll of a websocket session: %d %s", res.StatusCode, body)
	}
	// A second WebSocket for a session already on WebSocket is accepted and
	// closed at once, as by Node; the session goes on.
	if second, err := e.tryDialWS("EIO=4&transport=websocket&sid=" + o.SID); err != nil {
		t.Errorf("second websocket for the session: %v (Node accepts it, then closes it)", err)
	} else {
		second.expectClose()
	}
	r.stillOpen(20 * time.Millisecond)
	// A close packet over WebSocket ends the session.
	c.send("1")
	r.wantClosed("transport close")
	c.expectClose()
}

func TestWebSocketBase64Client(t *testing.T) {
	e := newEnv(t)
	c, _, r := e.openWS("&b64=1")
	m := BinaryMessage([]byte{1, 2, 3})
	r.s.Send(m, TextMessage([]byte("t")))
	if got := c.text(); got != "bAQID" {
		t.Errorf("binary to a b64 client: %q", got)
	}
	if got := c.text(); got != "4t" {
		t.Errorf("got %q", got)
	}
	c.send("bAQID") // base64 from the client is a binary message too
	if got := r.next(); got != (msg{"\x01\x02\x03", true}) {
		t.Errorf("got %+v", got)
	}
}

func TestWebSocketPingPong(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.PingInterval = 100 * time.Millisecond
		o.PingTimeout = 150 * time.Millisecond
	})
	c, _, r := e.openWS("")
	for i := 0; i < 3; i++ {
		if got := c.text(); got != "2" {
			t.Fatalf("got %q, want a ping", got)
		}
		c.send("3")
	}
	r.stillOpen(50 * time.Millisecond)
	if got := c.text(); got != "2" {
		t.Fatalf("got %q", got)
	}
	r.wantClosed("ping timeout")
	if code := c.expectClose(); code != ws.StatusNormalClosure {
		t.Errorf("close code %d", code)
	}
	c.expectEOF()
}

func TestWebSocketControlFrames(t *testing.T) {
	e := newEnv(t)
	c, _, r := e.openWS("")
	c.write(ws.NewPingFrame([]byte("hb")))
	if op, p := c.read(); op != ws.OpPong || string(p) != "hb" {
		t.Errorf("ping answered with %v %q", op, p)
	}
	c.write(ws.NewPongFrame(nil)) // unsolicited pongs are ignored
	c.send("4after")
	if r.next().data != "after" {
		t.Error("message lost")
	}
}

func TestWebSocketFragmented(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPayload = 20 })
	c, _, r := e.openWS("")
	// A text message in three fragments with a ping in between.
	c.write(ws.NewFrame(ws.OpText, false, []byte("4frag")))
	c.write(ws.NewFrame(ws.OpContinuation, false, []byte("men")))
	c.write(ws.NewPingFrame([]byte("p")))
	c.write(ws.NewFrame(ws.OpContinuation, true, []byte("ted ☃")))
	if op, _ := c.read(); op != ws.OpPong {
		t.Errorf("ping inside a fragmented message not answered: %v", op)
	}
	if got := r.next(); got != (msg{"fragmented ☃", false}) {
		t.Errorf("got %+v", got)
	}
	// A binary one, then an unfragmented text message.
	c.write(ws.NewFrame(ws.OpBinary, false, []byte{1}))
	c.write(ws.NewFrame(ws.OpContinuation, true, []byte{2}))
	c.send("4x")
	if got := r.next(); got != (msg{"\x01\x02", true}) {
		t.Errorf("got %+v", got)
	}
	if got := r.next(); got != (msg{"x", false}) {
		t.Errorf("got %+v", got)
	}
	// A fragmented message over MaxPayload in total.
	c.write(ws.NewFrame(ws.OpText, false, []byte("4"+strings.Repeat("a", 15))))
	c.write(ws.NewFrame(ws.OpContinuation, true, []byte(strings.Repeat("a", 5))))
	if code := c.expectClose(); code != ws.StatusMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}
	r.wantClosed("transport error")
	c.expectEOF()
	r.noMessage(20 * time.Millisecond)
}

func TestWebSocketMessageTooBig(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPayload = 100 })
	c, _, r := e.openWS("")
	c.send("4" + strings.Repeat("a", 99)) // exactly MaxPayload
	if len(r.next().data) != 99 {
		t.Fatal("message at the limit lost")
	}
	c.sendBinary(make([]byte, 101))
	if code := c.expectClose(); code != ws.StatusMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}
	r.wantClosed("transport error")
	c.expectEOF()

	// A frame announcing a huge length is refused from its header.
	c, _, r = e.openWS("")
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: 1 << 40}
	var buf bytes.Buffer
	_ = ws.WriteHeader(&buf, h)
	c.writeRaw(buf.Bytes())
	if code := c.expectClose(); code != ws.StatusMessageTooBig {
		t.Errorf("close code %d", code)
	}
	r.wantClosed("transport error")
}

func TestWebSocketProtocolErrors(t *testing.T) {
	e := newEnv(t)
	masked := func(f ws.Frame) []byte { return ws.MustCompileFrame(ws.MaskFrame(f)) }
	cases := []struct {
		name  string
		frame []byte
		code  ws.StatusCode
	}{
		{"unmasked", ws.MustCompileFrame(ws.NewTextFrame([]byte("4x"))), ws.StatusProtocolError},
		{"rsv bit", func() []byte { b := masked(ws.NewTextFrame([]byte("4x"))); b[0] |= 0x40; return b }(), ws.StatusProtocolError},
		{"reserved opcode", masked(ws.NewFrame(ws.OpCode(3), true, nil)), ws.StatusProtocolError},
		{"continuation first", masked(ws.NewFrame(ws.OpContinuation, true, []byte("x"))), ws.StatusProtocolError},
		{"fragmented ping", masked(ws.NewFrame(ws.OpPing, false, nil)), ws.StatusProtocolError},
		{"long ping", masked(ws.NewPingFrame(make([]byte, 126))), ws.StatusProtocolError},
		{"invalid utf-8", masked(ws.NewTextFrame([]byte("4\xff\xfe"))), ws.StatusInvalidFramePayloadData},
		{"bad close code", masked(ws.NewCloseFrame([]byte{0x03, 0xe7})), ws.StatusProtocolError},
		{"1-byte close", masked(ws.NewCloseFrame([]byte{3})), ws.StatusProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, r := e.openWS("")
			c.writeRaw(tc.frame)
			if code := c.expectClose(); code != tc.code {
				t.Errorf("close code %d, want %d", code, tc.code)
			}
			r.wantClosed("transport error")
			c.expectEOF()
		})
	}
	// A data frame inside a fragmented message.
	c, _, r := e.openWS("")
	c.write(ws.NewFrame(ws.OpText, false, []byte("4a")))
	c.write(ws.NewTextFrame([]byte("4b")))
	if code := c.expectClose(); code != ws.StatusProtocolError {
		t.Errorf("close code %d", code)
	}
	r.wantClosed("transport error")
}

func TestWebSocketParseError(t *testing.T) {
	e := newEnv(t)
	for _, bad := range []string{"", "x", "b!!", "9"} {
		c, _, r := e.openWS("")
		c.send("4ok")
		c.send(bad)
		c.send("4lost")
		if r.next().data != "ok" {
			t.Fatal("message lost")
		}
		r.wantClosed("parse error")
		if code := c.expectClose(); code != ws.StatusNormalClosure {
			t.Errorf("%q: close code %d", bad, code)
		}
		r.noMessage(10 * time.Millisecond)
	}
	// A client ping over WebSocket (v4: wrong direction).
	c, _, r := e.openWS("")
	c.send("2")
	r.wantClosed("transport error")
	c.expectClose()
}

func TestWebSocketClientClose(t *testing.T) {
	e := newEnv(t)
	c, _, r := e.openWS("")
	c.send("4last")
	c.closeWith(1001)
	if r.next().data != "last" {
		t.Error("message before close lost")
	}
	r.wantClosed("transport close")
	if code := c.expectClose(); code != 1001 {
		t.Errorf("close echo %d, want 1001", code)
	}
	c.expectEOF()

	// An empty close frame is answered with an empty one.
	c, _, r = e.openWS("")
	c.write(ws.NewCloseFrame(nil))
	if op, p := c.read(); op != ws.OpClose || len(p) != 0 {
		t.Errorf("got %v %v", op, p)
	}
	r.wantClosed("transport close")

	// TCP closed without a close frame.
	c, _, r = e.openWS("")
	c.conn.Close()
	r.wantClosed("transport close")
}

func TestWebSocketLeftoverAfterHandshake(t *testing.T) {
	// Frames sent right behind the upgrade request (before the 101) are not lost.
	e := newEnv(t)
	frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("4early"))))
	req := "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	c := e.dialRaw()
	c.writeRaw(append([]byte(req), frame...))
	r := e.session()
	if got := r.next(); got.data != "early" {
		t.Errorf("got %+v", got)
	}
}

func TestLargeMessagesBothWays(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxPayload = 1 << 20 })
	c, _, r := e.openWS("")
	big := bytes.Repeat([]byte("0123456789"), 50_000)
	c.sendBinary(big)
	if got := r.next(); got.data != string(big) || !got.binary {
		t.Errorf("large binary message corrupted (%d bytes)", len(got.data))
	}
	c.send("4small")
	if r.next().data != "small" {
		t.Error("message after a large one lost")
	}
	r.s.Send(TextMessage(big), BinaryMessage(big))
	if got := c.text(); got != "4"+string(big) {
		t.Errorf("large text from the server corrupted (%d bytes)", len(got))
	}
	if op, p := c.read(); op != ws.OpBinary || !bytes.Equal(p, big) {
		t.Errorf("large binary from the server corrupted")
	}
	// The read buffer shrank back.
	time.Sleep(20 * time.Millisecond)
	c.send("4x")
	r.next()
	var n int
	waitFor(t, "the read buffer to shrink", func() bool {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		n = len(r.s.ws.rbuf)
		return n <= maxKeepBuf
	})
}

func TestMessageEncoding(t *testing.T) {
	for _, n := range []int{0, 1, 124, 125, 126, 65535, 65536, 70000} {
		text := bytes.Repeat([]byte("t"), n)
		m := TextMessage(text)
		var h ws.Header
		var err error
		h, err = ws.ReadHeader(bytes.NewReader(m.frame))
		if err != nil || h.OpCode != ws.OpText || !h.Fin || h.Masked || h.Length != int64(n+1) {
			t.Errorf("text %d: header %+v %v", n, h, err)
		}
		if string(m.polling()) != "4"+string(text) || int(m.hdr)+n+1 != len(m.frame) {
			t.Errorf("text %d: polling encoding wrong", n)
		}
		b := BinaryMessage(text)
		h, err = ws.ReadHeader(bytes.NewReader(b.frame))
		if err != nil || h.OpCode != ws.OpBinary || h.Length != int64(n) {
			t.Errorf("binary %d: header %+v %v", n, h, err)
		}
		if !bytes.Equal(b.frame[b.hdr:], text) {
			t.Errorf("binary %d: payload wrong", n)
		}
	}
	// The caller's slice is not kept.
	src := []byte{1, 2}
	m := BinaryMessage(src)
	src[0] = 9
	if m.frame[m.hdr] != 1 {
		t.Error("BinaryMessage aliases its argument")
	}
	if got := string(BinaryMessage([]byte{1, 2, 3}).polling()); got != "bAQID" {
		t.Errorf("base64 %q", got)
	}
}
