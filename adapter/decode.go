package adapter

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
	"github.com/switchboard/switchboard/internal/sio"
)

// What other nodes send is untrusted input. Every broadcast, request,
// response and stream entry is decoded here, strictly: a message with a
// field Node's adapters and emitters never write, a field of the wrong type,
// a missing field a message needs, or an unknown message or packet type,
// does not decode. The cluster then drops it, counts it (DecodeErrors) and
// reports it through onError (rate-limited by the caller); it is never
// delivered with options narrower or wider than the ones it carries. What
// Node's @socket.io/redis-adapter 8.3, @socket.io/redis-emitter 5.1 and
// @socket.io/redis-streams-adapter 0.2/0.3 (socket.io-adapter 2.5's
// ClusterAdapter) write decodes, field for field (see decode_test.go and
// testdata/fuzz_seeds.cjs).
//
// Decoding is bounded by the payload's size: msgpack is checked first
// (checkMsgpack) so that no length in it can make the decoder allocate more
// than the payload holds, nor nest deeper than maxWireDepth.

// ErrUndecodable is wrapped by the errors a cluster reports for the messages
// of other nodes it dropped because they do not decode.
var ErrUndecodable = errors.New("undecodable message dropped")

// maxWireDepth bounds the nesting of arrays and maps in a message: a packet's
// data as deep as the engine encodes it (sioparser.DefaultMaxDepth), plus
// the envelope around it.
const maxWireDepth = sioparser.DefaultMaxDepth + 4

// dropUndecodable counts a message dropped and reports where it came from
// (a channel, or the stream and entry id) and what failed; never its payload.
func (c *requestCore) dropUndecodable(where string, err error) {
	c.decodeErrs.Add(1)
	c.onError(fmt.Errorf("cluster: %w on %s: %v", ErrUndecodable, where, err))
}

// DecodeErrors counts the messages of other nodes (broadcasts, requests,
// responses, stream entries) dropped because they did not decode.
func (c *requestCore) DecodeErrors() uint64 { return c.decodeErrs.Load() }

// ---- payloads ----

// decodeMsgpack decodes one msgpack value (checkMsgpack first).
func decodeMsgpack(b []byte) (any, error) {
	if err := checkMsgpack(b); err != nil {
		return nil, err
	}
	var v any
	if err := msgpack.Unmarshal(b, &v); err != nil {
		return nil, errors.New("not msgpack")
	}
	return v, nil
}

// decodeJSON decodes one JSON value (numbers as float64).
func decodeJSON(b []byte) (any, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, errors.New("not JSON")
	}
	return v, nil
}

// decodeJSONOrMsgpack reads a request or response as Node's adapter does:
// JSON when it starts with "{", msgpack otherwise.
func decodeJSONOrMsgpack(b []byte) (any, error) {
	if len(b) > 0 && b[0] == '{' {
		return decodeJSON(b)
	}
	return decodeMsgpack(b)
}

var (
	errTruncated = errors.New("not msgpack: truncated")
	errTooDeep   = errors.New("nested too deep")
)

// checkMsgpack checks that b is exactly one msgpack value whose lengths fit
// in b, nested at most maxWireDepth, with no extension but timestamps (ext
// -1, as notepack.io and @msgpack/msgpack write Dates). It allocates nothing.
func checkMsgpack(b []byte) error {
	var stack [maxWireDepth + 1]uint64 // values left to read in each open array or map
	depth := 0
	stack[0] = 1
	i := 0
	for depth >= 0 {
		if stack[depth] == 0 {
			depth--
			continue
		}
		stack[depth]--
		if i >= len(b) {
			return errTruncated
		}
		c := b[i]
		i++
		var skip, children uint64 // bytes to skip, values inside
		ext := -1                 // extension: its length
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f:
			children = 2 * uint64(c&0x0f)
		case c <= 0x9f:
			children = uint64(c & 0x0f)
		case c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c == 0xc1:
			return errors.New("not msgpack: code 0xc1")
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c >= 0xcc && c <= 0xcf: // uint 8..64
			skip = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3: // int 8..64
			skip = 1 << (c - 0xd0)
		case c >= 0xd4 && c <= 0xd8: // fixext 1..16
			ext = 1 << (c - 0xd4)
		default:
			// Lengths: str, bin, ext, array, map in 8, 16 or 32 bits.
			var size int
			switch c {
			case 0xc4, 0xc7, 0xd9:
				size = 1
			case 0xc5, 0xc8, 0xda, 0xdc, 0xde:
				size = 2
			default: // 0xc6, 0xc9, 0xdb, 0xdd, 0xdf
				size = 4
			}
			if len(b)-i < size {
				return errTruncated
			}
			var n uint64
			switch size {
			case 1:
				n = uint64(b[i])
			case 2:
				n = uint64(binary.BigEndian.Uint16(b[i:]))
			default:
				n = uint64(binary.BigEndian.Uint32(b[i:]))
			}
			i += size
			switch c {
			case 0xc7, 0xc8, 0xc9:
				ext = int(n)
			case 0xdc, 0xdd:
				children = n
			case 0xde, 0xdf:
				children = 2 * n
			default:
				skip = n
			}
		}
		if ext >= 0 {
			// The extension's type, then its data: timestamps only (32, 64 or 96 bits).
			if i >= len(b) {
				return errTruncated
			}
			if int8(b[i]) != -1 || (ext != 4 && ext != 8 && ext != 12) {
				return errors.New("msgpack extension other than a timestamp")
			}
			i++
			skip = uint64(ext)
		}
		left := uint64(len(b) - i)
		if skip > left {
			return errTruncated
		}
		i += int(skip)
		if children > 0 {
			if children > left { // every value takes a byte at least
				return errTruncated
			}
			if depth+1 > maxWireDepth {
				return errTooDeep
			}
			depth++
			stack[depth] = children
		}
	}
	if i != len(b) {
		return errors.New("not msgpack: trailing bytes")
	}
	return nil
}

// ---- values ----

// field names a field in an error, shortened: never a value.
func field(name string) string {
	if len(name) > 32 {
		name = name[:32] + "..."
	}
	return strconv.Quote(name)
}

// object is v as a map whose keys are all among allowed.
func object(v any, what string, allowed ...string) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not a map", what)
	}
	for k := range m {
		known := false
		for _, a := range allowed {
			if k == a {
				known = true
				break
			}
		}
		if !known {
			return nil, fmt.Errorf("%s: unknown field %s", what, field(k))
		}
	}
	return m, nil
}

// str is m[key] as a string: "" when absent (or nil), unless required.
func str(m map[string]any, key, what string, required bool) (string, error) {
	switch s := m[key].(type) {
	case string:
		if required && s == "" {
			return "", fmt.Errorf("%s.%s: empty", what, key)
		}
		return s, nil
	case nil:
		if required {
			return "", fmt.Errorf("%s.%s: missing", what, key)
		}
		return "", nil
	}
	return "", fmt.Errorf("%s.%s: not a string", what, key)
}

// boolean is m[key] as a bool: false when absent (or nil).
func boolean(m map[string]any, key, what string) (bool, error) {
	switch b := m[key].(type) {
	case bool:
		return b, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("%s.%s: not a boolean", what, key)
}

// integer is v as an integer: a msgpack integer, or a JSON number without a
// fraction.
func integer(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, false
		}
		return int64(x), true
	case float32:
		return integer(float64(x))
	}
	return 0, false
}

// number reports whether v is a finite number.
func number(v any) bool {
	switch x := v.(type) {
	case float64:
		return !math.IsNaN(x) && !math.IsInf(x, 0)
	case float32:
		return number(float64(x))
	}
	_, ok := integer(v)
	return ok
}

// stringList is v as a list of strings (room names, socket ids): nil when v is.
func stringList(v any, what string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: not an array", what)
	}
	out := make([]string, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%s: not an array of strings", what)
		}
		out[i] = s
	}
	return out, nil
}

// plain checks that v holds plain values only (see sio.Packet), nested at
// most maxWireDepth, numbers finite.
func plain(v any, depth int) error {
	switch x := v.(type) {
	case nil, bool, string, []byte,
		int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return nil
	case time.Time: // a Date (msgpack timestamp): clients get it as JSON, years 0 to 9999
		if y := x.UTC().Year(); y < 0 || y > 9999 {
			return errors.New("date out of range")
		}
		return nil
	case float64, float32:
		if !number(x) {
			return errors.New("not a finite number")
		}
		return nil
	case []any:
		return plainAll(slices.Values(x), depth)
	case map[string]any:
		return plainAll(maps.Values(x), depth)
	}
	return fmt.Errorf("value of type %T", v)
}

// plainAll is plain for the elements of an array or object at depth.
func plainAll(elems iter.Seq[any], depth int) error {
	if depth >= maxWireDepth {
		return errTooDeep
	}
	for e := range elems {
		if err := plain(e, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// broadcastFlags are the flags of Socket.IO's BroadcastOperator and Socket:
// booleans, and timeout (ms).
var broadcastFlags = map[string]bool{ // name -> a number (else a boolean)
	"volatile": false, "compress": false, "local": false, "broadcast": false, "binary": false,
	"expectSingleResponse": false, "timeout": true,
}

// decodeOpts reads broadcast options {rooms, except, flags}, as Node's
// adapters write them (a missing rooms or except is empty, as for Node's
// new Set(undefined)).
func decodeOpts(v any, what string) (wireOpts, error) {
	m, err := object(v, what, "rooms", "except", "flags")
	if err != nil {
		return wireOpts{}, err
	}
	var o wireOpts
	if o.Rooms, err = stringList(m["rooms"], what+".rooms"); err != nil {
		return wireOpts{}, err
	}
	if o.Except, err = stringList(m["except"], what+".except"); err != nil {
		return wireOpts{}, err
	}
	if f := m["flags"]; f != nil {
		flags, ok := f.(map[string]any)
		if !ok {
			return wireOpts{}, fmt.Errorf("%s.flags: not a map", what)
		}
		for k, v := range flags {
			isNumber, known := broadcastFlags[k]
			switch {
			case !known:
				return wireOpts{}, fmt.Errorf("%s.flags: unknown flag %s", what, field(k))
			case v == nil:
			case isNumber:
				if !number(v) {
					return wireOpts{}, fmt.Errorf("%s.flags.%s: not a number", what, k)
				}
			default:
				if _, ok := v.(bool); !ok {
					return wireOpts{}, fmt.Errorf("%s.flags.%s: not a boolean", what, k)
				}
			}
		}
		o.Flags = flags
	}
	return o, nil
}

// decodeEvent reads an event's data: [name, ...args], name a string that
// Socket.IO does not reserve, or a number (as socket.io-parser accepts it).
func decodeEvent(v any, what string) ([]any, error) {
	data, ok := v.([]any)
	if !ok || len(data) == 0 {
		return nil, fmt.Errorf("%s: not an event (a non-empty array)", what)
	}
	switch name := data[0].(type) {
	case string:
		if sioparser.IsReservedEvent(name) {
			return nil, fmt.Errorf("%s: reserved event name", what)
		}
	default:
		if !number(name) {
			return nil, fmt.Errorf("%s: event name not a string", what)
		}
	}
	if err := plain(data, 0); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return data, nil
}

// decodeServerSide reads a serverSideEmit's packet: [event, ...args], the
// event a string.
func decodeServerSide(v any, what string) ([]any, error) {
	data, err := decodeEvent(v, what)
	if err != nil {
		return nil, err
	}
	if _, ok := data[0].(string); !ok {
		return nil, fmt.Errorf("%s: event name not a string", what)
	}
	return data, nil
}

// decodePacket reads a broadcast's packet {type, data, nsp, id}: an EVENT
// (2) or BINARY_EVENT (5). nsp, when not empty, is the namespace it must be
// of (a packet without nsp is of any).
func decodePacket(v any, what, nsp string) (streamPacket, error) {
	m, err := object(v, what, "type", "data", "nsp", "id")
	if err != nil {
		return streamPacket{}, err
	}
	var p streamPacket
	t, ok := integer(m["type"])
	if !ok {
		return streamPacket{}, fmt.Errorf("%s.type: not an integer", what)
	}
	if t != 2 && t != 5 {
		return streamPacket{}, fmt.Errorf("%s.type: %d is not an event", what, t)
	}
	p.Type = int(t)
	if p.Nsp, err = str(m, "nsp", what, false); err != nil {
		return streamPacket{}, err
	}
	if nsp != "" && p.Nsp != "" && p.Nsp != nsp {
		return streamPacket{}, fmt.Errorf("%s.nsp: not the namespace %s", what, field(nsp))
	}
	if id := m["id"]; id != nil {
		n, ok := integer(id)
		if !ok || n < 0 {
			return streamPacket{}, fmt.Errorf("%s.id: not a packet id", what)
		}
		u := uint64(n)
		p.ID = &u
	}
	if p.Data, err = decodeEvent(m["data"], what+".data"); err != nil {
		return streamPacket{}, err
	}
	return p, nil
}

// decodeSockets reads fetchSockets' answer: sockets {id, handshake, rooms, data}.
func decodeSockets(v any, what string) ([]sio.SocketInfo, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: not an array", what)
	}
	out := make([]sio.SocketInfo, len(a))
	for i, e := range a {
		m, err := object(e, what+"[]", "id", "handshake", "rooms", "data")
		if err != nil {
			return nil, err
		}
		s := &out[i]
		if s.ID, err = str(m, "id", what+"[]", true); err != nil {
			return nil, err
		}
		if h := m["handshake"]; h != nil {
			if s.Handshake, ok = h.(map[string]any); !ok {
				return nil, fmt.Errorf("%s[].handshake: not a map", what)
			}
		}
		if s.Rooms, err = stringList(m["rooms"], what+"[].rooms"); err != nil {
			return nil, err
		}
		s.Data = m["data"]
		if err := plain(e, 1); err != nil {
			return nil, fmt.Errorf("%s[]: %v", what, err)
		}
	}
	return out, nil
}

// ---- the redis adapter (pub/sub) ----

// redisBroadcast is a broadcast of the redis adapter: msgpack
// [uid, packet, opts].
type redisBroadcast struct {
	UID  string
	Nsp  string // "/" when the packet has none, as in Node
	Data []any
	Opts wireOpts
}

// decodeRedisBroadcast reads a broadcast as Node's adapter and emitter
// publish it.
func decodeRedisBroadcast(payload []byte) (redisBroadcast, error) {
	v, err := decodeMsgpack(payload)
	if err != nil {
		return redisBroadcast{}, err
	}
	msg, ok := v.([]any)
	if !ok || len(msg) != 3 {
		return redisBroadcast{}, errors.New("not [uid, packet, opts]")
	}
	var b redisBroadcast
	if b.UID, ok = msg[0].(string); !ok {
		return redisBroadcast{}, errors.New("uid: not a string")
	}
	p, err := decodePacket(msg[1], "packet", "")
	if err != nil {
		return redisBroadcast{}, err
	}
	if b.Opts, err = decodeOpts(msg[2], "opts"); err != nil {
		return redisBroadcast{}, err
	}
	b.Nsp, b.Data = p.Nsp, p.Data
	if b.Nsp == "" {
		b.Nsp = "/"
	}
	return b, nil
}

// decodeRequest reads a request to namespace nsp as Node's adapter (and
// emitter) publish it: JSON when it starts with "{", msgpack otherwise.
func decodeRequest(payload []byte, nsp string) (request, error) {
	v, err := decodeJSONOrMsgpack(payload)
	if err != nil {
		return request{}, err
	}
	m, err := object(v, "request", "uid", "requestId", "type", "opts", "rooms", "room", "sid", "close", "packet", "data")
	if err != nil {
		return request{}, err
	}
	var req request
	t, ok := integer(m["type"])
	if !ok {
		return request{}, errors.New("request.type: not an integer")
	}
	req.Type = int(t)
	if req.UID, err = str(m, "uid", "request", false); err != nil {
		return request{}, err
	}
	if req.RequestID, err = str(m, "requestId", "request", false); err != nil {
		return request{}, err
	}
	if req.Room, err = str(m, "room", "request", false); err != nil {
		return request{}, err
	}
	if req.SID, err = str(m, "sid", "request", false); err != nil {
		return request{}, err
	}
	if req.Close, err = boolean(m, "close", "request"); err != nil {
		return request{}, err
	}
	if req.Rooms, err = stringList(m["rooms"], "request.rooms"); err != nil {
		return request{}, err
	}
	if o := m["opts"]; o != nil {
		opts, err := decodeOpts(o, "request.opts")
		if err != nil {
			return request{}, err
		}
		req.Opts = &opts
	}
	needs := func(what string, ok bool) error {
		if !ok {
			return fmt.Errorf("request of type %d: %s missing", req.Type, what)
		}
		return nil
	}
	switch req.Type {
	case reqSockets, reqAllRooms:
		err = needs("requestId", req.RequestID != "")
	case reqRemoteJoin, reqRemoteLeave, reqRemoteDisconnect:
		if req.Opts == nil { // one socket by id (redis-adapter 7)
			if err = needs("sid", req.SID != ""); err == nil {
				err = needs("requestId", req.RequestID != "")
			}
		}
	case reqRemoteFetch:
		if err = needs("requestId", req.RequestID != ""); err == nil {
			err = needs("opts", req.Opts != nil)
		}
	case reqServerSideEmit:
		req.Data, err = decodeServerSide(m["data"], "request.data")
	case reqBroadcast:
		if err = needs("requestId", req.RequestID != ""); err == nil {
			err = needs("opts", req.Opts != nil)
		}
		if err == nil {
			var p streamPacket
			if p, err = decodePacket(m["packet"], "request.packet", nsp); err == nil {
				req.Packet = map[string]any{"type": p.Type, "data": p.Data, "nsp": p.Nsp}
			}
		}
	default:
		err = fmt.Errorf("request.type: unknown type %d", req.Type)
	}
	if err != nil {
		return request{}, err
	}
	if req.Type != reqServerSideEmit && m["data"] != nil {
		return request{}, fmt.Errorf("request of type %d: unexpected data", req.Type)
	}
	if req.Type != reqBroadcast && m["packet"] != nil {
		return request{}, fmt.Errorf("request of type %d: unexpected packet", req.Type)
	}
	return req, nil
}

// response is an answer on the response channels: JSON, but broadcast acks
// (BROADCAST_ACK) in msgpack, as Node writes them. This node also reads the
// answers to the other nodes' requests there (sockets, allRooms, ...).
type response struct {
	Type        int // 0 when absent: the answer to the request's own type
	RequestID   string
	Sockets     []sio.SocketInfo // fetchSockets
	SocketIDs   []string         // sockets (redis-adapter 7)
	Rooms       []string         // allRooms
	Data        any              // serverSideEmit
	ClientCount int              // BROADCAST_CLIENT_COUNT
	Packet      any              // BROADCAST_ACK
}

func decodeResponse(payload []byte) (response, error) {
	v, err := decodeJSONOrMsgpack(payload)
	if err != nil {
		return response{}, err
	}
	m, err := object(v, "response", "type", "requestId", "sockets", "rooms", "data", "clientCount", "packet")
	if err != nil {
		return response{}, err
	}
	var res response
	if res.RequestID, err = str(m, "requestId", "response", true); err != nil {
		return response{}, err
	}
	if t := m["type"]; t != nil {
		n, ok := integer(t)
		if !ok || (n != reqServerSideEmit && n != reqBroadcastClientCount && n != reqBroadcastAck) {
			return response{}, errors.New("response.type: not a response type")
		}
		res.Type = int(n)
	}
	if res.Type == reqBroadcastClientCount {
		n, ok := integer(m["clientCount"])
		if !ok || n < 0 || n > math.MaxInt32 {
			return response{}, errors.New("response.clientCount: not a count")
		}
		res.ClientCount = int(n)
	} else if m["clientCount"] != nil {
		return response{}, errors.New("response.clientCount: unexpected")
	}
	if s := m["sockets"]; s != nil {
		a, ok := s.([]any)
		if !ok {
			return response{}, errors.New("response.sockets: not an array")
		}
		if len(a) > 0 {
			if _, ids := a[0].(string); ids {
				res.SocketIDs, err = stringList(a, "response.sockets")
			} else {
				res.Sockets, err = decodeSockets(a, "response.sockets")
			}
			if err != nil {
				return response{}, err
			}
		}
	}
	if res.Rooms, err = stringList(m["rooms"], "response.rooms"); err != nil {
		return response{}, err
	}
	res.Data, res.Packet = m["data"], m["packet"]
	if err := plain(res.Data, 1); err != nil {
		return response{}, fmt.Errorf("response.data: %v", err)
	}
	if err := plain(res.Packet, 1); err != nil {
		return response{}, fmt.Errorf("response.packet: %v", err)
	}
	return res, nil
}

// ---- the redis-streams adapter ----

// streamEntry is an entry of the stream {uid, nsp, type, data}, as Node's
// adapter writes it (all strings), its data not decoded yet.
type streamEntry struct {
	UID  string
	Nsp  string
	Type int
	Data string
}

// decodeEntry reads an entry's fields (from XREAD).
func decodeEntry(values map[string]any) (streamEntry, error) {
	var e streamEntry
	for k, v := range values {
		s, ok := v.(string)
		if !ok {
			return streamEntry{}, fmt.Errorf("entry.%s: not a string", field(k))
		}
		switch k {
		case "uid":
			e.UID = s
		case "nsp":
			e.Nsp = s
		case "type":
			t, err := strconv.Atoi(s)
			if err != nil || t < msgInitialHeartbeat || t > msgAdapterClose {
				return streamEntry{}, errors.New("entry.type: unknown type")
			}
			e.Type = t
		case "data":
			e.Data = s
		default:
			return streamEntry{}, fmt.Errorf("entry: unknown field %s", field(k))
		}
	}
	if e.Type == 0 {
		return streamEntry{}, errors.New("entry.type: missing")
	}
	if e.Nsp == "" { // Node's adapter writes its namespace on every entry
		return streamEntry{}, errors.New("entry.nsp: missing")
	}
	return e, nil
}

// decodeStream reads a broadcast's data (an entry of type "3").
func decodeStream(v any) (anyMessage, error) {
	return decodeStreamMessage(msgBroadcast, v, "")
}

// decodeStreamMessage reads the data of a message of type typ: JSON, or
// base64 msgpack when it has binary (as the Node adapter writes it). nsp,
// when not empty, is the namespace of the entry (a broadcast's packet must
// be of it).
func decodeStreamMessage(typ int, v any, nsp string) (anyMessage, error) {
	var d anyMessage
	switch typ {
	case msgInitialHeartbeat, msgHeartbeat, msgAdapterClose:
		return d, nil // no data (ignored, as Node does)
	}
	s, _ := v.(string)
	if s == "" {
		return d, errors.New("data: missing")
	}
	var tree any
	var err error
	if s[0] == '{' {
		tree, err = decodeJSON([]byte(s))
	} else {
		var b []byte
		if b, err = base64.StdEncoding.DecodeString(s); err != nil {
			return d, errors.New("data: neither JSON nor base64")
		}
		tree, err = decodeMsgpack(b)
	}
	if err != nil {
		return d, fmt.Errorf("data: %v", err)
	}
	var allowed []string
	switch typ {
	case msgBroadcast:
		allowed = []string{"packet", "opts", "requestId"}
	case msgSocketsJoin, msgSocketsLeave:
		allowed = []string{"opts", "rooms"}
	case msgDisconnectSockets:
		allowed = []string{"opts", "close"}
	case msgFetchSockets:
		allowed = []string{"opts", "requestId"}
	case msgFetchSocketsResponse:
		allowed = []string{"requestId", "sockets"}
	case msgServerSideEmit, msgServerSideEmitResponse, msgBroadcastAck:
		allowed = []string{"requestId", "packet"}
	case msgBroadcastClientCount:
		allowed = []string{"requestId", "clientCount"}
	default:
		return d, fmt.Errorf("type %d: unknown", typ)
	}
	m, err := object(tree, "data", allowed...)
	if err != nil {
		return d, err
	}
	if d.RequestID, err = str(m, "requestId", "data", false); err != nil {
		return d, err
	}
	needsID := func() error {
		if d.RequestID == "" {
			return errors.New("data.requestId: missing")
		}
		return nil
	}
	switch typ {
	case msgBroadcast, msgSocketsJoin, msgSocketsLeave, msgDisconnectSockets, msgFetchSockets:
		if m["opts"] == nil {
			return d, errors.New("data.opts: missing")
		}
		if d.Opts, err = decodeOpts(m["opts"], "data.opts"); err != nil {
			return d, err
		}
	}
	switch typ {
	case msgBroadcast:
		d.Packet, err = decodePacket(m["packet"], "data.packet", nsp)
	case msgSocketsJoin, msgSocketsLeave:
		d.Rooms, err = stringList(m["rooms"], "data.rooms")
	case msgDisconnectSockets:
		d.Close, err = boolean(m, "close", "data")
	case msgFetchSockets:
		err = needsID()
	case msgFetchSocketsResponse:
		if err = needsID(); err == nil {
			d.Sockets, err = decodeSockets(m["sockets"], "data.sockets")
		}
	case msgServerSideEmit:
		d.PacketArgs, err = decodeServerSide(m["packet"], "data.packet")
	case msgServerSideEmitResponse, msgBroadcastAck:
		if err = needsID(); err == nil {
			d.PacketAck = m["packet"]
			if perr := plain(d.PacketAck, 1); perr != nil {
				err = fmt.Errorf("data.packet: %v", perr)
			}
		}
	case msgBroadcastClientCount:
		if err = needsID(); err == nil {
			n, ok := integer(m["clientCount"])
			if !ok || n < 0 || n > math.MaxInt32 {
				err = errors.New("data.clientCount: not a count")
			}
			d.ClientCount = int(n)
		}
	}
	if err != nil {
		return anyMessage{}, err
	}
	return d, nil
}
