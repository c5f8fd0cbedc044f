package loadclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Handlers receive what a connection gets from the server. They run on the
// connection's read goroutine; p is borrowed (valid only during the call).
type Handlers struct {
	// Event gets an EVENT packet's JSON array, e.g. ["message",{...}].
	Event func(p []byte)
	// EventAt, when set, is used instead of Event by the reactor, which
	// reads the clock once per read syscall rather than once per packet:
	// now is the time (unix nanos) the bytes carrying p were read.
	EventAt func(p []byte, now int64)
	// Ack gets an ACK packet's id and JSON array, e.g. [{"ok":true,...}].
	Ack func(id uint64, p []byte)
	// Closed is called once when the connection ends; err says why
	// (nil when Close was called).
	Closed func(err error)
}

// Client is one Socket.IO connection to namespace "/", over WebSocket
// (Conn) or long-polling (PollConn).
type Client interface {
	// Emit sends event with the JSON payload; ackID > 0 asks for an ack.
	Emit(ackID uint64, event string, payload []byte) error
	// Start begins delivering packets to h.
	Start(h Handlers)
	// Close ends the connection; abort resets it (no TIME_WAIT).
	Close(abort bool)
	// SID is the Socket.IO session id.
	SID() string
}

// ConnectError is the server's CONNECT_ERROR payload.
type ConnectError struct {
	Message string `json:"message"`
	Data    struct {
		Code string `json:"code"`
	} `json:"data"`
}

var okTrue = []byte(`"ok":true`)

func (e *ConnectError) Error() string {
	return fmt.Sprintf("connect_error: %s (%s)", e.Message, e.Data.Code)
}

// Conn is a Socket.IO client over a WebSocket.
type Conn struct {
	ws  WS
	sid string

	wmu  sync.Mutex
	wbuf []byte

	closeOnce sync.Once
	closing   chan struct{}
	h         Handlers
}

// AuthPacket is the CONNECT packet for namespace "/" with {token}.
func AuthPacket(token string) []byte {
	b, _ := json.Marshal(map[string]string{"token": token})
	return append([]byte("40"), b...)
}

// Connect opens a WebSocket-only session (no polling first) and connects
// to namespace "/" with auth {token}. Call Start to receive packets.
func Connect(ctx context.Context, d *Dialer, hostport, path, token string) (*Conn, error) {
	ws, err := d.Dial(ctx, hostport, path+"?EIO=4&transport=websocket")
	if err != nil {
		return nil, err
	}
	c := &Conn{ws: ws, closing: make(chan struct{})}
	fail := func(err error) (*Conn, error) {
		ws.Close(true)
		return nil, err
	}
	// A stuck server must not hang the caller past ctx.
	stop := context.AfterFunc(ctx, func() { ws.Close(true) })
	defer stop()
	msg, err := ws.ReadMessage()
	if err != nil {
		return fail(fmt.Errorf("engine.io open: %w", err))
	}
	if len(msg) == 0 || msg[0] != '0' {
		return fail(fmt.Errorf("engine.io open: unexpected %q", trunc(msg)))
	}
	if err := ws.WriteText(AuthPacket(token)); err != nil {
		return fail(err)
	}
	for {
		msg, err := ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fail(fmt.Errorf("waiting for CONNECT: %w", err))
		}
		switch {
		case len(msg) == 1 && msg[0] == '2':
			_ = ws.WriteText([]byte{'3'})
		case len(msg) >= 2 && msg[0] == '4' && msg[1] == '0':
			var v struct {
				SID string `json:"sid"`
			}
			_ = json.Unmarshal(msg[2:], &v)
			c.sid = v.SID
			return c, nil
		case len(msg) >= 2 && msg[0] == '4' && msg[1] == '4':
			ce := &ConnectError{}
			_ = json.Unmarshal(msg[2:], ce)
			return fail(ce)
		}
	}
}

func (c *Conn) SID() string { return c.sid }

func (c *Conn) Start(h Handlers) {
	c.h = h
	go c.readLoop()
}

func (c *Conn) readLoop() {
	var err error
	for {
		var msg []byte
		msg, err = c.ws.ReadMessage()
		if err != nil {
			break
		}
		if stop, e := dispatch(msg, &c.h, c.pong, 0); stop {
			err = e
			break
		}
	}
	select {
	case <-c.closing:
		err = nil
	default:
	}
	c.ws.Close(true)
	if c.h.Closed != nil {
		c.h.Closed(err)
	}
}

func (c *Conn) pong() { _ = c.ws.WriteText([]byte{'3'}) }

// ErrServerDisconnect is a DISCONNECT packet (or Engine.IO close) from the server.
var ErrServerDisconnect = errors.New("server disconnected the socket")

// dispatch handles one Engine.IO packet; stop reports the end of the
// session. now, when not 0, is when msg was read (see Handlers.EventAt).
func dispatch(msg []byte, h *Handlers, pong func(), now int64) (stop bool, err error) {
	if len(msg) == 0 {
		return false, nil
	}
	switch msg[0] {
	case '2': // ping
		pong()
	case '1': // close
		return true, ErrServerDisconnect
	case '4':
		if len(msg) < 2 {
			return false, nil
		}
		switch msg[1] {
		case '2':
			p := msg[2:]
			// An ack id on a server event (never used by switchboard) is skipped.
			for len(p) > 0 && p[0] >= '0' && p[0] <= '9' {
				p = p[1:]
			}
			if now != 0 && h.EventAt != nil {
				h.EventAt(p, now)
			} else if h.Event != nil {
				h.Event(p)
			}
		case '3':
			p := msg[2:]
			var id uint64
			for len(p) > 0 && p[0] >= '0' && p[0] <= '9' {
				id = id*10 + uint64(p[0]-'0')
				p = p[1:]
			}
			if h.Ack != nil {
				h.Ack(id, p)
			}
		case '1':
			return true, ErrServerDisconnect
		}
	}
	return false, nil
}

// AppendEmit appends the Socket.IO EVENT packet 42<ackID>["event",payload].
func AppendEmit(b []byte, ackID uint64, event string, payload []byte) []byte {
	b = append(b, '4', '2')
	if ackID > 0 {
		b = strconv.AppendUint(b, ackID, 10)
	}
	b = append(b, '[', '"')
	b = append(b, event...)
	b = append(b, '"')
	if payload != nil {
		b = append(b, ',')
		b = append(b, payload...)
	}
	return append(b, ']')
}

func (c *Conn) Emit(ackID uint64, event string, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = AppendEmit(c.wbuf[:0], ackID, event, payload)
	return c.ws.WriteText(c.wbuf)
}

func (c *Conn) Close(abort bool) {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.ws.Close(abort)
	})
}

func trunc(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}

// AckOK reports whether an ack array [{"ok":true,...}] is a success, and
// the error code otherwise. It does not allocate on success.
func AckOK(p []byte) (ok bool, code string) {
	if bytes.Contains(p, okTrue) {
		return true, ""
	}
	// Failure: decode the code.
	var v []struct {
		OK    bool `json:"ok"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(p, &v); err != nil || len(v) == 0 {
		return false, "bad_ack"
	}
	if v[0].OK {
		return true, ""
	}
	if v[0].Error.Code == "" {
		return false, "unknown"
	}
	return false, v[0].Error.Code
}

// Deadline is a small helper: the earlier of t and the ctx deadline.
func Deadline(ctx context.Context, t time.Time) time.Time {
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}

// CallSync emits event with ack id and reads the connection inline until
// that ack arrives (before Start: setup such as join-room). Pings are
// answered; other packets are skipped and counted in skipped.
func (c *Conn) CallSync(ctx context.Context, id uint64, event string, payload []byte) (ack []byte, skipped int, err error) {
	stop := context.AfterFunc(ctx, func() { c.ws.Close(true) })
	defer stop()
	if err := c.Emit(id, event, payload); err != nil {
		return nil, 0, err
	}
	for {
		msg, err := c.ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, skipped, err
		}
		var got []byte
		stopped, e := dispatch(msg, &Handlers{
			Ack: func(aid uint64, p []byte) {
				if aid == id {
					got = append([]byte(nil), p...)
				}
			},
			Event: func([]byte) { skipped++ },
		}, c.pong, 0)
		if stopped {
			return nil, skipped, e
		}
		if got != nil {
			return got, skipped, nil
		}
	}
}
