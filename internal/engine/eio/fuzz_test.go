package eio

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// contractHandler checks the Handler contract without keeping what it gets (fuzzing opens many
// sessions).
type contractHandler struct {
	t      testing.TB
	busy   atomic.Int32
	closed atomic.Int32
}

func (h *contractHandler) OnMessage(data []byte, binary bool) {
	if h.busy.Add(1) != 1 {
		h.t.Errorf("OnMessage called concurrently")
	}
	if h.closed.Load() != 0 {
		h.t.Errorf("OnMessage after OnClose")
	}
	_ = bytes.Clone(data) // touch the data: it must be valid during the call
	h.busy.Add(-1)
}

func (h *contractHandler) OnClose(reason string) {
	if h.closed.Add(1) != 1 {
		h.t.Errorf("OnClose called twice")
	}
	switch reason {
	case "transport close", "transport error", "ping timeout", "parse error", "forced close", "forced server close":
	default:
		h.t.Errorf("unexpected close reason %q", reason)
	}
}

func fuzzEnv(f *testing.F) *env {
	return newEnv(f, func(o *Options) {
		o.MaxPayload = 4096
		o.OnConnection = func(s *Socket) { s.SetHandler(&contractHandler{t: f}) }
	})
}

// FuzzPollingPost sends arbitrary POST bodies to a polling session of a live server.
func FuzzPollingPost(f *testing.F) {
	for _, seed := range []string{
		"4hello", "4a\x1e4b", "bAQID", "b", "4", "", "\x1e", "1", "2", "3", "5", "6", "0",
		"4a\x1e1\x1e4b", "b!!", "bAQ", "4é\x1ebAA==\x1e4x", strings.Repeat("4x\x1e", 100) + "4y",
		"9", "4\xff\xfe", strings.Repeat("a", 5000),
	} {
		f.Add([]byte(seed))
	}
	e := fuzzEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := e.client.Get(e.url("EIO=4&transport=polling"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		sid := parseOpen(t, string(b)).SID
		res, err = e.client.Post(e.url("EIO=4&transport=polling&sid="+sid), "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case 200, 400, 413:
		default:
			t.Fatalf("POST answered %d", res.StatusCode)
		}
		if s := e.srv.lookup(sid); s != nil {
			s.CloseNow()
		}
	})
}

// FuzzWebSocketFrames writes arbitrary bytes to a WebSocket-only session of a live server.
func FuzzWebSocketFrames(f *testing.F) {
	frame := func(fr ws.Frame) []byte { return ws.MustCompileFrame(ws.MaskFrame(fr)) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, seed := range [][]byte{
		frame(ws.NewTextFrame([]byte("4hello"))),
		frame(ws.NewBinaryFrame([]byte{1, 2, 3})),
		cat(frame(ws.NewFrame(ws.OpText, false, []byte("4a"))), frame(ws.NewPingFrame(nil)),
			frame(ws.NewFrame(ws.OpContinuation, true, []byte("b")))),
		frame(ws.NewTextFrame([]byte("3"))),
		frame(ws.NewTextFrame([]byte("2probe"))),
		frame(ws.NewTextFrame([]byte("5"))),
		frame(ws.NewTextFrame([]byte("x"))),
		frame(ws.NewTextFrame([]byte("bAQID"))),
		frame(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "bye"))),
		frame(ws.NewCloseFrame([]byte{1})),
		ws.MustCompileFrame(ws.NewTextFrame([]byte("4unmasked"))),
		frame(ws.NewBinaryFrame(make([]byte, 5000))),
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{0x82, 0xfe, 0xff, 0xff, 1, 2, 3, 4},
		frame(ws.NewFrame(ws.OpCode(0xb), true, nil)),
		{},
	} {
		f.Add(seed)
	}
	e := fuzzEnv(f)
	u := "ws" + strings.TrimPrefix(e.url("EIO=4&transport=websocket"), "http")
	f.Fuzz(func(t *testing.T, data []byte) {
		conn, br, _, err := ws.Dial(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var r io.Reader = conn
		if br != nil {
			r = br
		}
		if _, err := conn.Write(data); err != nil {
			return // the server may already have closed the connection
		}
		// A final valid frame, then read whatever comes until the server closes or goes quiet.
		_, _ = conn.Write(frame(ws.NewTextFrame([]byte("4end"))))
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, _ = io.Copy(io.Discard, r)
	})
}
