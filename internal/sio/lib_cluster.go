//go:build !ownengine

package sio

import (
	"math"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zishang520/socket.io/parsers/socket/v3/parser"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// bridge is the engine adapter of a clustered namespace: the engine's own
// adapter for local work, plus the Link for everything that crosses nodes.
type bridge struct {
	socket.Adapter
	link      Link
	log       LogLink // set when the cluster keeps sessions (recovery on a LogCluster)
	recovery  bool
	persisted sync.Map // sid -> struct{}: PersistSession ran, the session must outlive DelAll

	// joined orders room members as Node does (Local.Sockets): when each
	// socket joined each of its rooms.
	seq    atomic.Uint64
	joined sync.Map // joinKey -> uint64

	closing  *closeWaits
	hookWait time.Duration
}

type joinKey struct {
	room socket.Room
	id   socket.SocketId
}

type bridgeBuilder struct {
	cluster  Cluster
	recovery bool
	closing  *closeWaits
	hookWait time.Duration // how long Local.Disconnect waits for disconnect hooks
}

// closeWaits tracks the sockets whose disconnect hooks are pending, so that
// Local.Disconnect can return after they ran.
type closeWaits struct {
	m sync.Map // *socket.Socket -> chan struct{}, closed once its hooks ran
}

// start records that s is closing; call done once its hooks ran.
func (w *closeWaits) start(s *socket.Socket) (done func()) {
	ch := make(chan struct{})
	w.m.Store(s, ch)
	return func() {
		w.m.CompareAndDelete(s, ch)
		close(ch)
	}
}

// wait returns once the hooks of ss ran, or after timeout.
func (w *closeWaits) wait(ss []*socket.Socket, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, s := range ss {
		v, ok := w.m.Load(s)
		if !ok {
			continue
		}
		select {
		case <-v.(chan struct{}):
		case <-t.C:
			return
		}
	}
}

func (b *bridgeBuilder) New(nsp socket.Namespace) socket.Adapter {
	lc, isLog := b.cluster.(LogCluster)
	var base socket.Adapter
	if b.recovery && !isLog {
		base = socket.MakeSessionAwareAdapter() // sessions and missed packets kept on this node
	} else {
		base = socket.MakeAdapter()
	}
	br := &bridge{Adapter: base, recovery: b.recovery, closing: b.closing, hookWait: b.hookWait}
	if br.closing == nil {
		br.closing = &closeWaits{}
	}
	br.Prototype(br)
	br.Construct(nsp)
	switch {
	case b.cluster == nil: // one node: the bridge only adds the session takeover below
	case isLog && b.recovery:
		br.log = lc.AttachLog(nsp.Name(), &local{br: br})
		br.link = br.log
	default:
		br.link = b.cluster.Attach(nsp.Name(), &local{br: br})
	}
	return br
}

// Broadcast publishes first (before the session-aware base appends its
// recovery offset to the packet), then delivers locally. On a log, the
// offset the cluster assigned is what local recipients get too.
func (b *bridge) Broadcast(p *parser.Packet, opts *socket.BroadcastOptions) {
	if b.link == nil || (opts != nil && opts.Flags != nil && opts.Flags.Local) {
		b.Adapter.Broadcast(p, opts)
		return
	}
	if b.log != nil {
		if _, err := b.log.Append(toPacket(b.Nsp().Name(), p), toOpts(opts)); err == nil {
			return // delivered from the log, with its offset, on every node
		}
	} else if b.link.Publish(toPacket(b.Nsp().Name(), p), toOpts(opts)) {
		return
	}
	b.Adapter.Broadcast(p, opts)
}

// settle ends a pending restore of the socket's session (see LogLink.Settle).
func (b *bridge) settle(s *socket.Socket) {
	if b.log != nil && s.Recovered() {
		b.log.Settle(socketPid(s))
	}
}

// recoverable packets carry an offset: events without ack, not volatile.
func recoverable(p *parser.Packet, opts *socket.BroadcastOptions) bool {
	return p.Type == parser.EVENT && p.Id == nil && !(opts != nil && opts.Flags != nil && opts.Flags.Volatile)
}

// AddAll, Del and DelAll keep the cluster's copy of the session current.
// They also record the join order (see joined).
func (b *bridge) AddAll(id socket.SocketId, rooms *types.Set[socket.Room]) {
	for _, r := range rooms.Keys() {
		if _, ok := b.joined.Load(joinKey{r, id}); !ok {
			b.joined.Store(joinKey{r, id}, b.seq.Add(1))
		}
	}
	b.Adapter.AddAll(id, rooms)
	b.saveSession(id)
}

func (b *bridge) Del(id socket.SocketId, room socket.Room) {
	b.Adapter.Del(id, room)
	b.joined.Delete(joinKey{room, id})
	b.saveSession(id)
}

func (b *bridge) DelAll(id socket.SocketId) {
	if rooms := b.Adapter.SocketRooms(id); rooms != nil {
		for _, r := range rooms.Keys() {
			b.joined.Delete(joinKey{r, id})
		}
	}
	if b.log != nil {
		if _, kept := b.persisted.LoadAndDelete(id); !kept {
			if s, ok := b.Nsp().Sockets().Load(id); ok {
				b.log.DropSession(socketPid(s))
			}
		}
	}
	b.Adapter.DelAll(id)
}

func (b *bridge) saveSession(id socket.SocketId) {
	if b.log == nil {
		return
	}
	s, ok := b.Nsp().Sockets().Load(id)
	if !ok || !s.Connected() {
		return
	}
	b.log.SaveSession(Session{Sid: string(id), Pid: socketPid(s), Rooms: roomsOf(b.Adapter.SocketRooms(id)), Data: plainData(s.Data())})
}

func (b *bridge) PersistSession(s *socket.SessionToPersist) {
	if b.log == nil {
		b.Adapter.PersistSession(s)
		return
	}
	b.persisted.Store(s.Sid, struct{}{})
	b.log.PersistSession(Session{Sid: string(s.Sid), Pid: string(s.Pid), Rooms: roomsOf(s.Rooms), Data: plainData(s.Data)})
}

// RestoreSession first ends a still-live socket holding the session: its
// client came back over a new transport before this node noticed the old
// one was dead (a long-polling client cut between two polls is only noticed
// at the ping timeout). Closing it persists the session, which is then
// restored with everything the dead transport did not deliver.
func (b *bridge) RestoreSession(pid socket.PrivateSessionId, offset string) (*socket.Session, error) {
	b.takeOver(string(pid))
	if b.log == nil {
		return b.Adapter.RestoreSession(pid, offset)
	}
	got, err := b.log.RestoreSession(string(pid), offset)
	if err != nil || got == nil {
		return nil, err
	}
	rooms := types.NewSet[socket.Room]()
	for _, r := range got.Rooms {
		rooms.Add(socket.Room(r))
	}
	return &socket.Session{
		SessionToPersist: &socket.SessionToPersist{Sid: socket.SocketId(got.Sid), Pid: pid, Rooms: rooms, Data: userFromPlain(got.Data)},
		MissedPackets:    got.Missed,
	}, nil
}

func roomsOf(set *types.Set[socket.Room]) []string {
	if set == nil {
		return nil
	}
	out := make([]string, 0, set.Len())
	for _, r := range set.Keys() {
		out = append(out, string(r))
	}
	return out
}

func (b *bridge) takeOver(pid string) {
	if pid == "" {
		return
	}
	var stale *socket.Socket
	b.Nsp().Sockets().Range(func(_ socket.SocketId, s *socket.Socket) bool {
		if socketPid(s) == pid {
			stale = s
			return false
		}
		return true
	})
	if stale != nil && stale.Connected() {
		stale.Conn().Close(true) // discard: "forced close", a recoverable reason
	}
}

// socketPid reads the socket's private session id, which the engine keeps
// unexported (v3.0.6 socket.go: pid); our own engine will expose it.
func socketPid(s *socket.Socket) string {
	return reflect.ValueOf(s).Elem().FieldByName("pid").String()
}

func (b *bridge) Close() {
	if b.link != nil {
		b.link.Close()
	}
	b.Adapter.Close()
}

// local implements Local over the base adapter.
type local struct{ br *bridge }

func (l *local) Deliver(p Packet, opts BroadcastOpts) {
	data := make([]any, len(p.Data), len(p.Data)+1)
	copy(data, p.Data)
	if p.Offset != "" && l.br.recovery {
		data = append(data, p.Offset)
	}
	l.br.Adapter.Broadcast(&parser.Packet{Type: parser.EVENT, Nsp: l.br.Nsp().Name(), Data: data}, fromOpts(opts))
}

func (l *local) DeliverWithAck(p Packet, opts BroadcastOpts, onCount func(int), onAck func(any)) {
	data := make([]any, len(p.Data))
	copy(data, p.Data)
	l.br.Adapter.BroadcastWithAck(&parser.Packet{Type: parser.EVENT, Nsp: l.br.Nsp().Name(), Data: data}, fromOpts(opts),
		func(n uint64) { onCount(int(n)) },
		func(args []any, err error) {
			if err != nil {
				return
			}
			var first any
			if len(args) > 0 {
				first = plainValue(args[0])
			}
			onAck(first)
		})
}

func (l *local) HasSocket(id string) bool {
	_, ok := l.br.Nsp().Sockets().Load(socket.SocketId(id))
	return ok
}

func (l *local) HasRoom(room string) bool {
	_, ok := l.br.Rooms().Load(socket.Room(room))
	return ok
}

func (l *local) Join(opts BroadcastOpts, rooms []string) {
	l.br.Adapter.AddSockets(fromOpts(opts), toRooms(rooms))
}

func (l *local) Leave(opts BroadcastOpts, rooms []string) {
	l.br.Adapter.DelSockets(fromOpts(opts), toRooms(rooms))
}

// Disconnect disconnects in Node's order and returns once the sockets'
// disconnect hooks ran (they are queued on each socket, behind its running
// handler: see Namespace.middleware), bounded by the handler timeout.
func (l *local) Disconnect(opts BroadcastOpts, close bool) {
	socks := l.selected(opts)
	for _, s := range socks {
		// Disconnect(true) loses the DISCONNECT packet in this engine: send
		// it, then close the transport.
		s.Disconnect(false)
		if close {
			s.Conn().Close(false)
		}
	}
	l.br.closing.wait(socks, l.br.hookWait)
}

// selected lists the connected local sockets opts selects, in Node's order:
// by the first of opts.Rooms they are in, then by when they joined it (all
// sockets: by when they connected, i.e. joined their own room).
func (l *local) selected(opts BroadcastOpts) []*socket.Socket {
	var socks []*socket.Socket
	l.br.Adapter.FetchSockets(fromOpts(opts))(func(ss []socket.SocketDetails, _ error) {
		for _, d := range ss {
			if s, ok := d.(*socket.Socket); ok {
				socks = append(socks, s)
			}
		}
	})
	type rank struct {
		room int
		seq  uint64
	}
	ranks := make(map[*socket.Socket]rank, len(socks))
	for _, s := range socks {
		r := rank{len(opts.Rooms), math.MaxUint64}
		if len(opts.Rooms) == 0 {
			if v, ok := l.br.joined.Load(joinKey{socket.Room(s.Id()), s.Id()}); ok {
				r = rank{0, v.(uint64)}
			}
		}
		for i, room := range opts.Rooms {
			if v, ok := l.br.joined.Load(joinKey{socket.Room(room), s.Id()}); ok {
				r = rank{i, v.(uint64)}
				break
			}
		}
		ranks[s] = r
	}
	sort.SliceStable(socks, func(i, j int) bool {
		a, b := ranks[socks[i]], ranks[socks[j]]
		return a.room < b.room || (a.room == b.room && a.seq < b.seq)
	})
	return socks
}

func (l *local) Sockets(rooms []string) []string {
	socks := l.selected(BroadcastOpts{Rooms: rooms})
	out := make([]string, len(socks))
	for i, s := range socks {
		out[i] = string(s.Id())
	}
	return out
}

func (l *local) Rooms() []string {
	var out []string
	l.br.Adapter.Rooms().Range(func(r socket.Room, _ *types.Set[socket.SocketId]) bool {
		out = append(out, string(r))
		return true
	})
	return out
}

func (l *local) Fetch(opts BroadcastOpts) []SocketInfo {
	var out []SocketInfo
	for _, s := range l.selected(opts) {
		rooms := make([]string, 0, s.Rooms().Len())
		for _, r := range s.Rooms().Keys() {
			rooms = append(rooms, string(r))
		}
		var hs map[string]any
		if h := s.Handshake(); h != nil {
			hs = map[string]any{"time": h.Time, "address": h.Address, "xdomain": h.Xdomain,
				"secure": h.Secure, "issued": h.Issued, "url": h.Url}
		}
		out = append(out, SocketInfo{ID: string(s.Id()), Handshake: hs, Rooms: rooms, Data: plainData(s.Data())})
	}
	return out
}

func toRooms(rs []string) []socket.Room {
	out := make([]socket.Room, len(rs))
	for i, r := range rs {
		out[i] = socket.Room(r)
	}
	return out
}

func fromOpts(o BroadcastOpts) *socket.BroadcastOptions {
	flags := &socket.BroadcastFlags{}
	flags.Volatile = o.Volatile
	if o.Compress {
		flags.Compress = new(true)
	}
	flags.Local = true
	return &socket.BroadcastOptions{
		Rooms:  types.NewSet(toRooms(o.Rooms)...),
		Except: types.NewSet(toRooms(o.Except)...),
		Flags:  flags,
	}
}

func toOpts(o *socket.BroadcastOptions) BroadcastOpts {
	var out BroadcastOpts
	if o == nil {
		return out
	}
	if o.Rooms != nil {
		for _, r := range o.Rooms.Keys() {
			out.Rooms = append(out.Rooms, string(r))
		}
	}
	if o.Except != nil {
		for _, r := range o.Except.Keys() {
			out.Except = append(out.Except, string(r))
		}
	}
	if o.Flags != nil {
		out.Volatile = o.Flags.Volatile
		out.Compress = o.Flags.Compress != nil && *o.Flags.Compress
		out.Local = o.Flags.Local
	}
	return out
}

func toPacket(nsp string, p *parser.Packet) Packet {
	data, _ := p.Data.([]any)
	plain := make([]any, len(data))
	for i, v := range data {
		plain[i] = plainValue(v)
	}
	return Packet{Type: int(parser.EVENT), Nsp: nsp, Data: plain, ID: p.Id}
}
