package sio

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// Conn is one client connection to a namespace.
//
// Its event handlers, connect and disconnect hooks run one at a time, in
// order; Conn methods are safe to call from any goroutine.
type Conn struct {
	n         *Namespace
	cl        *client
	id        string
	pid       string // private session id (connection state recovery)
	user      User
	auth      map[string]any // the CONNECT packet's payload
	release   *releaser
	recovered bool
	hooksDone chan struct{} // closed once the disconnect hooks have run

	rooms map[string]struct{} // guarded by n.mu; not its own room (implied)
	seq   uint64              // connection order in the namespace
	gone  bool                // removed from the namespace; guarded by n.mu

	mu           sync.Mutex
	values       map[any]any
	closed       bool
	running      bool // a handler of this connection is on the stack
	disconnect   bool // Disconnect was asked while running
	closeSession bool // ... by DisconnectSession: the whole session closes
	acks         *pendingAcks
	nextAck      uint64
	anyIn        []AnyHandler // OnAny
	anyOut       []AnyHandler // OnAnyOutgoing
	data         any          // SetData
}

// maxPendingAcks bounds the acks a connection owes the server: beyond,
// emitWithAck refuses (counted as LimitAckExpired: the client left that
// many unanswered).
const maxPendingAcks = 1024

// pendingAcks are the acks a connection was asked for and has not sent,
// with the one timer that expires them; allocated only while some are.
type pendingAcks struct {
	list  []pendingAck // by id, hence by deadline (every ack waits AckTimeout)
	timer *time.Timer  // due at list[0].deadline or earlier
}

type pendingAck struct {
	id       uint64
	deadline time.Time
	fn       func(args []any)
}

// ID is the connection's public id; it is also a room holding only it.
func (c *Conn) ID() string { return c.id }

// Namespace is the name of the connection's namespace.
func (c *Conn) Namespace() string { return c.n.name }

// User is the identity the connect middleware attached.
func (c *Conn) User() User { return c.user }

// Recovered reports whether the connection resumed an earlier session
// (rooms restored, missed events replayed).
func (c *Conn) Recovered() bool { return c.recovered }

// Transport is "polling" or "websocket".
func (c *Conn) Transport() string { return c.cl.eng.Transport() }

// RemoteAddr is the client's IP (from X-Forwarded-For behind a trusted proxy).
func (c *Conn) RemoteAddr() string { return c.cl.eng.Handshake().ClientIP }

// Join adds the connection to rooms.
func (c *Conn) Join(rooms ...string) {
	c.n.join(c, rooms...)
	c.saveSession()
}

// Leave removes the connection from room.
func (c *Conn) Leave(room string) {
	c.n.leave(c, room)
	c.saveSession()
}

// In reports whether the connection is in room.
func (c *Conn) In(room string) bool {
	c.n.mu.RLock()
	defer c.n.mu.RUnlock()
	_, ok := c.rooms[room]
	return ok || room == c.id
}

// Rooms lists the rooms the connection is in, except its own ID room.
func (c *Conn) Rooms() []string {
	c.n.mu.RLock()
	defer c.n.mu.RUnlock()
	return c.roomsLocked(false)
}

func (c *Conn) roomsLocked(withOwn bool) []string {
	out := make([]string, 0, len(c.rooms)+1)
	if withOwn {
		out = append(out, c.id)
	}
	for r := range c.rooms {
		out = append(out, r)
	}
	return out
}

// Emit sends event with args to this connection, as Node's
// socket.emit(event, ...args): any number of arguments, []byte anywhere sent
// as binary. With connection state recovery on it is a broadcast to the
// connection's own room, as in Node: it gets an offset and is replayed if
// the connection drops before receiving it.
func (c *Conn) Emit(event string, args ...any) error {
	if c.pid != "" {
		if err := c.n.To(c.id).Emit(event, args...); err != nil {
			return err
		}
		c.notifyAny(true, event, args)
		return nil
	}
	data, atts, err := eventArgsData(event, args)
	if err != nil {
		return err
	}
	c.cl.send(sioparser.Event, c.n.name, 0, false, data, atts)
	c.n.srv.obs.Emitted(c.n.name, event)
	c.notifyAny(true, event, args)
	return nil
}

// VolatileConn emits to one connection what may be lost (Conn.Volatile).
type VolatileConn struct{ c *Conn }

// Volatile is Node's socket.volatile: what its Emit sends is dropped when the
// connection's transport is busy (a backlog being written, no poll waiting),
// and is never kept for connection state recovery.
func (c *Conn) Volatile() VolatileConn { return VolatileConn{c} }

// Emit sends event with args unless the transport is busy; the error is for
// arguments that cannot be encoded only (a dropped event is not an error).
func (v VolatileConn) Emit(event string, args ...any) error {
	c := v.c
	data, atts, err := eventArgsData(event, args)
	if err != nil {
		return err
	}
	if c.cl.eng.SendVolatile(c.n.srv.encode(sioparser.Event, c.n.name, 0, false, data, atts)...) {
		c.n.srv.obs.Emitted(c.n.name, event)
	}
	c.notifyAny(true, event, args)
	return nil
}

// emitWithAck sends an EVENT expecting an acknowledgement; onAck gets the
// client's ack arguments, never if the connection ends first or the client
// takes longer than AckTimeout (the callers have their own deadline). It
// returns false, and onAck is never called, when the connection is closed or
// already has maxPendingAcks unanswered.
func (c *Conn) emitWithAck(data []byte, atts [][]byte, onAck func(args []any)) bool {
	_, ok := c.sendWithAck(data, atts, onAck)
	return ok
}

// sendWithAck is emitWithAck returning the ack id (for takeAck).
func (c *Conn) sendWithAck(data []byte, atts [][]byte, onAck func(args []any)) (uint64, bool) {
	timeout := c.n.srv.opts.AckTimeout
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, false
	}
	expired := c.expireAcksLocked(now)
	if c.acks != nil && len(c.acks.list) >= maxPendingAcks {
		c.mu.Unlock()
		c.countExpired(expired + 1)
		return 0, false
	}
	if c.acks == nil {
		c.acks = &pendingAcks{}
	}
	st := c.acks
	id := c.nextAck
	c.nextAck++
	st.list = append(st.list, pendingAck{id: id, deadline: now.Add(timeout), fn: onAck})
	if st.timer == nil {
		st.timer = time.AfterFunc(timeout, func() { c.ackTimer(st) })
	}
	c.mu.Unlock()
	c.countExpired(expired)
	if !c.cl.send(sioparser.Event, c.n.name, id, true, data, atts) {
		c.takeAck(id)
		return 0, false
	}
	return id, true
}

// ackTimer expires the acks of st that are due and re-arms for the next.
func (c *Conn) ackTimer(st *pendingAcks) {
	now := time.Now()
	c.mu.Lock()
	if c.acks != st { // all answered or expired meanwhile
		c.mu.Unlock()
		return
	}
	expired := c.expireAcksLocked(now)
	if c.acks == st {
		st.timer.Reset(st.list[0].deadline.Sub(now))
	}
	c.mu.Unlock()
	c.countExpired(expired)
}

// expireAcksLocked drops the acks due at now and returns how many; c.mu
// must be held.
func (c *Conn) expireAcksLocked(now time.Time) int {
	st := c.acks
	if st == nil {
		return 0
	}
	n := 0
	for n < len(st.list) && !now.Before(st.list[n].deadline) {
		n++
	}
	clear(st.list[:n])
	st.list = st.list[n:]
	if len(st.list) == 0 {
		c.dropAcksLocked()
	}
	return n
}

// dropAcksLocked forgets every pending ack; c.mu must be held.
func (c *Conn) dropAcksLocked() {
	if c.acks != nil {
		c.acks.timer.Stop()
		c.acks = nil
	}
}

func (c *Conn) countExpired(n int) {
	for range n {
		c.n.srv.obs.Limit(LimitAckExpired)
	}
}

// takeAck removes and returns the callback of pending ack id (nil if none).
func (c *Conn) takeAck(id uint64) func([]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.acks
	if st == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(st.list, id, func(a pendingAck, id uint64) int { return cmpUint(a.id, id) })
	if !ok {
		return nil
	}
	fn := st.list[i].fn
	if i == 0 {
		st.list[0] = pendingAck{}
		st.list = st.list[1:]
	} else {
		st.list = slices.Delete(st.list, i, i+1)
	}
	if len(st.list) == 0 {
		c.dropAcksLocked()
	}
	return fn
}

func (c *Conn) onAck(p sioparser.Packet) {
	if !p.HasID {
		return
	}
	fn := c.takeAck(p.ID)
	if fn == nil {
		return
	}
	args, err := decodeArgs(p)
	if err != nil {
		return
	}
	fn(args)
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
	c.kick(false)
}

// DisconnectSession is Disconnect for every namespace of the client's
// Engine.IO session, which then closes: a flooder loses its transport, not
// only this namespace.
func (c *Conn) DisconnectSession() {
	c.mu.Lock()
	if c.running {
		c.disconnect, c.closeSession = true, true
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.kick(true)
}

// kick sends DISCONNECT after anything already queued (acks included) and
// ends the namespace connection; with closeTransport the whole session is
// closed once that is written.
func (c *Conn) kick(closeTransport bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.cl.send(sioparser.Disconnect, c.n.name, 0, false, nil, nil)
	c.close("server namespace disconnect")
	if closeTransport {
		c.cl.eng.Close()
	}
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

// onEvent runs on the client's queue.
func (c *Conn) onEvent(p sioparser.Packet) {
	var ack func(any)
	if p.HasID {
		id := p.ID
		ack = func(reply any) {
			data, atts, err := valueData(reply)
			if err != nil {
				c.n.srv.log.Error().Err(err).Str("nsp", c.n.name).Msg("ack not encodable")
				return
			}
			c.cl.send(sioparser.Ack, c.n.name, id, true, data, atts)
		}
	}
	var (
		event string
		args  eventArgs
	)
	if len(p.Attachments) == 0 {
		// Text: split the JSON without decoding it; the handler decodes its
		// argument once, into its own type.
		name, rawArgs, err := sioparser.SplitEvent(p.Data)
		if err != nil {
			return // the decoder validated it: cannot happen
		}
		if d := bytes.TrimLeft(p.Data[1:], " \t\r\n"); len(d) > 0 && d[0] == '"' {
			event = string(name)
		}
		args.raw, err = rawArgs.Split(make([]json.RawMessage, 0, 2))
		if err != nil {
			return
		}
	} else {
		vals, err := decodeArgs(p)
		if err != nil || len(vals) == 0 {
			return
		}
		event, _ = vals[0].(string)
		args.vals = vals[1:]
	}
	c.notifyIncoming(event, args)
	if h := c.n.handlers[event]; h != nil {
		c.dispatch(event, h, args, ack)
		return
	}
	if h := c.n.raw[event]; h != nil {
		var reply Ack
		if p.HasID {
			reply = c.newAck(p.ID)
		}
		c.dispatch(event, func(ctx context.Context, c *Conn, a eventArgs) (any, error) {
			pa, err := eventArgsPlain(a)
			if err != nil {
				return nil, Errorf(CodeBadRequest, "arguments do not decode")
			}
			h(ctx, c, pa, reply)
			return nil, nil
		}, args, nil)
		return
	}
	// Nobody handles it. It still goes through the interceptors (it counts
	// against the rate limit); the ack is refused only if the namespace asks
	// for it, otherwise none is sent, as in Node.
	name := event
	if name == "" {
		name = "?"
	}
	if !c.n.refuseUnknown {
		ack = nil
	}
	c.dispatch("_unknown", func(context.Context, *Conn, eventArgs) (any, error) {
		return nil, Errorf(CodeBadRequest, "unknown event %q", truncate(name, 64))
	}, eventArgs{}, ack)
}

// dispatch runs on the client's queue: interceptors, handler, ack.
func (c *Conn) dispatch(event string, h eventHandler, args eventArgs, ack func(any)) {
	c.mu.Lock()
	if c.closed {
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
			c.n.srv.log.Error().Err(err).Str("nsp", c.n.name).Str("event", event).Str("sid", c.id).Msg("handler failed")
		}
		reply = ackFailure(e)
	} else if ack != nil {
		if reply, err = ackSuccess(res); err != nil {
			c.n.srv.log.Error().Err(err).Str("nsp", c.n.name).Str("event", event).Msg("ack not encodable")
			code, reply = CodeInternal, ackFailure(&Error{Code: CodeInternal, Message: "internal error"})
		}
	}
	if ack != nil {
		ack(reply)
	}
	took := time.Since(start)
	c.n.srv.obs.Event(c.n.name, event, took, code)
	if l := c.n.srv.log.Debug(); l.Enabled() {
		l.Str("nsp", c.n.name).Str("event", event).Str("sid", c.id).Str("user", c.user.ID).
			Str("code", code).Dur("took", took).Msg("event")
	}

	c.mu.Lock()
	c.running = false
	disconnect, whole := c.disconnect, c.closeSession
	c.disconnect, c.closeSession = false, false
	c.mu.Unlock()
	if disconnect {
		c.kick(whole)
	}
}

func (c *Conn) invoke(event string, h eventHandler, args eventArgs) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.n.srv.obs.Panic(c.n.name, event)
			c.n.srv.log.Error().Str("nsp", c.n.name).Str("event", event).Str("sid", c.id).
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

// recoverable disconnect reasons keep the session for the recovery window
// (Node's RECOVERABLE_DISCONNECT_REASONS).
var recoverableReasons = map[string]bool{
	"transport error": true, "transport close": true, "forced close": true,
	"ping timeout": true, "server shutting down": true, "forced server close": true,
}

// close ends the connection once: the session is kept if the reason is
// recoverable, the connection leaves its rooms, and the disconnect hooks are
// queued behind any running handler.
func (c *Conn) close(reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.dropAcksLocked()
	c.mu.Unlock()

	c.n.mu.RLock()
	rooms := c.roomsLocked(true)
	c.n.mu.RUnlock()
	if c.pid != "" && recoverableReasons[reason] {
		s := c.session(rooms)
		if c.n.log != nil {
			c.n.log.PersistSession(s)
		} else if c.n.store != nil {
			c.n.store.persist(s)
		}
	} else if c.pid != "" && c.n.log != nil {
		c.n.log.DropSession(c.pid)
	}
	c.n.remove(c)
	c.cl.remove(c)
	if i := c.n.srv.instrument(); i != nil {
		i.Disconnected(c, reason)
	}
	c.cl.push(func() {
		c.runHooks("disconnect", func(ctx context.Context) {
			for _, fn := range c.n.onDisconnect {
				fn(ctx, c, reason)
			}
		})
		c.release.run()
		close(c.hooksDone)
	})
}

// saveSession keeps the cluster's copy of a connected session current.
func (c *Conn) saveSession() {
	if c.n.log == nil || c.pid == "" || c.Closed() {
		return
	}
	c.n.mu.RLock()
	rooms := c.roomsLocked(true)
	c.n.mu.RUnlock()
	c.n.log.SaveSession(c.session(rooms))
}

// session is the connection's recoverable state with rooms.
func (c *Conn) session(rooms []string) Session {
	u := c.user
	return Session{Sid: c.id, Pid: c.pid, Rooms: rooms, Data: c.plainSocketData(), User: &u}
}

// plainSocketData is the socket's data as other nodes see it (FetchSockets,
// sessions): what SetData stored, else the user.
func (c *Conn) plainSocketData() any {
	if d := c.Data(); d != nil {
		if v, err := plainOf(d); err == nil {
			return v
		}
	}
	return plainData(&c.user)
}

func (c *Conn) runHooks(what string, fn func(ctx context.Context)) {
	defer func() {
		if r := recover(); r != nil {
			c.n.srv.obs.Panic(c.n.name, what)
			c.n.srv.log.Error().Str("nsp", c.n.name).Str("hook", what).Str("sid", c.id).
				Interface("panic", r).Bytes("stack", debug.Stack()).Msg("hook panicked")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), c.n.srv.opts.HandlerTimeout)
	defer cancel()
	fn(ctx)
}
