package sio

import (
	"context"
	"encoding/json"
	"time"
)

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
	// Disconnect returns only once the disconnect hooks (Namespace.
	// OnDisconnect) of the sockets it disconnected have run, bounded by the
	// handler timeout, so that what they broadcast is published by then.
	// The hooks run on each socket's own queue: never call it from a
	// handler or hook of a socket it may disconnect.
	Disconnect(opts BroadcastOpts, close bool)
	// Sockets lists the ids of local sockets in any of rooms (all when
	// empty), in the order Node's adapter visits them: room by room as
	// given, each room's members in the order they joined it (all sockets:
	// in the order they connected).
	Sockets(rooms []string) []string
	// Rooms lists the rooms with local members.
	Rooms() []string
	// Fetch describes the local sockets opts selects.
	Fetch(opts BroadcastOpts) []SocketInfo
	// DeliverWithAck broadcasts a packet that expects acknowledgements (a
	// broadcast with ack from another node): onCount gets the number of local
	// recipients (once it sent to them all: an ack may come before), onAck
	// each recipient's first ack argument.
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
	// messages in the same order); false means it was not published (Redis
	// down, or a local socket's own room): Broadcast.Emit then delivers a
	// target that is one local socket itself and otherwise returns
	// ErrUnavailable, delivering nothing.
	Publish(p Packet, opts BroadcastOpts) (delivered bool)
	// Close detaches the namespace.
	Close()
}

// Once makes a broadcast conditional on a key: it is published only if no
// live entry holds Key, and then Value is stored under Key for TTL, in one
// atomic step with the publish. A retry whose first attempt's outcome is
// unknown (its answer lost) then finds the key if and only if that attempt
// was published: exactly once, without a claim to release afterwards.
type Once struct {
	Key   string
	Value []byte
	TTL   time.Duration
}

// OnceLink is implemented by links that publish under a Once.
type OnceLink interface {
	// PublishOnce publishes p (delivered on every node, as Publish) unless
	// once.Key holds a live entry, which it returns instead (prev != nil:
	// nothing published). An error means it was not published, or that it
	// is not known whether it was (a retry finds out).
	PublishOnce(p Packet, opts BroadcastOpts, once Once) (prev []byte, err error)
}

// Requester is implemented by links that can ask the other nodes, as
// Node's cluster adapters do (fetchSockets, serverSideEmit, socketsJoin,
// socketsLeave, disconnectSockets, serverCount). Waits are bounded by ctx
// or, when ctx has no deadline, by a 5 s requests timeout (Node's default).
type Requester interface {
	// FetchSockets describes the sockets opts selects on the other nodes
	// (not this one), once every other node answered. On timeout it returns
	// what arrived with an error.
	FetchSockets(ctx context.Context, opts BroadcastOpts) ([]SocketInfo, error)
	// ServerSideEmit sends event to the other nodes' server-side handlers.
	ServerSideEmit(ctx context.Context, event string, args []any) error
	// ServerSideEmitWithAck sends event to the other nodes and returns their
	// answers, once one per other server arrived (Node semantics: a server
	// without a handler never answers, so the call then times out and
	// returns the answers that arrived with an error).
	ServerSideEmitWithAck(ctx context.Context, event string, args []any) ([]any, error)
	// SocketsJoin, SocketsLeave and DisconnectSockets act on the sockets opts
	// selects on every node, this one included: this node's part is done
	// when the request comes back from the cluster, in order with the
	// broadcasts around it (as Publish). An error means it was not sent.
	SocketsJoin(ctx context.Context, opts BroadcastOpts, rooms []string) error
	SocketsLeave(ctx context.Context, opts BroadcastOpts, rooms []string) error
	DisconnectSockets(ctx context.Context, opts BroadcastOpts, close bool) error
	// ServerCount is the number of servers of the namespace, this one included.
	ServerCount(ctx context.Context) (int, error)
	// OnServerSideEmit sets the handler of the events other servers send
	// with serverSideEmit (nil: none, and those events go unanswered).
	OnServerSideEmit(h ServerSideHandler)
}

// AckBroadcaster is implemented by links that can originate a broadcast
// with acknowledgements (Node's io.timeout(ms).emit(event, arg, cb)); the
// adapters of package adapter do, in the Node adapters' wire formats.
type AckBroadcaster interface {
	// BroadcastWithAck sends p to the sockets opts selects on the other
	// nodes (not this one) and returns the number of other servers it
	// expects to answer: each calls onCount once with its number of
	// recipients, and onAck with each recipient's first ack argument (an ack
	// may come before its server's count).
	// The callbacks may run concurrently, on any goroutine, until ctx ends
	// (a late one may still run just after: the caller ignores it). An
	// error means it was not sent.
	BroadcastWithAck(ctx context.Context, p Packet, opts BroadcastOpts, onCount func(int), onAck func(any)) (servers int, err error)
}

// ServerSideHandler handles an event another server sent with
// serverSideEmit. Its result answers a serverSideEmitWithAck (one value per
// server, as Node's callback takes one argument); it is dropped otherwise.
// Handlers of one namespace run one at a time, in the order received, off
// the cluster's receive loop; ctx ends with the requester's timeout.
type ServerSideHandler func(ctx context.Context, event string, args []any) (ack any)

// LogLink is a Link over a cluster-wide log (Redis streams): broadcasts get
// an offset, and sessions are kept in the cluster so that a client recovers
// on any node, even after its node died.
type LogLink interface {
	Link
	// Append publishes a broadcast and returns its offset. On success the
	// cluster delivers it on every node, this one included (as Publish).
	Append(p Packet, opts BroadcastOpts) (offset string, err error)
	// Resume ends a restore as the restored socket is registered: it is
	// called under the namespace's write lock, after RestoreSession returned
	// the session, and returns the packets that reached the cluster while
	// the restore ran (as Missed, to send after them, before any later
	// broadcast); it may set the session's Rooms (joins and leaves that came
	// meanwhile). ok false: the restore failed meanwhile, register a fresh
	// session. It must not block on the namespace.
	Resume(pid string) (more []any, ok bool)
	// Settle ends a restore without the socket registered (the connection
	// refused after RestoreSession returned its session); after Resume it
	// does nothing. A RestoreSession that returns no session ends its
	// restore itself.
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
	Sid   string
	Pid   string
	Rooms []string
	// Data is the socket's data (Node's socket.data) as plain values: what
	// SetData stored, else the user (see plainData).
	Data any
	// User is the session's user, kept by this node's store only (what
	// nodes exchange is Node's session: sid, pid, rooms, data).
	User   *User
	Missed []any // restored only: missed packets' data
}

// plainData exposes a socket's data to other nodes: our *User as a map.
func plainData(v any) any {
	if u, ok := v.(*User); ok && u != nil {
		return map[string]any{"userId": u.ID, "name": u.Name}
	}
	return nil
}

// isUserData reports whether v is nothing or plainData's form of a user
// (the data of a socket SetData was never called on).
func isUserData(v any) bool {
	if v == nil {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 2 {
		return false
	}
	_, id := m["userId"].(string)
	_, name := m["name"].(string)
	return id && name
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
