package sio

import "encoding/json"

// Packet is a Socket.IO packet as nodes exchange it: Data holds plain
// values only (string, float64/int64/uint64, bool, nil, []byte, []any,
// map[string]any), so any wire format can carry it.
type Packet struct {
	Type int     // 2: EVENT (binary events are EVENT here too)
	Nsp  string  // namespace
	Data []any   // [event, args...]
	ID   *uint64 // set for broadcasts with acks (not used yet)
	// Offset is the packet's position in a cluster-wide log (LogLink); the
	// recipients get it as the last argument, for connection state recovery.
	Offset string
}

// BroadcastOpts selects recipients the way Socket.IO adapters do.
type BroadcastOpts struct {
	Rooms    []string // members of any of these rooms; all sockets when empty
	Except   []string // minus members of these rooms
	Volatile bool
	Compress bool
	Local    bool // this node only
}

// Local is what a cluster adapter may do to this node's sockets of one
// namespace. It is the only way an adapter reaches the engine.
type Local interface {
	// Deliver broadcasts a packet that came from another node to the local
	// sockets opts selects (and records it for connection state recovery).
	Deliver(p Packet, opts BroadcastOpts)
	// HasRoom reports whether a local socket is in room.
	HasRoom(room string) bool
	// HasSocket reports whether id is a socket of this node (its own room).
	HasSocket(id string) bool
	// Join, Leave and Disconnect act on the local sockets opts selects.
	Join(opts BroadcastOpts, rooms []string)
	Leave(opts BroadcastOpts, rooms []string)
	Disconnect(opts BroadcastOpts, close bool)
	// Sockets lists the ids of local sockets in any of rooms (all when empty).
	Sockets(rooms []string) []string
	// Rooms lists the rooms with local members.
	Rooms() []string
	// Fetch describes the local sockets opts selects.
	Fetch(opts BroadcastOpts) []SocketInfo
	// DeliverWithAck broadcasts a packet that expects acknowledgements (a
	// broadcast with ack from another node): onCount gets the number of local
	// recipients, onAck each recipient's first ack argument.
	DeliverWithAck(p Packet, opts BroadcastOpts, onCount func(int), onAck func(arg any))
}

// SocketInfo describes a socket for fetchSockets across nodes.
type SocketInfo struct {
	ID        string         `json:"id"`
	Handshake map[string]any `json:"handshake"`
	Rooms     []string       `json:"rooms"`
	Data      any            `json:"data"`
}

// Cluster connects namespaces to the other nodes (see package adapter).
type Cluster interface {
	// Attach links namespace nsp, whose local sockets are reachable through local.
	Attach(nsp string, local Local) Link
}

// LogCluster is a Cluster whose links are LogLinks: with connection state
// recovery on, the cluster (not the node) keeps sessions and missed packets.
type LogCluster interface {
	Cluster
	AttachLog(nsp string, local Local) LogLink
}

// Link is one namespace's connection to the cluster.
type Link interface {
	// Publish sends a broadcast this node originated. When it returns true
	// the cluster delivers it on every node, this one included, in one
	// cluster-wide order (so that every member of a room sees the room's
	// messages in the same order); false means this node must deliver it
	// locally itself (not published: Redis down, or a local socket's room).
	Publish(p Packet, opts BroadcastOpts) (delivered bool)
	// Close detaches the namespace.
	Close()
}

// LogLink is a Link over a cluster-wide log (Redis streams): broadcasts get
// an offset, and sessions are kept in the cluster so that a client recovers
// on any node, even after its node died.
type LogLink interface {
	Link
	// Append publishes a broadcast and returns its offset. On success the
	// cluster delivers it on every node, this one included (as Publish).
	Append(p Packet, opts BroadcastOpts) (offset string, err error)
	// Settle ends a restore: RestoreSession holds this node's live delivery
	// (so that nothing falls between the replay and the restored socket's
	// registration) until the socket is connected or refused.
	Settle(pid string)
	// SaveSession records a connected session (at connect and whenever its
	// rooms change), so it survives its node.
	SaveSession(s Session)
	// PersistSession records a session that just disconnected.
	PersistSession(s Session)
	// DropSession forgets a session that ended for good.
	DropSession(pid string)
	// RestoreSession returns the session and the packets it missed after
	// offset (each the packet's Data with its offset appended), or nil.
	RestoreSession(pid, offset string) (*Session, error)
}

// Session is a connection's recoverable state.
type Session struct {
	Sid    string
	Pid    string
	Rooms  []string
	Data   any   // plain values (see plainData)
	Missed []any // restored only: missed packets' data
}

// plainData exposes a socket's data to other nodes: our *User as a map.
func plainData(v any) any {
	if u, ok := v.(*User); ok && u != nil {
		return map[string]any{"userId": u.ID, "name": u.Name}
	}
	return nil
}

func userFromPlain(v any) *User {
	m, _ := v.(map[string]any)
	id, _ := m["userId"].(string)
	name, _ := m["name"].(string)
	if id == "" {
		return nil
	}
	return &User{ID: id, Name: name}
}

// plainValue turns what our handlers emit (pre-encoded JSON, binary
// buffers) into plain values for the wire between nodes.
func plainValue(v any) any {
	switch x := v.(type) {
	case json.RawMessage:
		var out any
		if err := json.Unmarshal(x, &out); err != nil {
			return nil
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plainValue(e)
		}
		return out
	case bytesBuffer:
		return x.Bytes()
	default:
		return v
	}
}
