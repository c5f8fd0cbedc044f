package sio

import (
	"time"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// ownLocal is what a cluster adapter may do to this node's sockets of one
// namespace (the Local interface).
type ownLocal Namespace

func (l *ownLocal) ns() *Namespace { return (*Namespace)(l) }

func (l *ownLocal) Deliver(p Packet, opts BroadcastOpts) {
	n := l.ns()
	data, atts, err := sioparser.MarshalData(p.Data)
	if err != nil {
		n.srv.log.Warn().Err(err).Str("nsp", n.name).Msg("cluster packet not encodable: dropped")
		return
	}
	recovery := n.srv.opts.RecoveryWindow > 0
	n.deliver(data, atts, opts, p.Offset, recovery && (p.Offset != "" || n.store != nil))
}

func (l *ownLocal) DeliverWithAck(p Packet, opts BroadcastOpts, onCount func(int), onAck func(any)) {
	n := l.ns()
	data, atts, err := sioparser.MarshalData(p.Data)
	if err != nil {
		onCount(0)
		return
	}
	sent := 0
	for _, c := range n.selected(opts) {
		if c.emitWithAck(data, atts, func(args []any) {
			var first any
			if len(args) > 0 {
				first = args[0]
			}
			onAck(first)
		}) {
			sent++ // a connection closed meanwhile would never answer
		}
	}
	onCount(sent)
}

func (l *ownLocal) HasSocket(id string) bool {
	n := l.ns()
	n.mu.RLock()
	defer n.mu.RUnlock()
	_, ok := n.sockets[id]
	return ok
}

func (l *ownLocal) HasRoom(room string) bool {
	n := l.ns()
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.rooms[room]) > 0 || n.sockets[room] != nil
}

func (l *ownLocal) Join(opts BroadcastOpts, rooms []string) {
	for _, c := range l.ns().selected(opts) {
		c.Join(rooms...)
	}
}

func (l *ownLocal) Leave(opts BroadcastOpts, rooms []string) {
	for _, c := range l.ns().selected(opts) {
		for _, r := range rooms {
			c.Leave(r)
		}
	}
}

// hooksWait bounds how long Disconnect waits for a connection's disconnect
// hooks (they queue behind its running handler).
const hooksWait = 2 * time.Second

// Disconnect disconnects the selected sockets one at a time and returns once
// the disconnect hooks of each have run (bounded by hooksWait each).
func (l *ownLocal) Disconnect(opts BroadcastOpts, close bool) {
	for _, c := range l.ns().selected(opts) {
		c.kick(close)
		t := time.NewTimer(hooksWait)
		select {
		case <-c.hooksDone:
		case <-t.C:
		}
		t.Stop()
	}
}

func (l *ownLocal) Sockets(rooms []string) []string {
	conns := l.ns().selected(BroadcastOpts{Rooms: rooms})
	out := make([]string, len(conns))
	for i, c := range conns {
		out[i] = c.id
	}
	return out
}

func (l *ownLocal) Rooms() []string {
	n := l.ns()
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]string, 0, len(n.rooms)+len(n.sockets))
	for r := range n.rooms {
		out = append(out, r)
	}
	for id := range n.sockets {
		out = append(out, id) // each connection's own room
	}
	return out
}

func (l *ownLocal) Fetch(opts BroadcastOpts) []SocketInfo {
	n := l.ns()
	conns := n.selected(opts)
	out := make([]SocketInfo, 0, len(conns))
	for _, c := range conns {
		hs := c.cl.eng.Handshake()
		n.mu.RLock()
		rooms := c.roomsLocked(true)
		n.mu.RUnlock()
		data := c.plainSocketData()
		if n.srv.instrument() != nil {
			data = withAdminData(data, c)
		}
		ch := c.Handshake()
		out = append(out, SocketInfo{
			ID: c.id,
			// Node's shape: its admin UI reads headers of every socket it fetches.
			Handshake: map[string]any{
				"time": hs.Time.UTC().Format(time.RFC1123), "address": hostOnly(hs.RemoteAddr),
				"xdomain": hs.Header.Get("Origin") != "", "secure": hs.Secure,
				"issued": hs.Time.UnixMilli(), "url": hs.URL,
				"headers": ch.Headers, "query": ch.Query, "auth": map[string]any{},
			},
			Rooms: rooms,
			Data:  data,
		})
	}
	return out
}
