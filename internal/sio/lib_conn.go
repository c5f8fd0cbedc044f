//go:build !ownengine

package sio

import (
	"context"
	"runtime/debug"
	"sync"
	"time"

	"github.com/zishang520/socket.io/parsers/socket/v3/parser"
	"github.com/zishang520/socket.io/servers/socket/v3"
)

// Conn is one client connection to a namespace.
//
// Its event handlers, connect and disconnect hooks run one at a time, in
// order; Conn methods are safe to call from any goroutine.
type Conn struct {
	n       *Namespace
	sock    *socket.Socket
	user    User
	release *releaser

	mu         sync.Mutex
	values     map[any]any
	closed     bool
	kicked     bool // DISCONNECT sent; events are ignored from then on
	running    bool // a handler of this connection is on the stack
	disconnect bool // Disconnect was asked while running
}

// ID is the connection's public id; it is also a room holding only it.
func (c *Conn) ID() string { return string(c.sock.Id()) }

// Namespace is the name of the connection's namespace.
func (c *Conn) Namespace() string { return c.n.name }

// User is the identity the connect middleware attached.
func (c *Conn) User() User { return c.user }

// Recovered reports whether the connection resumed an earlier session
// (rooms restored, missed events replayed).
func (c *Conn) Recovered() bool { return c.sock.Recovered() }

// Transport is "polling" or "websocket".
func (c *Conn) Transport() string {
	if t := c.sock.Conn().Transport(); t != nil {
		return t.Name()
	}
	return ""
}

// RemoteAddr is the client's address as the engine saw it.
func (c *Conn) RemoteAddr() string { return c.sock.Handshake().Address }

// Join adds the connection to rooms.
func (c *Conn) Join(rooms ...string) {
	rs := make([]socket.Room, len(rooms))
	for i, r := range rooms {
		rs[i] = socket.Room(r)
	}
	c.sock.Join(rs...)
}

// Leave removes the connection from room.
func (c *Conn) Leave(room string) { c.sock.Leave(socket.Room(room)) }

// In reports whether the connection is in room.
func (c *Conn) In(room string) bool { return c.sock.Rooms().Has(socket.Room(room)) }

// Rooms lists the rooms the connection is in, except its own ID room.
func (c *Conn) Rooms() []string {
	keys := c.sock.Rooms().Keys()
	out := make([]string, 0, len(keys))
	for _, r := range keys {
		if string(r) != c.ID() {
			out = append(out, string(r))
		}
	}
	return out
}

// Emit sends event with payload v to this connection.
func (c *Conn) Emit(event string, v any) error {
	w, err := toWire(v)
	if err != nil {
		return err
	}
	if err := c.sock.Emit(event, w); err != nil {
		return err
	}
	c.n.srv.obs.Emitted(c.n.name, event)
	return nil
}

// Disconnect ends the connection from the server side: the client receives
// a DISCONNECT packet ("io server disconnect") and does not reconnect by
// itself. Called from a handler, it takes effect after the handler returns.
func (c *Conn) Disconnect() {
	c.mu.Lock()
	if c.running {
		c.disconnect = true
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.kick()
}

// kickGrace is how long a disconnected namespace stays registered in the
// engine, absorbing the events the client sent before it saw DISCONNECT.
const kickGrace = 2 * time.Second

// kick sends DISCONNECT at once, after anything already written (acks
// included), and ignores the connection's events from then on. The engine's
// own Disconnect(false) unregisters the namespace immediately: a packet the
// client sent meanwhile then makes the engine close the whole connection,
// and its WebSocket close drops frames still queued for writing (v3.0.6
// transports/websocket.go DoClose), the DISCONNECT among them, so the client
// saw "transport close" and reconnected. Disconnect(true) has the same flaw.
func (c *Conn) kick() {
	c.mu.Lock()
	if c.kicked || c.closed {
		c.mu.Unlock()
		return
	}
	c.kicked = true
	c.mu.Unlock()
	c.sock.Client().WriteToEngine(c.n.srv.io.Encoder().Encode(&parser.Packet{Type: parser.DISCONNECT, Nsp: c.n.name}), &socket.WriteOptions{})
	time.AfterFunc(kickGrace, func() { c.sock.Disconnect(false) })
}

// Value returns the connection-local value stored under key.
func (c *Conn) Value(key any) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[key]
}

// SetValue stores connection-local state (a namespace's per-connection data).
func (c *Conn) SetValue(key, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.values == nil {
		c.values = map[any]any{}
	}
	c.values[key] = v
}

// Closed reports whether the connection has ended.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *Conn) listener(event string, h eventHandler) func(...any) {
	return func(args ...any) {
		args, ack := splitAck(args)
		c.dispatch(event, h, args, ack)
	}
}

// unknownEvent answers events no handler is registered for; they still
// count against the interceptors (a flood of unknown events is a flood).
func (c *Conn) unknownEvent(args ...any) {
	if len(args) == 0 {
		return
	}
	event, ok := args[0].(string)
	if !ok {
		return
	}
	if _, known := c.n.handlers[event]; known {
		return
	}
	_, ack := splitAck(args)
	c.dispatch("_unknown", func(context.Context, *Conn, []any) (any, error) {
		return nil, Errorf(CodeBadRequest, "unknown event %q", truncate(event, 64))
	}, nil, ack)
}

// splitAck separates the ack callback the engine appends to an event's
// arguments (when the client asked for one).
func splitAck(args []any) ([]any, socket.Ack) {
	if n := len(args); n > 0 {
		if a, ok := args[n-1].(socket.Ack); ok {
			return args[:n-1], a
		}
	}
	return args, nil
}

// dispatch runs on the connection's queue: interceptors, handler, ack.
func (c *Conn) dispatch(event string, h eventHandler, args []any, ack socket.Ack) {
	c.mu.Lock()
	if c.closed || c.kicked {
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()

	start := time.Now()
	res, err := c.invoke(event, h, args)
	code := "ok"
	var reply any
	if err != nil {
		e := AsError(err)
		code = e.Code
		if e.Code == CodeInternal {
			c.n.srv.log.Error().Err(err).Str("nsp", c.n.name).Str("event", event).Str("sid", c.ID()).Msg("handler failed")
		}
		reply = ackFailure(e)
	} else if ack != nil {
		if reply, err = ackSuccess(res); err != nil {
			c.n.srv.log.Error().Err(err).Str("nsp", c.n.name).Str("event", event).Msg("ack not encodable")
			code, reply = CodeInternal, ackFailure(&Error{Code: CodeInternal, Message: "internal error"})
		}
	}
	if ack != nil {
		ack([]any{reply}, nil)
	}
	took := time.Since(start)
	c.n.srv.obs.Event(c.n.name, event, took, code)
	if l := c.n.srv.log.Debug(); l.Enabled() {
		l.Str("nsp", c.n.name).Str("event", event).Str("sid", c.ID()).Str("user", c.user.ID).
			Str("code", code).Dur("took", took).Msg("event")
	}

	c.mu.Lock()
	c.running = false
	disconnect := c.disconnect
	c.disconnect = false
	c.mu.Unlock()
	if disconnect {
		c.kick()
	}
}

func (c *Conn) invoke(event string, h eventHandler, args []any) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.n.srv.obs.Panic(c.n.name, event)
			c.n.srv.log.Error().Str("nsp", c.n.name).Str("event", event).Str("sid", c.ID()).
				Interface("panic", r).Bytes("stack", debug.Stack()).Msg("handler panicked")
			res, err = nil, &Error{Code: CodeInternal, Message: "internal error"}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), c.n.srv.opts.HandlerTimeout)
	defer cancel()
	for _, list := range [][]Interceptor{c.n.srv.interceptors, c.n.interceptors} {
		for _, fn := range list {
			if err := fn(ctx, c, event); err != nil {
				return nil, err
			}
		}
	}
	return h(ctx, c, args)
}

// close runs the disconnect hooks once, on the connection's queue.
func (c *Conn) close(reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.runHooks("disconnect", func(ctx context.Context) {
		for _, fn := range c.n.onDisconnect {
			fn(ctx, c, reason)
		}
	})
	c.release.run()
}

func (c *Conn) runHooks(what string, fn func(ctx context.Context)) {
	defer func() {
		if r := recover(); r != nil {
			c.n.srv.obs.Panic(c.n.name, what)
			c.n.srv.log.Error().Str("nsp", c.n.name).Str("hook", what).Str("sid", c.ID()).
				Interface("panic", r).Bytes("stack", debug.Stack()).Msg("hook panicked")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), c.n.srv.opts.HandlerTimeout)
	defer cancel()
	fn(ctx)
}
