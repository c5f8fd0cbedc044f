package emitter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
)

// UID is the uid Node's emitter puts in its broadcasts and serverSideEmit
// requests ("emitter"): no server has it, so every server, the one that
// would have sent it included, delivers what it publishes.
const UID = "emitter"

// Request types of the redis-adapter protocol that the emitter sends.
const (
	reqRemoteJoin       = 2
	reqRemoteLeave      = 3
	reqRemoteDisconnect = 4
	reqServerSideEmit   = 6
)

// packetEvent is socket.io-parser's EVENT: binary arguments travel inside
// the msgpack payload, so Node's emitter never writes BINARY_EVENT (5).
const packetEvent = 2

// ErrReservedEvent is wrapped by the error Emit and ServerSideEmit return
// for an event name Socket.IO reserves (see ReservedEvents).
var ErrReservedEvent = errors.New("reserved event name")

// ReservedEvents are the names Node's emitter refuses to emit
// (RESERVED_EVENTS of @socket.io/redis-emitter 5.1), for reference: the
// check does not read this variable.
var ReservedEvents = []string{"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}

func reserved(event string) bool {
	switch event {
	case "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener":
		return true
	}
	return false
}

// Options configures an Emitter. The zero value is Node's emitter's
// default: prefix "socket.io", namespace "/".
type Options struct {
	// Prefix of the channels: Node's emitter's and adapter's key option,
	// Switchboard's REDIS_PREFIX. Default "socket.io".
	Prefix string
	// Namespace to publish to; default "/". A name without a leading "/"
	// gets one, as with Of.
	Namespace string
}

// Emitter publishes to the Socket.IO servers that share a Redis through
// @socket.io/redis-adapter 8.3 (Node servers, Switchboard nodes with
// ADAPTER=redis), in the wire format of Node's @socket.io/redis-emitter
// 5.1. It holds no state but its configuration: it is safe for concurrent
// use, and Of, To, In, Except, Volatile and Compress return new values
// without changing the one they are called on.
type Emitter struct {
	client redis.UniversalClient
	prefix string
	nsp    string
}

// New returns an emitter publishing through client (which it does not
// close) to namespace opts.Namespace.
func New(client redis.UniversalClient, opts Options) *Emitter {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "socket.io"
	}
	return &Emitter{client: client, prefix: prefix, nsp: namespaceName(opts.Namespace)}
}

// namespaceName is nsp with a leading "/", as Node's emitter's of() makes it.
func namespaceName(nsp string) string {
	if len(nsp) == 0 || nsp[0] != '/' {
		return "/" + nsp
	}
	return nsp
}

// Of returns an emitter for namespace nsp (a leading "/" is added when
// missing), with the same client and prefix.
func (e *Emitter) Of(nsp string) *Emitter {
	return &Emitter{client: e.client, prefix: e.prefix, nsp: namespaceName(nsp)}
}

// Namespace is the namespace the emitter publishes to.
func (e *Emitter) Namespace() string { return e.nsp }

func (e *Emitter) op() BroadcastOperator { return BroadcastOperator{e: e} }

// To targets the members of rooms (a socket's id is a room of its own).
func (e *Emitter) To(rooms ...string) BroadcastOperator { return e.op().To(rooms...) }

// In is To.
func (e *Emitter) In(rooms ...string) BroadcastOperator { return e.op().To(rooms...) }

// Except excludes the members of rooms.
func (e *Emitter) Except(rooms ...string) BroadcastOperator { return e.op().Except(rooms...) }

// Volatile marks the emit as one that may be lost: a socket whose
// transport is not ready does not get it (Node's emitter.volatile).
func (e *Emitter) Volatile() BroadcastOperator { return e.op().Volatile() }

// Compress sets the compress flag (permessage-deflate for this packet).
func (e *Emitter) Compress(compress bool) BroadcastOperator { return e.op().Compress(compress) }

// Emit sends event with args to every socket of the namespace (see
// BroadcastOperator.Emit).
func (e *Emitter) Emit(ctx context.Context, event string, args ...any) error {
	return e.op().Emit(ctx, event, args...)
}

// SocketsJoin makes every socket of the namespace join rooms.
func (e *Emitter) SocketsJoin(ctx context.Context, rooms ...string) error {
	return e.op().SocketsJoin(ctx, rooms...)
}

// SocketsLeave makes every socket of the namespace leave rooms.
func (e *Emitter) SocketsLeave(ctx context.Context, rooms ...string) error {
	return e.op().SocketsLeave(ctx, rooms...)
}

// DisconnectSockets disconnects every socket of the namespace; close also
// closes their underlying connections.
func (e *Emitter) DisconnectSockets(ctx context.Context, close bool) error {
	return e.op().DisconnectSockets(ctx, close)
}

// ServerSideEmit sends event with args to the servers of the cluster, as
// Node's emitter.serverSideEmit(event, ...args): each server's listeners
// for event on the namespace get args (Switchboard: Namespace.
// OnServerSideEmit handlers). Without acknowledgements, as in Node. It is
// JSON on the request channel: []byte values travel as
// {"type":"Buffer","data":[...]} and time.Time values as ISO strings, as
// JSON.stringify writes Buffers and Dates. Unlike Node's emitter, a
// reserved event name is refused (servers would run their connection
// listeners for "connect").
func (e *Emitter) ServerSideEmit(ctx context.Context, event string, args ...any) error {
	if reserved(event) {
		return fmt.Errorf("emitter: server-side emit %q: %w", event, ErrReservedEvent)
	}
	data, err := plainArgs(event, args)
	if err != nil {
		return fmt.Errorf("emitter: server-side emit %q: %w", event, err)
	}
	// {"uid":"emitter","type":6,"data":[event, ...args]}
	b := append([]byte(`{"uid":"emitter","type":`), '0'+reqServerSideEmit)
	b = append(b, `,"data":`...)
	b = appendJSON(b, data)
	b = append(b, '}')
	return e.publish(ctx, e.requestChannel(), b, "server-side emit "+strconv.Quote(event))
}

func (e *Emitter) broadcastChannel() string { return e.prefix + "#" + e.nsp + "#" }
func (e *Emitter) requestChannel() string   { return e.prefix + "-request#" + e.nsp + "#" }

func (e *Emitter) publish(ctx context.Context, channel string, payload []byte, what string) error {
	if err := e.client.Publish(ctx, channel, payload).Err(); err != nil {
		return fmt.Errorf("emitter: %s: publish to %s: %w", what, channel, err)
	}
	return nil
}

// BroadcastOperator selects the sockets an emit, join, leave or disconnect
// applies to, as Node's BroadcastOperator: the members of any of its rooms
// (every socket of the namespace when it has none) that are in none of its
// excepted rooms. It is a value: To, In, Except, Volatile and Compress
// return a new one and leave the receiver as it was. Get one from an
// Emitter; the zero value has no emitter and its methods return an error.
type BroadcastOperator struct {
	e      *Emitter
	rooms  []string // in the order first given, without repeats (Node's Set)
	except []string
	flags  []flag // in the order first set, as Node's Object.assign keeps them
}

type flag struct {
	name  string
	value bool
}

// addUnique returns set with rooms added (never changing set's array).
func addUnique(set []string, rooms []string) []string {
	out := set[:len(set):len(set)]
	for _, r := range rooms {
		seen := false
		for _, s := range out {
			if s == r {
				seen = true
				break
			}
		}
		if !seen {
			out = append(out, r)
		}
	}
	return out
}

// To adds rooms to the target.
func (b BroadcastOperator) To(rooms ...string) BroadcastOperator {
	b.rooms = addUnique(b.rooms, rooms)
	return b
}

// In is To.
func (b BroadcastOperator) In(rooms ...string) BroadcastOperator { return b.To(rooms...) }

// Except excludes the members of rooms.
func (b BroadcastOperator) Except(rooms ...string) BroadcastOperator {
	b.except = addUnique(b.except, rooms)
	return b
}

func (b BroadcastOperator) setFlag(name string, v bool) BroadcastOperator {
	flags := make([]flag, len(b.flags), len(b.flags)+1)
	copy(flags, b.flags)
	for i := range flags {
		if flags[i].name == name {
			flags[i].value = v
			b.flags = flags
			return b
		}
	}
	b.flags = append(flags, flag{name, v})
	return b
}

// Volatile marks the emit as one that may be lost (flag volatile).
func (b BroadcastOperator) Volatile() BroadcastOperator { return b.setFlag("volatile", true) }

// Compress sets the compress flag.
func (b BroadcastOperator) Compress(compress bool) BroadcastOperator {
	return b.setFlag("compress", compress)
}

var errNoEmitter = errors.New("emitter: BroadcastOperator not obtained from an Emitter")

// Emit sends event with args to the selected sockets of every server, as
// Node's emitter.to(...).emit(event, ...args): msgpack
// ["emitter", {type: 2, data: [event, ...args], nsp}, {rooms, flags, except}]
// published on "<prefix>#<nsp>#", or "<prefix>#<nsp>#<room>#" when exactly
// one room is targeted. It returns once Redis took it; servers deliver it
// as they receive it (a server not subscribed at that moment never does:
// Redis pub/sub).
//
// Arguments are encoded as notepack.io encodes the JavaScript values a Node
// program would pass (see the package documentation): []byte is a Buffer
// (clients get a binary attachment), time.Time a Date, numbers one number
// type; structs and other values go by their encoding/json form.
func (b BroadcastOperator) Emit(ctx context.Context, event string, args ...any) error {
	if b.e == nil {
		return errNoEmitter
	}
	if reserved(event) {
		return fmt.Errorf("emitter: emit %q: %w", event, ErrReservedEvent)
	}
	payload, err := b.encodeEmit(event, args)
	if err != nil {
		return fmt.Errorf("emitter: emit %q: %w", event, err)
	}
	channel := b.e.broadcastChannel()
	if len(b.rooms) == 1 {
		channel += b.rooms[0] + "#"
	}
	return b.e.publish(ctx, channel, payload, "emit "+strconv.Quote(event))
}

func (b BroadcastOperator) encodeEmit(event string, args []any) ([]byte, error) {
	data, err := plainArgs(event, args)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	w := &msgpackWriter{enc: enc}
	// [uid, {type, data, nsp}, {rooms, flags, except}], in Node's key order.
	_ = enc.EncodeArrayLen(3)
	_ = enc.EncodeString(UID)
	_ = enc.EncodeMapLen(3)
	_ = enc.EncodeString("type")
	_ = enc.EncodeInt(packetEvent)
	_ = enc.EncodeString("data")
	w.value(data)
	_ = enc.EncodeString("nsp")
	_ = enc.EncodeString(b.e.nsp)
	_ = enc.EncodeMapLen(3)
	_ = enc.EncodeString("rooms")
	w.strings(b.rooms)
	_ = enc.EncodeString("flags")
	_ = enc.EncodeMapLen(len(b.flags))
	for _, f := range b.flags {
		_ = enc.EncodeString(f.name)
		_ = enc.EncodeBool(f.value)
	}
	_ = enc.EncodeString("except")
	w.strings(b.except)
	if w.err != nil {
		return nil, w.err
	}
	return buf.Bytes(), nil
}

// SocketsJoin makes the selected sockets of every server join rooms
// (JSON {"type":2,"opts":{"rooms","except"},"rooms"} on the request
// channel, as Node's emitter writes it).
func (b BroadcastOperator) SocketsJoin(ctx context.Context, rooms ...string) error {
	return b.roomsRequest(ctx, reqRemoteJoin, "sockets join", rooms)
}

// SocketsLeave makes the selected sockets of every server leave rooms.
func (b BroadcastOperator) SocketsLeave(ctx context.Context, rooms ...string) error {
	return b.roomsRequest(ctx, reqRemoteLeave, "sockets leave", rooms)
}

// DisconnectSockets disconnects the selected sockets of every server;
// close also closes their underlying connections (so their other
// namespaces end too).
func (b BroadcastOperator) DisconnectSockets(ctx context.Context, close bool) error {
	if b.e == nil {
		return errNoEmitter
	}
	req := b.requestHead(reqRemoteDisconnect)
	req = append(req, `,"close":`...)
	if close {
		req = append(req, "true}"...)
	} else {
		req = append(req, "false}"...)
	}
	return b.e.publish(ctx, b.e.requestChannel(), req, "disconnect sockets")
}

func (b BroadcastOperator) roomsRequest(ctx context.Context, typ int, what string, rooms []string) error {
	if b.e == nil {
		return errNoEmitter
	}
	req := b.requestHead(typ)
	req = append(req, `,"rooms":`...)
	req = appendStrings(req, rooms)
	req = append(req, '}')
	return b.e.publish(ctx, b.e.requestChannel(), req, what)
}

// requestHead is `{"type":T,"opts":{"rooms":[...],"except":[...]}`.
func (b BroadcastOperator) requestHead(typ int) []byte {
	req := append([]byte(`{"type":`), byte('0'+typ))
	req = append(req, `,"opts":{"rooms":`...)
	req = appendStrings(req, b.rooms)
	req = append(req, `,"except":`...)
	req = appendStrings(req, b.except)
	return append(req, '}')
}
