// Package sioparser encodes and decodes Socket.IO protocol v5 packets, the payload of Engine.IO
// message packets.
//
// The text form of a packet is, exactly as socket.io-parser 4.2 writes it:
//
//	<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]
//
// The attachment count is present for BINARY_EVENT and BINARY_ACK only, the namespace only when it is
// not the main namespace "/", the ack id and the data only when the packet has them. A binary packet
// is followed on the wire by its attachments, one Engine.IO binary message each; its JSON data holds
// a placeholder {"_placeholder":true,"num":n} where attachment n belongs.
//
// Payloads stay raw JSON ([encoding/json.RawMessage]) unless the caller asks for more: the [Decoder]
// validates a packet the way socket.io-parser's decoder does, without building any value, and returns
// its data as a slice of the input, so a server can pass an event's bytes through unchanged.
// [SplitEvent] separates an event's name from its still-encoded arguments; [Reconstruct] and
// [Deconstruct] convert between placeholder JSON plus attachments and a Go value tree holding []byte.
//
// Nothing in this package panics on any input. Nesting depth is bounded everywhere JSON is scanned or
// built (see [DefaultMaxDepth]).
package sioparser

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Protocol is the Socket.IO protocol revision implemented by this package.
const Protocol = 5

// PacketType is the type of a Socket.IO packet.
type PacketType byte

// The Socket.IO v5 packet types.
const (
	Connect      PacketType = 0 // connect to a namespace (client: optional auth object; server: {"sid":…})
	Disconnect   PacketType = 1 // leave a namespace; no data
	Event        PacketType = 2 // ["name", args…], optional ack id
	Ack          PacketType = 3 // [args…], ack id
	ConnectError PacketType = 4 // refusal of a CONNECT: an object ({"message":…}) or a string
	BinaryEvent  PacketType = 5 // an EVENT whose arguments hold binary attachments
	BinaryAck    PacketType = 6 // an ACK whose arguments hold binary attachments
)

var typeNames = [...]string{"CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK"}

// String returns the name socket.io-parser uses for the type ("EVENT", …).
func (t PacketType) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return "INVALID"
}

// Valid reports whether t is one of the seven Socket.IO packet types.
func (t PacketType) Valid() bool { return t <= BinaryAck }

// IsBinary reports whether packets of type t carry attachments (BINARY_EVENT, BINARY_ACK).
func (t PacketType) IsBinary() bool { return t == BinaryEvent || t == BinaryAck }

// IsEvent reports whether t is EVENT or BINARY_EVENT.
func (t PacketType) IsEvent() bool { return t == Event || t == BinaryEvent }

// IsAck reports whether t is ACK or BINARY_ACK.
func (t PacketType) IsAck() bool { return t == Ack || t == BinaryAck }

// Packet is one Socket.IO packet.
//
// Data is the packet's JSON payload as it is on the wire (nil when the packet has none). For a
// binary packet it still holds the placeholders, and Attachments the binary values they refer to.
// A packet returned by the [Decoder] shares memory with the decoder's input (see [Decoder.AddText]).
type Packet struct {
	Type PacketType
	// Nsp is the namespace; "" and "/" both mean the main namespace.
	Nsp string
	// ID is the acknowledgement id, meaningful when HasID is set. (A pointer would cost an allocation
	// per decoded packet.)
	ID    uint64
	HasID bool
	Data  json.RawMessage
	// Attachments are the binary attachments of a BINARY_EVENT or BINARY_ACK, in placeholder order.
	// The text encoding writes len(Attachments) as the attachment count.
	Attachments [][]byte
}

// Bounds on what a packet may contain.
const (
	// DefaultMaxAttachments is socket.io-parser's default maxAttachments: the decoder refuses a binary
	// packet announcing more attachments.
	DefaultMaxAttachments = 10
	// DefaultMaxDepth bounds the nesting of arrays and objects in a payload. socket.io-parser has no
	// such bound (JSON.parse is limited by the V8 stack, thousands of levels); real payloads stay far
	// below it. Scanning is recursive, so the bound also bounds stack use.
	DefaultMaxDepth = 128
	// MaxDepthLimit caps any configured depth (encoding/json uses the same figure).
	MaxDepthLimit = 10000
)

// Errors. Every error the decoder returns for a malformed packet matches [ErrInvalidPacket] with
// errors.Is (a server closes the offending connection, as socket.io does on a decoder exception);
// the messages follow socket.io-parser's where there is one.
var (
	ErrInvalidPacket      error = &parseError{"invalid packet"}
	ErrEmptyPacket        error = &parseError{"empty packet"}
	ErrUnknownType        error = &parseError{"unknown packet type"}
	ErrIllegalAttachments error = &parseError{"illegal attachments"}
	ErrTooManyAttachments error = &parseError{"too many attachments"}
	ErrInvalidNamespace   error = &parseError{"invalid namespace"}
	ErrInvalidID          error = &parseError{"invalid ack id"}
	ErrInvalidPayload     error = &parseError{"invalid payload"}
	ErrTooDeep            error = &parseError{"payload nested too deeply"}
	ErrIllegalPlaceholder error = &parseError{"illegal attachments: bad placeholder"}
	ErrUnexpectedText     error = &parseError{"got plaintext data when reconstructing a packet"}
	ErrUnexpectedBinary   error = &parseError{"got binary data when not reconstructing a packet"}
)

type parseError struct{ msg string }

func (e *parseError) Error() string        { return "sioparser: " + e.msg }
func (e *parseError) Is(target error) bool { return target == ErrInvalidPacket }

// isReservedName reports whether name is one of socket.io-parser's RESERVED_EVENTS.
func isReservedName(name []byte) bool {
	switch len(name) {
	case 7:
		return string(name) == "connect"
	case 10:
		return string(name) == "disconnect"
	case 11:
		return string(name) == "newListener"
	case 13:
		return string(name) == "connect_error" || string(name) == "disconnecting"
	case 14:
		return string(name) == "removeListener"
	}
	return false
}

// IsReservedEvent reports whether name is one of the event names Socket.IO reserves ("connect",
// "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"): an EVENT packet
// carrying one of them is invalid, and a server must not emit one.
func IsReservedEvent(name string) bool { return isReservedName([]byte(name)) }

func clampDepth(maxDepth int) int {
	if maxDepth <= 0 {
		return DefaultMaxDepth
	}
	return min(maxDepth, MaxDepthLimit)
}

// checkData applies socket.io-parser's isPayloadValid rules (plus JSON validity, the depth bound and,
// for binary packets, the placeholder rule of reconstructPacket) to the data of a packet of type t.
//
// Stricter than socket.io-parser on purpose: EVENT, ACK, CONNECT_ERROR and the binary types must have
// data (socket.io-parser's decodeString lets a packet without data through, its isPacketValid does
// not), and the data may not start with white space (socket.io-parser reads leading white space as an
// ack id of 0).
func checkData(t PacketType, data []byte, attachments, maxDepth int) error {
	if len(data) == 0 {
		if t == Connect || t == Disconnect {
			return nil
		}
		return ErrInvalidPayload
	}
	if t == Disconnect {
		return ErrInvalidPayload
	}
	s := scanner{data: data, maxDepth: maxDepth, placeholders: t.IsBinary(), attachments: attachments}
	end := s.value(0, 0)
	if s.err != nil {
		return s.err
	}
	if skipSpace(data, end) != len(data) {
		return ErrInvalidPayload // trailing garbage
	}
	switch t {
	case Connect:
		if data[0] != '{' {
			return ErrInvalidPayload
		}
	case ConnectError:
		if data[0] != '{' && data[0] != '"' {
			return ErrInvalidPayload
		}
	case Ack, BinaryAck:
		if data[0] != '[' {
			return ErrInvalidPayload
		}
	case Event, BinaryEvent:
		if data[0] != '[' {
			return ErrInvalidPayload
		}
		// The first element must be a number or a non-reserved string.
		i := skipSpace(data, 1)
		switch c := data[i]; {
		case c == '"':
			lit := data[i:scanString(data, i)]
			body := lit[1 : len(lit)-1]
			if hasBackslash(body) {
				body = unquote(nil, lit)
			}
			if isReservedName(body) {
				return ErrInvalidPayload
			}
		case c == '-' || (c >= '0' && c <= '9'):
		default: // ']' (no name) or any other value
			return ErrInvalidPayload
		}
	}
	return s.placeholderErr // checked last: socket.io-parser reconstructs a packet once it is valid
}

// Validate checks that p can be encoded and decoded back: a valid type; a namespace that is empty or
// starts with "/" and holds no ","; attachments only on the binary types, and at least one there;
// data that the [Decoder] (with default limits, except that any number of attachments is accepted)
// would accept for the type, placeholders included. The encoders do not call it.
func (p Packet) Validate() error {
	if !p.Type.Valid() {
		return ErrUnknownType
	}
	if p.Nsp != "" && (p.Nsp[0] != '/' || strings.IndexByte(p.Nsp, ',') >= 0) {
		return ErrInvalidNamespace
	}
	if p.Type.IsBinary() != (len(p.Attachments) > 0) {
		return ErrIllegalAttachments
	}
	return checkData(p.Type, p.Data, len(p.Attachments), DefaultMaxDepth)
}

// AppendHeader appends everything of a packet's text encoding that precedes its data: the type, the
// attachment count (binary types only), the namespace followed by "," (unless it is "" or "/") and the
// ack id (if hasID). Append the JSON data after it.
func AppendHeader(dst []byte, t PacketType, attachments int, nsp string, id uint64, hasID bool) []byte {
	dst = append(dst, '0'+byte(t))
	if t.IsBinary() {
		dst = strconv.AppendInt(dst, int64(attachments), 10)
		dst = append(dst, '-')
	}
	if nsp != "" && nsp != "/" {
		dst = append(dst, nsp...)
		dst = append(dst, ',')
	}
	if hasID {
		dst = strconv.AppendUint(dst, id, 10)
	}
	return dst
}

// AppendPacket appends the text encoding of p to dst (socket.io-parser's encodeAsString). The
// attachments themselves are not part of it: send them after it, one binary message each. p is
// written as it is; use [Packet.Validate] for packets not built by trusted code.
func AppendPacket(dst []byte, p Packet) []byte {
	dst = AppendHeader(dst, p.Type, len(p.Attachments), p.Nsp, p.ID, p.HasID)
	return append(dst, p.Data...)
}

// EncodedLen returns the exact number of bytes [AppendPacket] appends for p.
func EncodedLen(p Packet) int {
	n := 1 + len(p.Data)
	if p.Type.IsBinary() {
		n += decimalLen(uint64(len(p.Attachments))) + 1
	}
	if p.Nsp != "" && p.Nsp != "/" {
		n += len(p.Nsp) + 1
	}
	if p.HasID {
		n += decimalLen(p.ID)
	}
	return n
}

func decimalLen(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// Encode returns the text encoding of p in a new slice (see [AppendPacket]).
func Encode(p Packet) []byte {
	return AppendPacket(make([]byte, 0, EncodedLen(p)), p)
}

// AppendEventData appends the data of an EVENT, ["name",arg…], to dst: name quoted as JSON.stringify
// quotes it, each argument copied as it is (each must be valid JSON).
func AppendEventData(dst []byte, name string, args ...json.RawMessage) []byte {
	dst = append(dst, '[')
	dst = AppendString(dst, name)
	for _, a := range args {
		dst = append(dst, ',')
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// AppendArray appends the JSON array [elem,…] to dst (the data of an ACK); each element is copied as
// it is and must be valid JSON.
func AppendArray(dst []byte, elems ...json.RawMessage) []byte {
	dst = append(dst, '[')
	for i, a := range elems {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, a...)
	}
	return append(dst, ']')
}
