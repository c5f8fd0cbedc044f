package sio_test

// Socket.IO v5 protocol conformance at the wire level: raw Engine.IO frames
// over a WebSocket, checked against the protocol document's rules.

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/sio"
)

type wire struct {
	t  *testing.T
	ws *websocket.Conn
}

func openWire(t *testing.T, ts *httptest.Server) *wire {
	t.Helper()
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	w := &wire{t: t, ws: ws}
	if open := w.read(); !strings.HasPrefix(open, "0{") {
		t.Fatalf("open packet: %q", open)
	}
	return w
}

func (w *wire) write(s string) {
	w.t.Helper()
	if err := w.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		w.t.Fatalf("write %q: %v", s, err)
	}
}

func (w *wire) writeBinary(b []byte) {
	w.t.Helper()
	if err := w.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		w.t.Fatalf("write binary: %v", err)
	}
}

// read returns the next text frame that is not a ping (pings are answered).
func (w *wire) read() string {
	w.t.Helper()
	for {
		typ, b, err := w.readFrame()
		if err != nil {
			w.t.Fatalf("read: %v", err)
		}
		if typ == websocket.BinaryMessage {
			return "<binary:" + string(b) + ">"
		}
		if string(b) == "2" {
			w.write("3")
			continue
		}
		return string(b)
	}
}

func (w *wire) readFrame() (int, []byte, error) {
	_ = w.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	return w.ws.ReadMessage()
}

// closed reports whether the server closes the connection within d.
func (w *wire) closed(d time.Duration) bool {
	_ = w.ws.SetReadDeadline(time.Now().Add(d))
	for {
		_, b, err := w.ws.ReadMessage()
		if err != nil {
			return !strings.Contains(err.Error(), "timeout")
		}
		if string(b) == "2" {
			_ = w.ws.WriteMessage(websocket.TextMessage, []byte("3"))
		}
	}
}

func conformanceServer(t *testing.T) *httptest.Server {
	ts, _ := start(t, func(s *sio.Server) {
		root := s.Of("/")
		sio.Handle(root, "echo", func(_ context.Context, _ *sio.Conn, v any) (any, error) {
			return map[string]any{"echo": v}, nil
		})
		sio.Handle(root, "emitBack", func(_ context.Context, c *sio.Conn, v any) (any, error) {
			return nil, c.Emit("back", v)
		})
		sio.Handle(root, "bye", func(_ context.Context, c *sio.Conn, _ any) (any, error) {
			c.Disconnect()
			return nil, nil
		})
		admin := s.Of("/admin")
		admin.Use(func(_ context.Context, h *sio.Handshake) error {
			if h.Auth["token"] != "secret" {
				return sio.Errorf("unauthorized", "token required")
			}
			return nil
		})
		sio.Handle(admin, "whoami", func(_ context.Context, c *sio.Conn, _ any) (any, error) {
			return map[string]any{"nsp": c.Namespace()}, nil
		})
	})
	return ts
}

var sidRE = regexp.MustCompile(`^40(/admin,)?\{"sid":"[A-Za-z0-9_-]{20,24}"(,"pid":"[A-Za-z0-9_-]{20,24}")?\}$`)

func TestWireConnectMainNamespace(t *testing.T) {
	w := openWire(t, conformanceServer(t))
	w.write("40")
	if got := w.read(); !sidRE.MatchString(got) {
		t.Fatalf("CONNECT reply %q does not match %s", got, sidRE)
	}
}

func TestWireConnectUnknownNamespace(t *testing.T) {
	w := openWire(t, conformanceServer(t))
	w.write("40/nope,")
	if got, want := w.read(), `44/nope,{"message":"Invalid namespace"}`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWireConnectErrorCarriesMessageAndCode(t *testing.T) {
	w := openWire(t, conformanceServer(t))
	w.write(`40/admin,{"token":"wrong"}`)
	got := w.read()
	if !strings.HasPrefix(got, "44/admin,") {
		t.Fatalf("got %q, want a CONNECT_ERROR for /admin", got)
	}
	var body struct {
		Message string         `json:"message"`
		Data    map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(got, "44/admin,")), &body); err != nil {
		t.Fatalf("body of %q: %v", got, err)
	}
	if body.Message != "token required" || body.Data["code"] != "unauthorized" {
		t.Fatalf("got %+v", body)
	}
	// The connection stays usable: the right token connects.
	w.write(`40/admin,{"token":"secret"}`)
	if got := w.read(); !sidRE.MatchString(got) {
		t.Fatalf("CONNECT reply %q", got)
	}
	w.write(`42/admin,7["whoami"]`)
	if got, want := w.read(), `43/admin,7[{"nsp":"/admin","ok":true}]`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWireEventAckKeepsID(t *testing.T) {
	w := openWire(t, conformanceServer(t))
	w.write("40")
	w.read()
	w.write(`4212345["echo","héllo"]`)
	if got, want := w.read(), `4312345[{"echo":"héllo","ok":true}]`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWireBinaryEventBothWays(t *testing.T) {
	w := openWire(t, conformanceServer(t))
	w.write("40")
	w.read()
	w.write(`451-["emitBack",{"_placeholder":true,"num":0}]`)
	w.writeBinary([]byte{1, 2, 3})
	// With connection state recovery on (the default), the last argument is
	// the recovery offset, as Node sends it for every emit.
	got := w.read()
	if !regexp.MustCompile(`^451-\["back",\{"_placeholder":true,"num":0\},"[^"]+"\]$`).MatchString(got) {
		t.Fatalf("got %q, want a BINARY_EVENT with one placeholder and an offset", got)
	}
	typ, b, err := w.readFrame()
	if err != nil || typ != websocket.BinaryMessage || string(b) != "\x01\x02\x03" {
		t.Fatalf("attachment: type %d %v %v", typ, b, err)
	}
}

func TestWireMultiplexedNamespaces(t *testing.T) {
	w := openWire(t, conformanceServer(t))
	w.write("40")
	w.read()
	w.write(`40/admin,{"token":"secret"}`)
	w.read()
	w.write(`42/admin,1["whoami"]`)
	w.write(`422["echo",1]`)
	got := []string{w.read(), w.read()}
	want := map[string]bool{`43/admin,1[{"nsp":"/admin","ok":true}]`: true, `432[{"echo":1,"ok":true}]`: true}
	for _, g := range got {
		if !want[g] {
			t.Fatalf("unexpected %q (got %q)", g, got)
		}
	}
}

func TestWireServerDisconnectSendsDisconnectPacket(t *testing.T) {
	w := openWire(t, conformanceServer(t))
	w.write("40")
	w.read()
	w.write(`423["bye"]`)
	if got, want := w.read(), `433[{"ok":true}]`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, want := w.read(), `41`; got != want {
		t.Fatalf("got %q, want DISCONNECT %q", got, want)
	}
}

func TestWireInvalidPacketClosesTheConnection(t *testing.T) {
	for _, bad := range []string{`4x`, `42not json`, `42["connect"]`, `43`, `47`, `451-["a"]`} {
		t.Run(bad, func(t *testing.T) {
			w := openWire(t, conformanceServer(t))
			w.write("40")
			w.read()
			w.write(bad)
			if bad == `451-["a"]` {
				w.write(`42["echo",1]`) // text while an attachment is expected
			}
			if !w.closed(3 * time.Second) {
				t.Fatalf("connection still open after %q", bad)
			}
		})
	}
}
