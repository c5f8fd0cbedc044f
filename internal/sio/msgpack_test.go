package sio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/engine/msgpackparser"
	"github.com/switchboard/switchboard/internal/engine/sioparser"
	"github.com/switchboard/switchboard/internal/sio"
)

// mpClient is a WebSocket client speaking socket.io-msgpack-parser's format
// (the real one runs in compat-tests/msgpack.test.js).
type mpClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialMsgpack(t *testing.T, ts *httptest.Server) *mpClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &mpClient{t: t, ws: ws}
	if typ, b := c.frame(); typ != websocket.TextMessage || b[0] != '0' {
		t.Fatalf("open: %d %q", typ, b)
	}
	c.send(sioparser.Connect, 0, false, "")
	if p := c.next(); p.Type != sioparser.Connect || !bytes.Contains(p.Data, []byte(`"sid"`)) {
		t.Fatalf("connect answered %v %s", p.Type, p.Data)
	}
	return c
}

func (c *mpClient) frame() (int, []byte) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, b, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatal(err)
	}
	return typ, b
}

func (c *mpClient) send(t sioparser.PacketType, id uint64, hasID bool, data string, atts ...[]byte) {
	c.t.Helper()
	b, err := msgpackparser.Append(nil, t, "/", id, hasID, json.RawMessage(data), atts)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next Socket.IO packet, answering pings on the way.
func (c *mpClient) next() sioparser.Packet {
	c.t.Helper()
	for {
		typ, b := c.frame()
		if typ == websocket.TextMessage {
			if string(b) == "2" {
				_ = c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
				continue
			}
			c.t.Fatalf("text message %q on a msgpack connection", b)
		}
		p, err := (&msgpackparser.Decoder{}).Decode(b)
		if err != nil {
			c.t.Fatalf("undecodable packet % x: %v", b, err)
		}
		return p
	}
}

func startMsgpack(t *testing.T, setup func(s *sio.Server)) *httptest.Server {
	t.Helper()
	ts, _, _ := startOpts(t, sio.Options{Parser: sio.ParserMsgpack}, setup)
	return ts
}

func TestMsgpackParserEventsAcksBinaryAndBroadcasts(t *testing.T) {
	ts := startMsgpack(t, func(s *sio.Server) {
		n := s.Of("/")
		n.On("echo", func(_ context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) { _ = ack(args...) })
		n.On("join", func(_ context.Context, c *sio.Conn, args sio.Args, ack sio.Ack) {
			c.Join(args[0].(string))
			_ = ack(true)
		})
		n.On("shout", func(_ context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
			_ = n.To("r").Emit("said", args...)
			_ = ack()
		})
	})
	a, b := dialMsgpack(t, ts), dialMsgpack(t, ts)

	a.send(sioparser.Event, 1, true, `["echo",1,"two",{"three":[3.5,null]},{"_placeholder":true,"num":0}]`, []byte{0, 1, 0xff})
	p := a.next()
	if p.Type != sioparser.BinaryAck || !p.HasID || p.ID != 1 {
		t.Fatalf("echo answered type %v id %d/%v", p.Type, p.ID, p.HasID)
	}
	if string(p.Data) != `[1,"two",{"three":[3.5,null]},{"_placeholder":true,"num":0}]` || len(p.Attachments) != 1 || !bytes.Equal(p.Attachments[0], []byte{0, 1, 0xff}) {
		t.Fatalf("echo acked %s %x", p.Data, p.Attachments)
	}

	for i, c := range []*mpClient{a, b} {
		c.send(sioparser.Event, uint64(10+i), true, `["join","r"]`)
		if p := c.next(); p.Type != sioparser.Ack || string(p.Data) != `[true]` {
			t.Fatalf("join answered %v %s", p.Type, p.Data)
		}
	}
	a.send(sioparser.Event, 20, true, `["shout","hi",{"_placeholder":true,"num":0}]`, []byte("bin"))
	for _, c := range []*mpClient{a, b} {
		for {
			p := c.next()
			if p.Type == sioparser.Ack {
				continue // a's ack of shout, before or after the broadcast
			}
			if p.Type != sioparser.BinaryEvent || !strings.HasPrefix(string(p.Data), `["said","hi",{"_placeholder":true,"num":0},"`) || // then its recovery offset
				string(p.Attachments[0]) != "bin" {
				t.Fatalf("broadcast arrived as %v %s %q", p.Type, p.Data, p.Attachments)
			}
			break
		}
	}
}

func TestMsgpackParserRefusesTextAndGarbage(t *testing.T) {
	ts := startMsgpack(t, func(*sio.Server) {})
	for _, msg := range []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte(`42["x"]`)},              // default parser's packet
		{websocket.BinaryMessage, []byte{0x82, 0xa4, 't', 'y'}}, // truncated map
	} {
		c := dialMsgpack(t, ts)
		if err := c.ws.WriteMessage(msg.typ, msg.data); err != nil {
			t.Fatal(err)
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			typ, b, err := c.ws.ReadMessage()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("after % x the connection stayed open", msg.data)
			}
			if err != nil {
				break // closed: what the test wants
			}
			if typ == websocket.TextMessage && string(b) == "2" {
				continue
			}
			t.Fatalf("after % x the server sent %d %q, want the connection closed", msg.data, typ, b)
		}
	}
}
