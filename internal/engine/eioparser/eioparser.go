// Package eioparser encodes and decodes Engine.IO protocol v4 packets and long-polling payloads.
//
// It follows the Engine.IO v4 protocol document and the reference parser (engine.io-parser 5.2):
//
//   - A text packet is its type digit followed by its data: "4hello" is a message carrying "hello",
//     "2probe" a ping carrying "probe", "6" a noop.
//   - A binary message has no type prefix. Over WebSocket it is the raw bytes of a binary frame; over
//     HTTP long-polling (and whenever the receiver does not support binary) it is "b" followed by the
//     standard base64 encoding of the bytes.
//   - A long-polling payload is a list of packets joined by the record separator '\x1e'; binary
//     messages in it are always base64 encoded.
//
// The package is pure (no I/O except the [ReadPayload] helper) and allocation-conscious: decoders
// return packets whose Data aliases the input (only base64 messages are copied), encoders have
// append-style variants ([AppendPacket], [AppendPayload]) that write into a caller's buffer, and
// [SplitPayload] walks a payload without allocating. No function panics on any input.
package eioparser

import (
	"encoding/base64"
	"errors"
)

// Protocol is the Engine.IO protocol revision implemented by this package (the EIO query parameter).
const Protocol = 4

// Separator separates the packets of a long-polling payload (ASCII record separator).
const Separator byte = 0x1e

// PacketType is the type of an Engine.IO packet.
type PacketType byte

// The Engine.IO v4 packet types, with their wire digits.
const (
	Open    PacketType = 0 // server → client, handshake data
	Close   PacketType = 1 // either side, closes the transport
	Ping    PacketType = 2 // heartbeat ("2probe" during an upgrade)
	Pong    PacketType = 3 // heartbeat answer ("3probe" during an upgrade)
	Message PacketType = 4 // application data (text or binary)
	Upgrade PacketType = 5 // client → server, completes a transport upgrade
	Noop    PacketType = 6 // server → client, releases a pending poll during an upgrade
)

var typeNames = [...]string{"open", "close", "ping", "pong", "message", "upgrade", "noop"}

// String returns the name engine.io uses for the type ("open", "message", …).
func (t PacketType) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return "invalid"
}

// Valid reports whether t is one of the seven Engine.IO packet types.
func (t PacketType) Valid() bool { return t <= Noop }

// Char returns the wire digit of t ('0'…'6').
func (t PacketType) Char() byte { return '0' + byte(t) }

// Packet is one Engine.IO packet.
//
// A decoded Packet's Data aliases the decoded input (except for a base64 binary message, whose bytes
// are freshly allocated): callers that keep a packet beyond the life of the input buffer must copy it.
type Packet struct {
	Type PacketType
	// Binary marks a binary message. A binary packet is always a message: when Binary is set, Type is
	// ignored by the encoders (as engine.io-parser does) and set to Message by the decoders.
	Binary bool
	// Data is the packet's payload: text (UTF-8, not checked here) or, if Binary, raw bytes.
	// An empty Data means no data ("4", "2").
	Data []byte
}

// Errors returned by the decoders. Every decoding error matches [ErrParser] with errors.Is; the
// Engine.IO server answers any of them the way Node does with its "parser error" packet: it closes the
// session ("parse error").
var (
	ErrParser          error = &parseError{"parser error"}
	ErrEmptyPacket     error = &parseError{"empty packet"}
	ErrUnknownType     error = &parseError{"unknown packet type"}
	ErrBadBase64       error = &parseError{"invalid base64 in binary packet"}
	ErrPayloadTooLarge       = errors.New("eioparser: payload exceeds maxPayload")
)

type parseError struct{ msg string }

func (e *parseError) Error() string        { return "eioparser: " + e.msg }
func (e *parseError) Is(target error) bool { return target == ErrParser }

// EncodedLen returns the exact number of bytes [AppendPacket] appends for p.
func EncodedLen(p Packet, supportsBinary bool) int {
	if p.Binary {
		if supportsBinary {
			return len(p.Data)
		}
		return 1 + base64.StdEncoding.EncodedLen(len(p.Data))
	}
	return 1 + len(p.Data)
}

// AppendPacket appends the encoding of p to dst and returns the extended buffer.
//
// A text packet is encoded as its type digit followed by Data. A binary message is encoded as its raw
// bytes when supportsBinary is true (the caller sends them in a binary WebSocket frame), and as "b"
// followed by base64 otherwise (polling, or a client that asked for base64). p.Type must be valid.
func AppendPacket(dst []byte, p Packet, supportsBinary bool) []byte {
	if p.Binary {
		if supportsBinary {
			return append(dst, p.Data...)
		}
		dst = append(dst, 'b')
		return base64.StdEncoding.AppendEncode(dst, p.Data)
	}
	dst = append(dst, p.Type.Char())
	return append(dst, p.Data...)
}

// EncodePacket returns the encoding of p in a new slice (see [AppendPacket]).
func EncodePacket(p Packet, supportsBinary bool) []byte {
	return AppendPacket(make([]byte, 0, EncodedLen(p, supportsBinary)), p, supportsBinary)
}

// DecodePacket decodes one packet.
//
// binaryFrame tells how the bytes arrived: true for the payload of a binary WebSocket frame, which is
// always a binary message carrying exactly those bytes; false for a text frame or one packet of a
// polling payload, which is either a type digit followed by data or "b" followed by base64.
//
// Errors: [ErrEmptyPacket] for an empty text packet, [ErrUnknownType] for a first byte that is neither
// a type digit nor 'b', [ErrBadBase64] for malformed base64 (engine.io-parser silently skips invalid
// characters; this decoder rejects them). Text data is not checked to be UTF-8.
func DecodePacket(data []byte, binaryFrame bool) (Packet, error) {
	if binaryFrame {
		return Packet{Type: Message, Binary: true, Data: data}, nil
	}
	if len(data) == 0 {
		return Packet{}, ErrEmptyPacket
	}
	c := data[0]
	if c == 'b' {
		b, err := decodeBase64(data[1:])
		if err != nil {
			return Packet{}, err
		}
		return Packet{Type: Message, Binary: true, Data: b}, nil
	}
	if c < '0' || c > '6' {
		return Packet{}, ErrUnknownType
	}
	p := Packet{Type: PacketType(c - '0')}
	if len(data) > 1 {
		p.Data = data[1:]
	}
	return p, nil
}

// decodeBase64 decodes standard base64, padded or not (engine.io-parser accepts both), into a new
// slice. Any other character is an error, except CR and LF, which encoding/base64 skips.
func decodeBase64(s []byte) ([]byte, error) {
	enc := base64.StdEncoding
	if len(s)%4 != 0 && !containsPadding(s) {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, 0, enc.DecodedLen(len(s)))
	out, err := enc.AppendDecode(out, s)
	if err != nil {
		return nil, ErrBadBase64
	}
	return out, nil
}

func containsPadding(s []byte) bool {
	for _, c := range s {
		if c == '=' {
			return true
		}
	}
	return false
}
