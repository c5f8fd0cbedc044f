package sio

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/switchboard/switchboard/internal/engine/eio"
	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// Namespace is a Socket.IO namespace with typed handlers.
type Namespace struct {
	srv  *Server
	name string

	mw            []ConnectFunc
	interceptors  []Interceptor
	handlers      map[string]eventHandler // Handle's typed handlers
	raw           map[string]EventHandler // On's handlers
	refuseUnknown bool
	ownMWOnly     bool // SkipServerMiddleware
	onConnect     []func(ctx context.Context, c *Conn)
	onDisconnect  []func(ctx context.Context, c *Conn, reason string)

	link  Link           // nil on one node
	log   LogLink        // set when the cluster keeps sessions
	store *recoveryStore // sessions and packets kept on this node (recovery without a LogLink)

	// mu guards the room index. Broadcasts deliver under the read lock, so a
	// connection registering under the write lock (with its missed packets)
	// never falls between a packet's recording and its delivery.
	mu      sync.RWMutex
	sockets map[string]*Conn
	rooms   map[string]map[*Conn]uint64 // member -> join sequence (Node visits members in join order)
	byPid   map[string]*Conn
	seq     uint64 // joins and connections, in order
}

func newNamespace(s *Server, name string) *Namespace {
	n := &Namespace{
		srv: s, name: name, handlers: map[string]eventHandler{}, raw: map[string]EventHandler{},
		sockets: map[string]*Conn{}, rooms: map[string]map[*Conn]uint64{}, byPid: map[string]*Conn{},
	}
	recovery := s.opts.RecoveryWindow > 0
	lc, isLog := s.opts.Cluster.(LogCluster)
	useLog := s.opts.Cluster != nil && isLog && recovery
	// The store exists before the attach: the adapter may deliver to n as
	// soon as it is subscribed, from its own goroutine, and Deliver reads it.
	if recovery && !useLog {
		n.store = newRecoveryStore(s.opts.RecoveryWindow, s.opts.RecoveryMaxBytes, func() { s.obs.Limit(LimitRecoveryEvict) })
	}
	// Attaching SUBSCRIBEs (up to the adapter's timeout): Server.Of calls us
	// without its lock held.
	switch {
	case s.opts.Cluster == nil:
	case useLog:
		n.log = lc.AttachLog(name, (*ownLocal)(n))
		n.link = n.log
	default:
		n.link = s.opts.Cluster.Attach(name, (*ownLocal)(n))
	}
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

// LocalRoomCount is the number of rooms with members on this node, not
// counting each connection's own room.
func (n *Namespace) LocalRoomCount() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.rooms)
}

// LocalCount is the number of connections to the namespace on this node.
func (n *Namespace) LocalCount() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.sockets)
}

// Broadcast targets connections of a namespace by room.
type Broadcast struct {
	n        *Namespace
	rooms    []string
	except   []string
	volatile bool
}

// To targets the members of rooms (all connections when none is given).
func (n *Namespace) To(rooms ...string) Broadcast { return Broadcast{n: n}.To(rooms...) }

// To adds rooms to the target.
func (b Broadcast) To(rooms ...string) Broadcast {
	b.rooms = append(b.rooms[:len(b.rooms):len(b.rooms)], rooms...)
	return b
}

// Volatile makes the broadcast one that may be lost, as Node's
// io.volatile.emit: a recipient whose transport is busy (a backlog being
// written, no poll waiting) does not get it, and it is not kept for
// connection state recovery.
func (b Broadcast) Volatile() Broadcast {
	b.volatile = true
	return b
}

// Except excludes the members of rooms (a connection's ID is a room of its own).
func (b Broadcast) Except(rooms ...string) Broadcast {
	b.except = append(b.except[:len(b.except):len(b.except)], rooms...)
	return b
}

// Emit sends event with args to the target, as Node's
// io.to(room).emit(event, ...args): any number of arguments, none included.
// The payload is encoded once for all recipients; []byte values (anywhere in
// args) go as binary.
//
// In a cluster every node, this one included, delivers the broadcast when it
// comes back from the cluster. When the cluster cannot take it (Redis
// unreachable), Emit returns an error wrapping ErrUnavailable and the
// broadcast is delivered nowhere: delivering it here only would reach part
// of the target while the caller believes it was sent. A broadcast to one
// connection of this node alone (its own room, as Conn.Emit) is the
// exception: it is delivered here, which reaches its whole target.
func (b Broadcast) Emit(event string, args ...any) error {
	n := b.n
	opts := BroadcastOpts{Rooms: b.rooms, Except: b.except, Volatile: b.volatile}
	if n.link != nil {
		data := make([]any, 1, len(args)+1)
		data[0] = event
		for _, a := range args {
			w, err := toWire(a)
			if err != nil {
				return err
			}
			data = append(data, plainValue(w))
		}
		p := Packet{Type: int(sioparser.Event), Nsp: n.name, Data: data}
		var cause error
		if n.log != nil {
			if _, cause = n.log.Append(p, opts); cause == nil {
				n.srv.obs.Emitted(n.name, event)
				return nil
			}
		} else if n.link.Publish(p, opts) {
			n.srv.obs.Emitted(n.name, event)
			return nil
		}
		if !n.onlyLocalSocket(opts) {
			if cause == nil {
				return fmt.Errorf("broadcast %q: %w", event, ErrUnavailable)
			}
			return fmt.Errorf("broadcast %q: %w (%v)", event, ErrUnavailable, cause)
		}
	}
	data, atts, err := eventArgsData(event, args)
	if err != nil {
		return fmt.Errorf("broadcast %q: %w", event, err)
	}
	n.deliver(data, atts, opts, "", n.store != nil)
	n.srv.obs.Emitted(n.name, event)
	return nil
}

// OnceSupported reports whether the namespace's cluster link publishes
// under a Once (Broadcast.EmitOnce).
func (n *Namespace) OnceSupported() bool {
	_, ok := n.link.(OnceLink)
	return ok
}

// EmitOnce broadcasts event unless once.Key holds a live entry in the
// cluster, atomically with the publish (see Once); prev is that entry when
// it did (nothing sent). Without a link that supports it (OnceSupported) it
// returns an error and sends nothing. A failure wraps ErrUnavailable.
func (b Broadcast) EmitOnce(once Once, event string, v any) (prev []byte, err error) {
	n := b.n
	ol, ok := n.link.(OnceLink)
	if !ok {
		return nil, fmt.Errorf("broadcast %q: the cluster does not publish once", event)
	}
	w, err := toWire(v)
	if err != nil {
		return nil, err
	}
	p := Packet{Type: int(sioparser.Event), Nsp: n.name, Data: []any{event, plainValue(w)}}
	prev, err = ol.PublishOnce(p, BroadcastOpts{Rooms: b.rooms, Except: b.except}, once)
	if err != nil {
		return nil, fmt.Errorf("broadcast %q: %w (%v)", event, ErrUnavailable, err)
	}
	if prev == nil {
		n.srv.obs.Emitted(n.name, event)
	}
	return prev, nil
}

// onlyLocalSocket reports whether opts targets one connection of this node
// and nothing else (its own room, no exceptions): the cluster has no other
// member of that target.
func (n *Namespace) onlyLocalSocket(opts BroadcastOpts) bool {
	if len(opts.Rooms) != 1 || len(opts.Except) != 0 {
		return false
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.sockets[opts.Rooms[0]] != nil
}

// deliver sends an EVENT to the local members opts selects, encoded once.
// With recoverable set, it gets an offset (offset, or one of the local
// store's) as its last argument and is kept for connection state recovery.
func (n *Namespace) deliver(data json.RawMessage, atts [][]byte, opts BroadcastOpts, offset string, recoverable bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	recoverable = recoverable && !opts.Volatile
	var msgs []*eio.Message
	switch {
	case recoverable && offset != "":
		msgs = n.srv.encode(sioparser.Event, n.name, 0, false, appendOffset(data, offset), atts)
	case recoverable && n.store != nil:
		msgs = n.store.add(opts, func(offset string) []*eio.Message {
			return n.srv.encode(sioparser.Event, n.name, 0, false, appendOffset(data, offset), atts)
		})
	default:
		msgs = n.srv.encode(sioparser.Event, n.name, 0, false, data, atts)
	}
	if opts.Volatile {
		n.each(opts, func(c *Conn) { c.cl.eng.SendVolatile(msgs...) })
		return
	}
	n.each(opts, func(c *Conn) { c.cl.eng.Send(msgs...) })
}

// members calls fn for every local member of room r with its join
// sequence. A connection's own room is implied (not kept in the index).
func (n *Namespace) members(r string, fn func(c *Conn, seq uint64)) {
	if c := n.sockets[r]; c != nil {
		fn(c, c.seq)
	}
	for c, seq := range n.rooms[r] {
		fn(c, seq)
	}
}

// excluded is the set of local members of opts.Except (nil when none);
// n.mu must be held.
func (n *Namespace) excluded(opts BroadcastOpts) map[*Conn]bool {
	var except map[*Conn]bool
	for _, r := range opts.Except {
		n.members(r, func(c *Conn, _ uint64) {
			if except == nil {
				except = map[*Conn]bool{}
			}
			except[c] = true
		})
	}
	return except
}

// each calls fn for every local connection opts selects; n.mu must be held.
func (n *Namespace) each(opts BroadcastOpts, fn func(*Conn)) {
	except := n.excluded(opts)
	skip := func(c *Conn) bool { return except[c] }
	switch len(opts.Rooms) {
	case 0:
		for _, c := range n.sockets {
			if !skip(c) {
				fn(c)
			}
		}
	case 1:
		n.members(opts.Rooms[0], func(c *Conn, _ uint64) {
			if !skip(c) {
				fn(c)
			}
		})
	default:
		seen := map[*Conn]struct{}{}
		for _, r := range opts.Rooms {
			n.members(r, func(c *Conn, _ uint64) {
				if _, dup := seen[c]; dup || skip(c) {
					return
				}
				seen[c] = struct{}{}
				fn(c)
			})
		}
	}
}

// selected lists the local connections opts selects in the order Node's
// adapter visits them: room by room as given, each room's members in join
// order; all connections in connection order when no room is given.
func (n *Namespace) selected(opts BroadcastOpts) []*Conn {
	n.mu.RLock()
	defer n.mu.RUnlock()
	except := n.excluded(opts)
	var out []*Conn
	if len(opts.Rooms) == 0 {
		for _, c := range n.sockets {
			if !except[c] {
				out = append(out, c)
			}
		}
		slices.SortFunc(out, func(a, b *Conn) int { return cmpUint(a.seq, b.seq) })
		return out
	}
	seen := map[*Conn]bool{}
	type member struct {
		c   *Conn
		seq uint64
	}
	for _, r := range opts.Rooms {
		var ms []member
		n.members(r, func(c *Conn, seq uint64) {
			if !except[c] && !seen[c] {
				seen[c] = true
				ms = append(ms, member{c, seq})
			}
		})
		slices.SortFunc(ms, func(a, b member) int { return cmpUint(a.seq, b.seq) })
		for _, m := range ms {
			out = append(out, m.c)
		}
	}
	return out
}

func (n *Namespace) join(c *Conn, rooms ...string) {
	n.mu.Lock()
	n.joinLocked(c, rooms...)
	n.mu.Unlock()
}

func (n *Namespace) joinLocked(c *Conn, rooms ...string) {
	if c.gone {
		return
	}
	for _, r := range rooms {
		if _, ok := c.rooms[r]; ok || r == c.id {
			continue // a connection's own room is implied
		}
		c.rooms[r] = struct{}{}
		if i := n.srv.instrument(); i != nil {
			i.RoomJoined(c, r)
		}
		m := n.rooms[r]
		if m == nil {
			m = map[*Conn]uint64{}
			n.rooms[r] = m
		}
		n.seq++
		m[c] = n.seq
	}
}

func (n *Namespace) leave(c *Conn, room string) {
	n.mu.Lock()
	n.leaveLocked(c, room)
	n.mu.Unlock()
}

func (n *Namespace) leaveLocked(c *Conn, room string) {
	if _, ok := c.rooms[room]; !ok {
		return
	}
	delete(c.rooms, room)
	if i := n.srv.instrument(); i != nil {
		i.RoomLeft(c, room)
	}
	if m := n.rooms[room]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(n.rooms, room)
		}
	}
}

// remove takes c out of the namespace and returns the rooms it was in.
func (n *Namespace) remove(c *Conn) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	rooms := make([]string, 0, len(c.rooms))
	for r := range c.rooms {
		rooms = append(rooms, r)
	}
	for _, r := range rooms {
		n.leaveLocked(c, r)
	}
	c.gone = true
	if n.sockets[c.id] == c {
		delete(n.sockets, c.id)
	}
	if n.byPid[c.pid] == c {
		delete(n.byPid, c.pid)
	}
	return rooms
}

// connect runs the connect flow of a client joining the namespace: session
// recovery, middleware, registration and the CONNECT packet.
func (n *Namespace) connect(cl *client, authRaw json.RawMessage) {
	var auth map[string]any
	if len(authRaw) > 0 {
		_ = json.Unmarshal(authRaw, &auth)
	}
	hs := cl.eng.Handshake()
	h := &Handshake{
		Namespace: n.name, Auth: auth, Header: hs.Header, Query: hs.Query(),
		RemoteAddr: hs.ClientIP, Pending: cl.pending(), release: &releaser{},
	}

	// Connection state recovery: {pid, offset} in the auth payload.
	var sess *Session
	var pid string
	var after uint64 // the store's sequence of the client's offset
	if n.srv.opts.RecoveryWindow > 0 {
		p, _ := auth["pid"].(string)
		off, _ := auth["offset"].(string)
		if p != "" && off != "" {
			n.takeOver(p)
			if n.log != nil {
				s, err := n.log.RestoreSession(p, off)
				if err != nil {
					n.srv.log.Warn().Err(err).Str("nsp", n.name).Msg("session not restored")
				}
				sess = s
			} else if n.store != nil {
				sess, after = n.store.take(p, off)
			}
			if sess != nil {
				pid = p
				h.Recovered = true
				h.Previous = sess.User
				if h.Previous == nil { // restored from the cluster: the data tells, unless SetData replaced it
					h.Previous = userFromPlain(sess.Data)
				}
			}
		}
	}
	settle := func() {
		if sess != nil && n.log != nil {
			n.log.Settle(pid)
		}
	}

	if err := n.runConnect(h); err != nil {
		e := asConnectError(err)
		if e.Code == CodeInternal {
			n.srv.log.Error().Err(err).Str("nsp", n.name).Msg("connect middleware failed")
		}
		h.release.run()
		settle()
		n.srv.obs.Handshake(n.name, e.Code)
		body, _ := json.Marshal(map[string]any{"message": e.Message, "data": map[string]any{"code": e.Code}})
		if cl.v3 {
			body = connectErrorV3(e)
		}
		cl.send(sioparser.ConnectError, n.name, 0, false, body, nil)
		return
	}
	if h.User == nil {
		h.User = &User{}
	}
	// What the cluster log restored is encoded here, before the write lock
	// (up to maxReplayPackets events: encoding them under it would stop
	// every broadcast of the namespace meanwhile). Under the lock only the
	// ordering is done: the node store's missed packets (already encoded) are
	// read, the connection is registered and its replay queued before any
	// later broadcast.
	var replay [][]*eio.Message
	if sess != nil && n.log != nil {
		replay = make([][]*eio.Message, 0, len(sess.Missed))
		for _, d := range sess.Missed {
			if data, atts, err := sioparser.MarshalData(d); err == nil {
				replay = append(replay, n.srv.encode(sioparser.Event, n.name, 0, false, data, atts))
			}
		}
		sess.Missed = nil // encoded: the decoded values go now
	}
	n.mu.Lock()
	var missed [][]*eio.Message
	if sess != nil && n.store != nil {
		var complete bool
		if missed, complete = n.store.missed(sess.Rooms, after); !complete {
			// Evicted (or grown past the replay cap) while the middleware
			// ran: a fresh session, never a partial history.
			sess = nil
		}
	}
	if sess != nil && n.log != nil {
		// The cluster's restore ends here, under the lock: the broadcasts
		// that came while it ran follow the replay, before any later one.
		more, ok := n.log.Resume(pid)
		if !ok { // failed meanwhile (too much came): a fresh session
			sess, replay = nil, nil
		}
		for _, d := range more { // bounded by the adapter's restore buffer
			if data, atts, err := sioparser.MarshalData(d); err == nil {
				replay = append(replay, n.srv.encode(sioparser.Event, n.name, 0, false, data, atts))
			}
		}
	}
	c := &Conn{n: n, cl: cl, user: *h.User, auth: h.Auth, release: h.release, rooms: map[string]struct{}{}, hooksDone: make(chan struct{})}
	if sess != nil {
		c.id, c.pid, c.recovered = sess.Sid, pid, true
		if !isUserData(sess.Data) {
			c.data = sess.Data // what SetData stored, in its plain form, as Node restores socket.data
		}
	} else if cl.v3 { // no recovery: a protocol 4 CONNECT carries no pid
		c.id = socketIDV3(n.name, cl.eng.ID())
	} else {
		c.id = newID()
		if n.srv.opts.RecoveryWindow > 0 {
			c.pid = newID()
		}
	}
	if !cl.add(c) {
		n.mu.Unlock()
		h.release.run()
		settle()
		return
	}

	connectData := []byte(`{"sid":` + quote(c.id) + `}`)
	switch {
	case cl.v3:
		connectData = nil
	case c.pid != "":
		connectData = []byte(`{"sid":` + quote(c.id) + `,"pid":` + quote(c.pid) + `}`)
	}
	n.seq++
	c.seq = n.seq
	n.sockets[c.id] = c
	if c.pid != "" {
		n.byPid[c.pid] = c
	}
	if sess != nil {
		n.joinLocked(c, sess.Rooms...)
	}
	// CONNECT, then the missed packets, before any live broadcast. One Send
	// per packet, as live: a replay past MaxBuffered closes the session after
	// what fits, whose offsets the client's next recovery starts from.
	cl.send(sioparser.Connect, n.name, 0, false, connectData, nil)
	for _, m := range missed {
		cl.eng.Send(m...)
	}
	for _, m := range replay {
		cl.eng.Send(m...)
	}
	n.mu.Unlock()
	// The CONNECT (and the replay) leave in a write of their own, before what
	// the connect hooks send, as from Node (whose transport is not writable
	// again until its first write completes): clients that read one frame per
	// event, the official protocol suite among them, rely on it.
	cl.eng.Flush()
	settle()
	c.saveSession()

	n.srv.obs.Handshake(n.name, "ok")
	if i := n.srv.instrument(); i != nil {
		i.Connected(c)
	}
	c.runHooks("connect", func(ctx context.Context) {
		for _, fn := range n.onConnect {
			fn(ctx, c)
		}
	})
}

// takeOver ends a live connection still holding session pid: its client came
// back over a new transport before this node noticed the old one was dead.
// Closing it persists the session, which is then restored with everything
// the dead transport did not deliver.
func (n *Namespace) takeOver(pid string) {
	n.mu.RLock()
	stale := n.byPid[pid]
	n.mu.RUnlock()
	if stale != nil {
		stale.close("forced close")
		stale.cl.eng.CloseNow()
	}
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
	lists := [][]ConnectFunc{n.srv.connectMW, n.mw}
	if n.ownMWOnly {
		lists = lists[1:]
	}
	for _, list := range lists {
		for _, fn := range list {
			if err := fn(ctx, h); err != nil {
				return err
			}
		}
	}
	return nil
}

func asConnectError(err error) *Error {
	e := AsError(err)
	if e.Message == "" {
		e = &Error{Code: e.Code, Message: e.Code}
	}
	return e
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// hostOnly is the client's IP without the port, as Node reports it.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
