//go:build !ownengine

package sio

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/zishang520/socket.io/servers/socket/v3"
)

// Namespace is a Socket.IO namespace with typed handlers.
type Namespace struct {
	srv  *Server
	name string
	nsp  socket.Namespace

	mw           []ConnectFunc
	interceptors []Interceptor
	handlers     map[string]eventHandler
	onConnect    []func(ctx context.Context, c *Conn)
	onDisconnect []func(ctx context.Context, c *Conn, reason string)
}

func newNamespace(s *Server, name string) *Namespace {
	n := &Namespace{srv: s, name: name, nsp: s.io.Of(name, nil), handlers: map[string]eventHandler{}}
	n.nsp.Use(n.middleware)
	_ = n.nsp.On("connection", n.connection)
	return n
}

// Name is the namespace's name ("/" for the main one).
func (n *Namespace) Name() string { return n.name }

// Use adds a connect middleware for this namespace (after the server's).
func (n *Namespace) Use(fn ConnectFunc) { n.mw = append(n.mw, fn) }

// Intercept adds an interceptor for this namespace's events (after the server's).
func (n *Namespace) Intercept(fn Interceptor) { n.interceptors = append(n.interceptors, fn) }

// OnConnect registers fn to run when a connection completes, before any of
// its events are handled.
func (n *Namespace) OnConnect(fn func(ctx context.Context, c *Conn)) {
	n.onConnect = append(n.onConnect, fn)
}

// OnDisconnect registers fn to run once when a connection ends, after any
// event handler of that connection has returned.
func (n *Namespace) OnDisconnect(fn func(ctx context.Context, c *Conn, reason string)) {
	n.onDisconnect = append(n.onDisconnect, fn)
}

// Broadcast targets connections of a namespace by room.
type Broadcast struct {
	n      *Namespace
	rooms  []socket.Room
	except []socket.Room
}

// To targets the members of rooms (all connections when none is given).
func (n *Namespace) To(rooms ...string) Broadcast { return Broadcast{n: n}.To(rooms...) }

// To adds rooms to the target.
func (b Broadcast) To(rooms ...string) Broadcast {
	for _, r := range rooms {
		b.rooms = append(b.rooms, socket.Room(r))
	}
	return b
}

// Except excludes the members of rooms (a connection's ID is a room of its own).
func (b Broadcast) Except(rooms ...string) Broadcast {
	for _, r := range rooms {
		b.except = append(b.except, socket.Room(r))
	}
	return b
}

// Emit sends event with payload v to the target. v is encoded once for all
// recipients; []byte values (top level or in map[string]any) go as binary.
func (b Broadcast) Emit(event string, v any) error {
	w, err := toWire(v)
	if err != nil {
		return err
	}
	op := b.n.nsp.To(b.rooms...)
	if len(b.except) > 0 {
		op = op.Except(b.except...)
	}
	if err := op.Emit(event, w); err != nil {
		return fmt.Errorf("broadcast %q: %w", event, err)
	}
	b.n.srv.obs.Emitted(b.n.name, event)
	return nil
}

// middleware adapts the engine's namespace middleware to our ConnectFuncs.
func (n *Namespace) middleware(sock *socket.Socket, next func(*socket.ExtendedError)) {
	h := n.handshake(sock)
	if err := n.runConnect(h); err != nil {
		e := asConnectError(err)
		if e.Code == CodeInternal {
			n.srv.log.Error().Err(err).Str("nsp", n.name).Msg("connect middleware failed")
		}
		h.release.run()
		n.settle(sock)
		n.srv.obs.Handshake(n.name, e.Code)
		next(socket.NewExtendedError(e.Message, map[string]any{"code": e.Code}))
		return
	}
	if h.User == nil {
		h.User = &User{}
	}
	sock.SetData(h.User)
	g := n.srv.gateFor(sock.Conn())
	st := &pending{release: h.release, gate: g}
	// Registered before the socket can be connected, so no close is missed.
	// The cleanup is queued behind the connection's running handler: it never
	// runs concurrently with one.
	// Local.Disconnect waits for it (closing).
	_ = sock.On("disconnecting", func(args ...any) {
		reason, _ := firstString(args)
		done := n.srv.closing.start(sock)
		sock.Enqueue(func() {
			defer done()
			st.closed(reason)
		})
	})
	// The engine may close before the connection completes: release anyway.
	_ = sock.Conn().Once("close", func(...any) {
		n.srv.pending.Delete(sock)
		g.releaseAll()
		n.settle(sock)
		h.release.run()
	})
	n.srv.pending.Store(sock, st)
	g.add()
	next(nil)
}

func (n *Namespace) runConnect(h *Handshake) (err error) {
	defer func() {
		if r := recover(); r != nil {
			n.srv.obs.Panic(n.name, "connect")
			n.srv.log.Error().Str("nsp", n.name).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("connect middleware panicked")
			err = &Error{Code: CodeInternal, Message: "internal error"}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), n.srv.opts.HandlerTimeout)
	defer cancel()
	for _, list := range [][]ConnectFunc{n.srv.connectMW, n.mw} {
		for _, fn := range list {
			if err := fn(ctx, h); err != nil {
				return err
			}
		}
	}
	return nil
}

func (n *Namespace) handshake(sock *socket.Socket) *Handshake {
	hs := sock.Handshake()
	req := sock.Request().Request()
	h := &Handshake{
		Namespace:  n.name,
		Auth:       hs.Auth,
		Header:     req.Header,
		Query:      req.URL.Query(),
		RemoteAddr: hs.Address,
		Recovered:  sock.Recovered(),
		release:    &releaser{},
	}
	if h.Recovered {
		h.Previous, _ = sock.Data().(*User)
	}
	return h
}

func asConnectError(err error) *Error {
	e := AsError(err)
	if e.Message == "" {
		e = &Error{Code: e.Code, Message: e.Code}
	}
	return e
}

// pending carries a connection from the middleware to its cleanup.
type pending struct {
	release *releaser
	gate    *gate
	mu      sync.Mutex
	conn    *Conn
	done    bool
}

func (p *pending) attach(c *Conn) (alreadyClosed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn = c
	return p.done
}

// closed runs on the connection's queue after any handler in flight.
func (p *pending) closed(reason string) {
	p.mu.Lock()
	c := p.conn
	p.done = true
	p.mu.Unlock()
	if c != nil {
		c.close(reason)
	}
	p.release.run()
}

func (n *Namespace) connection(args ...any) {
	sock, ok := args[0].(*socket.Socket)
	if !ok {
		return
	}
	v, _ := n.srv.pending.LoadAndDelete(sock)
	st, _ := v.(*pending)
	if st == nil { // cannot happen: every socket passes the middleware
		sock.Disconnect(false)
		return
	}
	user, _ := sock.Data().(*User)
	c := &Conn{n: n, sock: sock, user: *user, release: st.release}
	for event, h := range n.handlers {
		_ = sock.On(event, c.listener(event, h))
	}
	sock.OnAny(c.unknownEvent)
	// The engine has registered the namespace by now: let packets through.
	st.gate.done()
	n.settle(sock)
	n.srv.obs.Handshake(n.name, "ok")
	c.runHooks("connect", func(ctx context.Context) {
		for _, fn := range n.onConnect {
			fn(ctx, c)
		}
	})
	if st.attach(c) {
		c.close("transport close")
	}
}

func (n *Namespace) settle(sock *socket.Socket) {
	if b, ok := n.nsp.Adapter().(*bridge); ok {
		b.settle(sock)
	}
}

// LocalRoomCount is the number of rooms with members on this node, not
// counting each connection's own room.
func (n *Namespace) LocalRoomCount() int {
	a := n.nsp.Adapter()
	return a.Rooms().Len() - a.Sids().Len()
}
