package eio

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// chatText is a message body that compresses well, as JSON chat traffic does.
func chatText(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteString(`{"room":"general","text":"hello there, message `)
		b.WriteByte(byte('0' + i%10))
		b.WriteString(`","user":{"id":"u1","name":"alice"}},`)
	}
	return b.String()[:n]
}

func withCompression(c Compression) func(*Options) {
	return func(o *Options) { o.Compression = c }
}

func TestAcceptEncoding(t *testing.T) {
	cases := []struct {
		header string
		want   httpEncoding
	}{
		{"", encIdentity},
		{"gzip", encGzip},
		{"deflate", encDeflate},
		{"gzip, deflate, br, zstd", encGzip}, // browsers
		{"br", encIdentity},
		{"identity", encIdentity},
		{"*", encGzip},
		{"deflate, gzip", encDeflate}, // the client's order decides a tie, as in Node
		{"gzip;q=0.5, deflate", encDeflate},
		{"gzip;q=0, *", encDeflate}, // an exact q=0 refuses what * allows
		{"gzip;q=0, deflate;q=0", encIdentity},
		{"GZIP", encGzip},
		{"gzip;q=bad, deflate;q=0.1", encDeflate},
		{"*;q=0.5, deflate;q=0.5", encDeflate}, // exact over *
	}
	for _, tc := range cases {
		var v []string
		if tc.header != "" {
			v = []string{tc.header}
		}
		if got := acceptEncoding(v); got != tc.want {
			t.Errorf("Accept-Encoding %q: %v, want %v", tc.header, got, tc.want)
		}
	}
	if got := acceptEncoding([]string{"br", "deflate"}); got != encDeflate {
		t.Errorf("two header lines: %v", got)
	}
}

func TestPollingCompression(t *testing.T) {
	big := chatText(4000)
	small := chatText(500)
	cases := []struct {
		name, accept, body, want string
		off                      bool
	}{
		{"gzip", "gzip, deflate", big, "gzip", false},
		{"deflate", "deflate", big, "deflate", false},
		{"none accepted", "", big, "", false},
		{"refused", "gzip;q=0", big, "", false},
		{"below threshold", "gzip", small, "", false},
		{"disabled", "gzip", big, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withCompression(Compression{HTTP: !tc.off}))
			// Go's transport would add gzip itself (and decode it): the header is the test's.
			e.client.Transport.(*http.Transport).DisableCompression = true
			sid, r := e.handshake()
			r.s.Send(TextMessage([]byte(tc.body)), TextMessage([]byte("x")))
			var hdr []string
			if tc.accept != "" {
				hdr = []string{"Accept-Encoding", tc.accept}
			}
			res, raw := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil, hdr...)
			if got := res.Header.Get("Content-Encoding"); got != tc.want {
				t.Fatalf("Content-Encoding %q, want %q", got, tc.want)
			}
			if res.ContentLength != int64(len(raw)) {
				t.Errorf("Content-Length %d, body %d", res.ContentLength, len(raw))
			}
			var zr io.Reader = strings.NewReader(raw)
			switch tc.want {
			case "gzip":
				zr, _ = gzip.NewReader(zr)
			case "deflate":
				zr, _ = zlib.NewReader(zr) // HTTP's deflate is zlib (RFC 1950), as Node's createDeflate
			}
			if zr == nil {
				t.Fatal("bad compressed body")
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if want := "4" + tc.body + "\x1e4x"; string(got) != want {
				t.Fatalf("payload %d bytes, want %d", len(got), len(want))
			}
			if tc.want != "" && len(raw) >= len(got)/2 {
				t.Errorf("compressed to %d of %d bytes", len(raw), len(got))
			}
		})
	}
}

// dialDeflate opens a WebSocket-only session offering the permessage-deflate extension offer
// ("" offers none); accepted is the server's Sec-WebSocket-Extensions answer (without values).
func (e *env) dialDeflate(query, offer string) (c *wsClient, accepted string) {
	e.t.Helper()
	var exts []httphead.Option
	if offer != "" {
		var ok bool
		if exts, ok = httphead.ParseOptions([]byte(offer), nil); !ok {
			e.t.Fatalf("bad offer %q", offer)
		}
	}
	c, err := e.dialWSOffering(query, exts)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	for _, x := range c.hs.Extensions { // as "name; param; param", in the server's order
		accepted += string(x.Name)
		x.Parameters.ForEach(func(k, _ []byte) bool { accepted += "; " + string(k); return true })
	}
	return c, accepted
}

// frame reads a frame of any RSV bits; compressed reports RSV1, p is the payload as sent.
func (c *wsClient) frame() (h ws.Header, p []byte) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	h, err := ws.ReadHeader(c.r)
	if err == nil {
		p = make([]byte, h.Length)
		_, err = io.ReadFull(c.r, p)
	}
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	if h.Rsv&^ws.Rsv(true, false, false) != 0 || h.Masked {
		c.t.Fatalf("bad server frame header %+v", h)
	}
	return h, p
}

// message reads a data frame and returns its payload, inflated when RSV1 is set.
func (c *wsClient) message() (payload string, compressed bool) {
	c.t.Helper()
	h, p := c.frame()
	if !h.Rsv1() {
		return string(p), false
	}
	out, err := wsflate.DefaultHelper.Decompress(p)
	if err != nil {
		c.t.Fatalf("inflate: %v", err)
	}
	return string(out), true
}

// compressedFrame is a frame as a client sends it compressed (RSV1 set; write masks it).
func compressedFrame(t testing.TB, op ws.OpCode, payload []byte) ws.Frame {
	f, err := wsflate.CompressFrame(ws.NewFrame(op, true, payload))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const deflateOffer = "permessage-deflate; client_max_window_bits"

func TestWebSocketDeflateNegotiation(t *testing.T) {
	off := newEnv(t)
	c, accepted := off.dialDeflate("EIO=4&transport=websocket", deflateOffer)
	if accepted != "" {
		t.Errorf("disabled: accepted %q", accepted)
	}
	parseOpen(t, c.text())
	r := off.session()
	c.send("4" + chatText(3000))
	if m := r.next(); len(m.data) != 3000 {
		t.Errorf("message of %d bytes", len(m.data))
	}
	r.s.Send(TextMessage([]byte(chatText(3000))))
	if _, z := c.message(); z {
		t.Error("compressed without the extension")
	}

	on := newEnv(t, withCompression(Compression{PerMessageDeflate: true}))
	_, accepted = on.dialDeflate("EIO=4&transport=websocket", deflateOffer)
	if accepted != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
		t.Errorf("accepted %q", accepted)
	}
	on.session()
	// A server window smaller than 32 KiB cannot be honoured: that offer is declined, the next taken.
	_, accepted = on.dialDeflate("EIO=4&transport=websocket", "permessage-deflate; server_max_window_bits=10, permessage-deflate")
	if !strings.HasPrefix(accepted, "permessage-deflate; server_no_context_takeover") {
		t.Errorf("fallback offer: accepted %q", accepted)
	}
	on.session()
	c, accepted = on.dialDeflate("EIO=4&transport=websocket", "")
	if accepted != "" {
		t.Errorf("not offered: accepted %q", accepted)
	}
	on.session()
	parseOpen(t, c.text())
}

func TestWebSocketDeflateFrames(t *testing.T) {
	e := newEnv(t, withCompression(Compression{PerMessageDeflate: true}))
	c, _ := e.dialDeflate("EIO=4&transport=websocket", deflateOffer)
	parseOpen(t, c.text())
	r := e.session()

	big := chatText(5000)
	r.s.Send(TextMessage([]byte("small")), TextMessage([]byte(big)), BinaryMessage([]byte(big)))
	if m, z := c.message(); m != "4small" || z {
		t.Errorf("small message: %q compressed %v", m, z)
	}
	h, p := c.frame()
	if !h.Rsv1() || h.OpCode != ws.OpText || len(p) >= len(big)/2 {
		t.Fatalf("large text frame: %+v, %d bytes", h, len(p))
	}
	if out, err := wsflate.DefaultHelper.Decompress(p); err != nil || string(out) != "4"+big {
		t.Fatalf("large text inflates to %d bytes (%v)", len(out), err)
	}
	h, p = c.frame()
	if out, _ := wsflate.DefaultHelper.Decompress(p); !h.Rsv1() || h.OpCode != ws.OpBinary || string(out) != big {
		t.Fatalf("large binary frame %+v, %d bytes", h, len(out))
	}

	// What the client sends: compressed or not, whole or fragmented.
	c.write(compressedFrame(t, ws.OpText, []byte("4"+big)))
	if m := r.next(); m.data != big || m.binary {
		t.Errorf("compressed text: %d bytes", len(m.data))
	}
	c.write(compressedFrame(t, ws.OpText, []byte("4hi")))
	if m := r.next(); m.data != "hi" {
		t.Errorf("compressed small text: %q", m.data)
	}
	c.send("4plain")
	if m := r.next(); m.data != "plain" {
		t.Errorf("uncompressed text: %q", m.data)
	}
	c.write(compressedFrame(t, ws.OpBinary, []byte(big)))
	if m := r.next(); m.data != big || !m.binary {
		t.Errorf("compressed binary: %d bytes", len(m.data))
	}
	z := compressedFrame(t, ws.OpText, []byte("4"+big)).Payload
	first := ws.NewFrame(ws.OpText, false, z[:100])
	first.Header.Rsv = ws.Rsv(true, false, false)
	c.write(first)
	c.write(ws.NewPingFrame([]byte("p"))) // a control frame in between
	c.write(ws.NewFrame(ws.OpContinuation, true, z[100:]))
	if m := r.next(); m.data != big {
		t.Errorf("fragmented compressed text: %d bytes", len(m.data))
	}
	if h, _ := c.frame(); h.OpCode != ws.OpPong || h.Rsv != 0 {
		t.Errorf("pong %+v", h)
	}
}

func TestWebSocketDeflateProtocolErrors(t *testing.T) {
	e := newEnv(t, withCompression(Compression{PerMessageDeflate: true}))
	big := []byte("4" + chatText(3000))
	z := compressedFrame(t, ws.OpText, big).Payload
	rsv1 := func(f ws.Frame) ws.Frame { f.Header.Rsv = ws.Rsv(true, false, false); return f }
	cases := []struct {
		name   string
		frames []ws.Frame
		code   ws.StatusCode
	}{
		{"rsv1 on a continuation", []ws.Frame{ws.NewFrame(ws.OpText, false, []byte("4a")), rsv1(ws.NewFrame(ws.OpContinuation, true, []byte("b")))}, ws.StatusProtocolError},
		{"rsv1 on a ping", []ws.Frame{rsv1(ws.NewPingFrame(nil))}, ws.StatusProtocolError},
		{"rsv2", []ws.Frame{func() ws.Frame {
			f := ws.NewTextFrame([]byte("4a"))
			f.Header.Rsv = ws.Rsv(false, true, false)
			return f
		}()}, ws.StatusProtocolError},
		{"not deflate", []ws.Frame{rsv1(ws.NewTextFrame([]byte{0xff, 0xfe, 0xfd, 0xfc}))}, ws.StatusInvalidFramePayloadData},
		{"invalid utf-8 inflated", []ws.Frame{compressedFrame(t, ws.OpText, []byte("4\xff\xfe"))}, ws.StatusInvalidFramePayloadData},
		{"truncated", []ws.Frame{rsv1(ws.NewTextFrame(z[:len(z)/2]))}, ws.StatusInvalidFramePayloadData},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := e.dialDeflate("EIO=4&transport=websocket", deflateOffer)
			c.text()
			r := e.session()
			for _, f := range tc.frames {
				c.write(f)
			}
			if code := c.expectCloseAnyRsv(); code != tc.code {
				t.Errorf("close code %d, want %d", code, tc.code)
			}
			r.wantClosed("transport error")
			r.noMessage(10 * time.Millisecond)
		})
	}
}

// expectCloseAnyRsv is expectClose for a connection that may receive compressed frames.
func (c *wsClient) expectCloseAnyRsv() ws.StatusCode {
	c.t.Helper()
	for {
		h, p := c.frame()
		if h.OpCode == ws.OpClose {
			_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(p)))
			if len(p) < 2 {
				return 0
			}
			code, _ := ws.ParseCloseFrameData(p)
			return code
		}
	}
}

func TestWebSocketDeflateBomb(t *testing.T) {
	const limit = 10_000
	e := newEnv(t, withCompression(Compression{PerMessageDeflate: true}), func(o *Options) { o.MaxPayload = limit })
	c, _ := e.dialDeflate("EIO=4&transport=websocket", deflateOffer)
	c.text()
	r := e.session()
	atLimit := append([]byte("4"), bytes.Repeat([]byte("a"), limit-1)...)
	c.write(compressedFrame(t, ws.OpText, atLimit))
	if m := r.next(); len(m.data) != limit-1 {
		t.Fatalf("message at the limit: %d bytes", len(m.data))
	}
	bomb := compressedFrame(t, ws.OpText, append([]byte("4"), make([]byte, 4<<20)...))
	if len(bomb.Payload) >= limit {
		t.Fatalf("bomb of %d bytes is not under the frame limit", len(bomb.Payload))
	}
	c.write(bomb)
	if code := c.expectCloseAnyRsv(); code != ws.StatusMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}
	r.wantClosed("transport error")
	r.noMessage(10 * time.Millisecond)

	// inflate itself stops at the limit: it never holds more than limit+1 bytes.
	buf := make([]byte, 0, 16)
	if _, err := inflate(&buf, bomb.Payload, limit); err != errTooBig {
		t.Fatalf("inflate: %v", err)
	}
	if cap(buf) > limit+1 {
		t.Errorf("inflated into %d bytes for a limit of %d", cap(buf), limit)
	}
}

func TestBroadcastDeflatedOnce(t *testing.T) {
	e := newEnv(t, withCompression(Compression{PerMessageDeflate: true}))
	var clients []*wsClient
	var socks []*Socket
	for range 4 {
		c, _ := e.dialDeflate("EIO=4&transport=websocket", deflateOffer)
		c.text()
		clients = append(clients, c)
		socks = append(socks, e.session().s)
	}
	plain, _ := e.dialDeflate("EIO=4&transport=websocket", "") // did not negotiate: gets it as is
	plain.text()
	socks = append(socks, e.session().s)
	// A polling session upgraded with deflate, with the message queued before the upgrade.
	sid, up := e.handshake()
	uc, _ := e.dialDeflate("EIO=4&transport=websocket&sid="+sid, deflateOffer)

	m := TextMessage([]byte(chatText(20_000)))
	n0 := deflateCount.Load()
	up.s.Send(m)
	uc.send("2probe")
	if got, _ := uc.message(); got != "3probe" {
		t.Fatalf("probe answer %q", got)
	}
	uc.send("5")
	for _, s := range socks {
		s.Send(m)
	}
	var frame []byte
	for i, c := range append(clients, uc) {
		h, p := c.frame()
		if !h.Rsv1() {
			t.Fatalf("client %d: not compressed", i)
		}
		if frame == nil {
			frame = p
		} else if !bytes.Equal(frame, p) {
			t.Errorf("client %d got other compressed bytes", i)
		}
	}
	if got, z := plain.message(); z || len(got) != 20_001 {
		t.Errorf("client without deflate: %d bytes, compressed %v", len(got), z)
	}
	if n := deflateCount.Load() - n0; n != 1 {
		t.Errorf("compressed %d times, want once", n)
	}
}
