package eio

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// echo sends every message back as it came (text or binary), as the suite's server does.
type echo struct{ s *Socket }

func (h echo) OnMessage(data []byte, binary bool) {
	if binary {
		h.s.Send(BinaryMessage(data))
	} else {
		h.s.Send(TextMessage(data))
	}
}

func (echo) OnClose(string) {}

// TestConformance mirrors the official Engine.IO v4 test suite
// (socket.io docs/engine.io-protocol/v4-test-suite), case by case, with its settings.
func TestConformance(t *testing.T) {
	const pingInterval, pingTimeout = 300 * time.Millisecond, 200 * time.Millisecond
	e := newEnv(t, func(o *Options) {
		o.PingInterval, o.PingTimeout = pingInterval, pingTimeout
		o.OnConnection = func(s *Socket) { s.SetHandler(echo{s}) }
	})
	status := func(method, query, body string) int {
		t.Helper()
		res, _ := e.do(method, query, strings.NewReader(body))
		return res.StatusCode
	}
	// Pings (every 300ms) may come between the packets a case checks: answer and skip them.
	poll := func(sid string) string {
		t.Helper()
		for {
			got := e.poll(sid)
			if got != "2" {
				return strings.TrimPrefix(strings.TrimSuffix(got, "\x1e2"), "2\x1e")
			}
			e.post(sid, "3")
		}
	}
	text := func(c *wsClient) string {
		t.Helper()
		for {
			got := c.text()
			if got != "2" {
				return got
			}
			c.send("3")
		}
	}
	session := func() string {
		t.Helper()
		_, body := e.do("GET", "EIO=4&transport=polling", nil)
		return parseOpen(t, body).SID
	}
	sidQuery := func(sid string) string { return "EIO=4&transport=polling&sid=" + sid }
	checkOpen := func(t *testing.T, p string, upgrades []string) {
		var v map[string]any
		if !strings.HasPrefix(p, "0") || json.Unmarshal([]byte(p[1:]), &v) != nil {
			t.Fatalf("open packet %q", p)
		}
		keys := slices.Sorted(maps.Keys(v))
		if !slices.Equal(keys, []string{"maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"}) {
			t.Errorf("keys %v", keys)
		}
		o := parseOpen(t, p)
		if !slices.Equal(o.Upgrades, upgrades) && !(len(upgrades) == 0 && len(o.Upgrades) == 0) ||
			o.PingInterval != 300 || o.PingTimeout != 200 || o.MaxPayload != 1000000 {
			t.Errorf("open packet %+v", o)
		}
	}

	t.Run("handshake/polling/successfully opens a session", func(t *testing.T) {
		res, body := e.do("GET", "EIO=4&transport=polling", nil)
		if res.StatusCode != 200 {
			t.Fatal(res.Status)
		}
		checkOpen(t, body, []string{"websocket"})
	})
	t.Run("handshake/polling/fails with an invalid 'EIO' query parameter", func(t *testing.T) {
		if status("GET", "transport=polling", "") != 400 || status("GET", "EIO=abc&transport=polling", "") != 400 {
			t.Error("not refused")
		}
	})
	t.Run("handshake/polling/fails with an invalid 'transport' query parameter", func(t *testing.T) {
		if status("GET", "EIO=4", "") != 400 || status("GET", "EIO=4&transport=abc", "") != 400 {
			t.Error("not refused")
		}
	})
	t.Run("handshake/polling/fails with an invalid request method", func(t *testing.T) {
		if status("POST", "EIO=4&transport=polling", "") != 400 || status("PUT", "EIO=4&transport=polling", "") != 400 {
			t.Error("not refused")
		}
	})
	t.Run("handshake/websocket/successfully opens a session", func(t *testing.T) {
		c := e.dialWS("EIO=4&transport=websocket")
		checkOpen(t, c.text(), nil)
	})
	t.Run("handshake/websocket/fails with an invalid query parameter", func(t *testing.T) {
		for _, q := range []string{"transport=websocket", "EIO=abc&transport=websocket", "EIO=4", "EIO=4&transport=abc"} {
			if _, err := e.tryDialWS(q); err == nil {
				t.Errorf("%s accepted", q)
			}
		}
	})

	t.Run("message/polling/plain text packets", func(t *testing.T) {
		for _, payload := range []string{"4hello", "4test1\x1e4test2\x1e4test3", "4hello\x1ebAQIDBA=="} {
			sid := session()
			e.post(sid, payload)
			if got := poll(sid); got != payload {
				t.Errorf("echo of %q: %q", payload, got)
			}
		}
	})
	t.Run("message/polling/closes the session upon invalid packet format", func(t *testing.T) {
		sid := session()
		if st := status("POST", sidQuery(sid), "abc"); st != 400 {
			t.Errorf("POST: %d", st)
		}
		if st := status("GET", sidQuery(sid), ""); st != 400 {
			t.Errorf("poll: %d", st)
		}
	})
	t.Run("message/polling/closes the session upon duplicate poll requests", func(t *testing.T) {
		sid := session()
		first := e.pollAsync(sid)
		time.Sleep(5 * time.Millisecond)
		if st := status("GET", sidQuery(sid)+"&t=burst", ""); st != 400 {
			t.Errorf("second poll: %d", st)
		}
		if got := recv(t, first); got != "1" {
			t.Errorf("first poll: %q", got)
		}
		if st := status("GET", sidQuery(sid), ""); st != 400 {
			t.Errorf("later poll: %d", st)
		}
	})
	t.Run("message/polling/closes the session upon cancelled polling request", func(t *testing.T) {
		sid := session()
		raw := e.dialRaw()
		raw.writeRaw([]byte("GET /engine.io/?" + sidQuery(sid) + " HTTP/1.1\r\nHost: x\r\n\r\n"))
		time.Sleep(5 * time.Millisecond)
		raw.conn.Close()
		waitFor(t, "the session to close", func() bool { return e.srv.lookup(sid) == nil })
		if st := status("GET", sidQuery(sid), ""); st != 400 {
			t.Errorf("poll: %d", st)
		}
	})
	t.Run("message/websocket/sends and receives a plain text packet", func(t *testing.T) {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		c.send("4hello")
		if got := text(c); got != "4hello" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("message/websocket/sends and receives a binary packet", func(t *testing.T) {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		c.sendBinary([]byte{1, 2, 3, 4})
		if op, p := c.read(); op != ws.OpBinary || string(p) != "\x01\x02\x03\x04" {
			t.Errorf("got %v %v", op, p)
		}
	})
	t.Run("message/websocket/closes the session upon invalid packet format", func(t *testing.T) {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		c.send("abc")
		c.expectClose()
	})

	t.Run("heartbeat/polling/sends ping/pong packets", func(t *testing.T) {
		sid := session()
		for range 3 {
			if got := e.poll(sid); got != "2" {
				t.Fatalf("got %q", got)
			}
			e.post(sid, "3")
		}
	})
	t.Run("heartbeat/polling/closes the session upon ping timeout", func(t *testing.T) {
		sid := session()
		time.Sleep(pingInterval + pingTimeout + 10*time.Millisecond)
		if st := status("GET", sidQuery(sid), ""); st != 400 {
			t.Errorf("poll: %d", st)
		}
	})
	t.Run("heartbeat/websocket/sends ping/pong packets", func(t *testing.T) {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		for range 3 {
			if got := c.text(); got != "2" {
				t.Fatalf("got %q", got)
			}
			c.send("3")
		}
	})
	t.Run("heartbeat/websocket/closes the session upon ping timeout", func(t *testing.T) {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		c.expectClose()
	})

	t.Run("close/polling/forcefully closes the session", func(t *testing.T) {
		sid := session()
		pending := e.pollAsync(sid)
		time.Sleep(5 * time.Millisecond)
		e.post(sid, "1")
		if got := recv(t, pending); got != "6" {
			t.Errorf("poll: %q", got)
		}
		if st := status("GET", sidQuery(sid), ""); st != 400 {
			t.Errorf("poll after close: %d", st)
		}
	})
	t.Run("close/websocket/forcefully closes the session", func(t *testing.T) {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		start := time.Now()
		c.send("1")
		c.expectClose()
		if d := time.Since(start); d > pingInterval {
			t.Errorf("closed after %v, not by the close packet", d)
		}
	})

	t.Run("upgrade/successfully upgrades from HTTP long-polling to WebSocket", func(t *testing.T) {
		sid := session()
		c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
		c.send("2probe")
		if got := c.text(); got != "3probe" {
			t.Fatalf("got %q", got)
		}
		if got := poll(sid); got != "6" {
			t.Errorf("poll during the upgrade: %q", got)
		}
		c.send("5")
		c.send("4hello")
		if got := text(c); got != "4hello" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("upgrade/ignores HTTP requests with same sid after upgrade", func(t *testing.T) {
		sid := session()
		c := e.upgradeWS(sid)
		waitFor(t, "the switch", func() bool { return e.srv.lookup(sid).Transport() == "websocket" })
		if st := status("GET", sidQuery(sid), ""); st != 400 {
			t.Errorf("poll: %d", st)
		}
		c.send("4hello")
		if got := text(c); got != "4hello" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("upgrade/ignores WebSocket connection with same sid after upgrade", func(t *testing.T) {
		sid := session()
		c := e.upgradeWS(sid)
		waitFor(t, "the switch", func() bool { return e.srv.lookup(sid).Transport() == "websocket" })
		// Accepted, then closed (the suite waits for "close"; a refused handshake is an error event there).
		second, err := e.tryDialWS("EIO=4&transport=websocket&sid=" + sid)
		if err != nil {
			t.Fatalf("second websocket refused: %v", err)
		}
		second.expectClose()
		c.send("4hello")
		if got := text(c); got != "4hello" {
			t.Errorf("got %q", got)
		}
	})
}
