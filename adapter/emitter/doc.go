// Package emitter lets a Go program that runs no Socket.IO server publish
// to the servers of a cluster through Redis, as Node's
// @socket.io/redis-emitter 5.1 does for Node programs: emit to a
// namespace, to rooms, except rooms, volatile or compressed, make sockets
// join or leave rooms, disconnect them, and send server-side events. It
// reaches every server that uses @socket.io/redis-adapter 8.3 on that
// Redis: Node socket.io servers and Switchboard nodes with ADAPTER=redis
// (not ADAPTER=redis-streams, whose stream this package does not write).
//
// It lives under adapter/ because the repository's top level is fixed; it
// depends on nothing else in the repository (go-redis v9 and msgpack v5
// only) and nothing in the repository depends on it.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	io := emitter.New(rdb, emitter.Options{Prefix: "socket.io"})
//	err := io.To("lobby").Except("user:bob").Emit(ctx, "announcement", map[string]any{"text": "hi"})
//	err = io.Of("/admin").In("user:alice").DisconnectSockets(ctx, true)
//
// # Wire format
//
// What it publishes is what Node's emitter publishes for the same calls,
// byte for byte (wire_test.go compares the two on a real Redis):
//
//   - Emit: msgpack ["emitter", {"type": 2, "data": [event, ...args],
//     "nsp": nsp}, {"rooms": [...], "flags": {...}, "except": [...]}] on
//     "<prefix>#<nsp>#", or "<prefix>#<nsp>#<room>#" when exactly one room
//     is targeted. Rooms and excepted rooms keep the order they were first
//     given, without repeats; flags ("volatile": true, "compress": bool)
//     the order they were first set. Binary arguments stay inside the
//     msgpack payload (packet type 2, EVENT, not BINARY_EVENT), as msgpack
//     bin: servers send them to clients as binary attachments.
//   - SocketsJoin, SocketsLeave: JSON {"type": 2 or 3, "opts": {"rooms",
//     "except"}, "rooms": [...]} on "<prefix>-request#<nsp>#";
//     DisconnectSockets: {"type": 4, "opts": {...}, "close": bool} there.
//     No uid, as in Node.
//   - ServerSideEmit: JSON {"uid": "emitter", "type": 6, "data": [event,
//     ...args]} on the request channel. No acknowledgements (Node's
//     emitter refuses them too).
//
// Every call returns once Redis took the message (or with the error that
// kept it from doing so, wrapped with what was being published). As with
// any Redis pub/sub publisher, a server that is not subscribed at that
// moment (down, reconnecting) never gets it, and nothing tells how many
// sockets were reached.
//
// # Values
//
// Arguments are encoded as notepack.io (Node's emitter's msgpack encoder)
// encodes the JavaScript value a Node program would have passed:
//
//   - nil, bool, string: nil, booleans, strings;
//   - integers and floats: one number type, as in JavaScript: integral
//     values as the smallest msgpack integer, others as float 64 (float32
//     values are widened first, as Math.fround values are doubles);
//   - []byte: a Buffer (msgpack bin; nil is an empty Buffer);
//   - time.Time: a Date (msgpack timestamp);
//   - []any, map[string]any: arrays and objects (map keys sorted; keys
//     that are array indices first, in numeric order, as a JavaScript
//     object lists them);
//   - json.RawMessage and any other value (structs, typed maps and slices,
//     json.Marshaler): its encoding/json form, object members in that
//     order (a struct's in field order). A []byte or time.Time inside such
//     a value is therefore base64 or RFC 3339 text, as json.Marshal writes
//     them: put binary in a []any or map[string]any.
//
// In ServerSideEmit's JSON the same values are written as JSON.stringify
// writes them (a Buffer as {"type":"Buffer","data":[...]}, a Date as its
// ISO string, NaN and infinities as null).
//
// # Differences from Node's emitter
//
// Emit refuses the names Socket.IO reserves (ReservedEvents), as Node's
// emitter does; ServerSideEmit refuses them too, where Node's emitter
// publishes them and Node servers then run their listeners for "connect"
// or "disconnect" with the arguments. Arguments nested deeper than 1000
// levels are refused (Switchboard nodes drop broadcasts nested deeper than
// about 130; Node servers take any depth). An integral number of 2^64 or
// more, or below -2^63, is written as float 64, where notepack.io writes a
// wrapped 64-bit integer (1e21 arrives as 3875820019684212736). Node's
// emitter writes a Date with millisecond precision; a time.Time keeps its
// nanoseconds.
package emitter
