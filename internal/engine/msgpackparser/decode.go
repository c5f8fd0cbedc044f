package msgpackparser

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// DefaultMaxBinaries bounds the binary values of one packet. socket.io-msgpack-parser has no such
// bound; a message is already bounded by the engine's max payload, and this keeps what a message of
// tiny binary values costs (a slice header each) within a small multiple of its size.
const DefaultMaxBinaries = 1000

// Errors. Every one matches [sioparser.ErrInvalidPacket] with errors.Is, so that a server treats them
// as any other malformed packet (it closes the connection, as socket.io does on a decoder exception).
var (
	ErrNotMsgpack = wrap("not a MessagePack packet")
	ErrTruncated  = wrap("truncated MessagePack value")
	ErrType       = wrap("invalid packet type")
	ErrNamespace  = wrap("invalid namespace")
	ErrPayload    = wrap("invalid payload")
	ErrID         = wrap("invalid packet id")
	ErrKey        = wrap("map key is neither a string nor an integer")
	ErrTooMany    = wrap("too many binary values")
)

type parseError struct{ msg string }

func wrap(msg string) error                { return &parseError{msg} }
func (e *parseError) Error() string        { return "msgpackparser: " + e.msg }
func (e *parseError) Is(target error) bool { return target == sioparser.ErrInvalidPacket }

// Decoder decodes the packets of one connection. The zero value is ready to use with the default
// limits.
type Decoder struct {
	// MaxBinaries bounds the binary values of one packet; 0 means DefaultMaxBinaries.
	MaxBinaries int
	// MaxDepth bounds the nesting of arrays and maps in data; 0 means sioparser.DefaultMaxDepth.
	MaxDepth int
}

// Decode decodes one binary message into the default parser's form of the packet: Data is JSON in
// which every binary value is a placeholder and Attachments holds the values (they alias msg). An
// EVENT or ACK with binary values is returned as BINARY_EVENT or BINARY_ACK.
//
// Validation follows socket.io-msgpack-parser's checkPacket: a map whose "type" is an integer 0–4,
// "nsp" a string, "id" absent or a non-negative integer, and "data" as the type requires (CONNECT: an
// object or absent; DISCONNECT: absent; CONNECT_ERROR: a string or an object; EVENT, ACK: an array);
// then sioparser's checks of the data (an event's name, reserved names).
func (d *Decoder) Decode(msg []byte) (sioparser.Packet, error) {
	r := reader{b: msg, maxDepth: d.MaxDepth, maxBin: d.MaxBinaries}
	if r.maxDepth <= 0 {
		r.maxDepth = sioparser.DefaultMaxDepth
	}
	if r.maxBin <= 0 {
		r.maxBin = DefaultMaxBinaries
	}
	p, err := r.packet()
	if err != nil {
		return sioparser.Packet{}, err
	}
	if r.i != len(msg) {
		return sioparser.Packet{}, ErrNotMsgpack
	}
	if err := p.Validate(); err != nil {
		return sioparser.Packet{}, err
	}
	return p, nil
}

type reader struct {
	b        []byte
	i        int
	maxDepth int
	maxBin   int
	out      []byte   // JSON of the data being transcoded
	atts     [][]byte // its binary values
}

func (r *reader) packet() (sioparser.Packet, error) {
	n, ok, err := r.mapLen()
	if err != nil {
		return sioparser.Packet{}, err
	}
	if !ok {
		return sioparser.Packet{}, ErrNotMsgpack
	}
	var (
		p               sioparser.Packet
		hasType, hasNsp bool
		hasData         bool
		typ             int64
		dataKind        byte // first byte of the data's JSON: '{', '[', '"' or other
	)
	for ; n > 0; n-- {
		key, err := r.key()
		if err != nil {
			return p, err
		}
		switch key {
		case "type":
			v, isInt, err := r.integer()
			if err != nil {
				return p, err
			}
			if !isInt || v < 0 || v > int64(sioparser.ConnectError) {
				return p, ErrType
			}
			typ, hasType = v, true
		case "nsp":
			s, isStr, err := r.str()
			if err != nil {
				return p, err
			}
			if !isStr {
				return p, ErrNamespace
			}
			p.Nsp, hasNsp = s, true
		case "id":
			if r.peekUndefined() {
				r.skipUndefined()
				continue
			}
			v, isInt, err := r.integer()
			if err != nil {
				return p, err
			}
			if !isInt || v < 0 {
				return p, ErrID
			}
			p.ID, p.HasID = uint64(v), true
		case "data":
			if r.peekUndefined() {
				r.skipUndefined() // notepack's undefined: as if absent
				continue
			}
			r.out, r.atts = r.out[:0], nil
			if err := r.value(0); err != nil {
				return p, err
			}
			p.Data, p.Attachments, hasData = r.out, r.atts, true
			dataKind = r.out[0]
		default:
			if err := r.skip(0); err != nil {
				return p, err
			}
		}
	}
	if !hasType {
		return p, ErrType
	}
	if !hasNsp {
		return p, ErrNamespace
	}
	p.Type = sioparser.PacketType(typ)
	valid := false
	switch p.Type {
	case sioparser.Connect:
		valid = !hasData || dataKind == '{'
	case sioparser.Disconnect:
		valid = !hasData
	case sioparser.ConnectError:
		valid = hasData && (dataKind == '"' || dataKind == '{')
	default:
		valid = hasData && dataKind == '['
	}
	if !valid {
		return p, ErrPayload
	}
	if len(p.Attachments) > 0 {
		switch p.Type {
		case sioparser.Event:
			p.Type = sioparser.BinaryEvent
		case sioparser.Ack:
			p.Type = sioparser.BinaryAck
		default:
			return p, ErrPayload // binary in a CONNECT or CONNECT_ERROR: the rest of the server has no use for it
		}
	}
	return p, nil
}

func (r *reader) need(n int) error {
	if n < 0 || len(r.b)-r.i < n {
		return ErrTruncated
	}
	return nil
}

func (r *reader) u8() (byte, error) {
	if err := r.need(1); err != nil {
		return 0, err
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

// uint reads an n-byte big-endian unsigned integer (n: 1, 2, 4, 8).
func (r *reader) uint(n int) (uint64, error) {
	if err := r.need(n); err != nil {
		return 0, err
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	default:
		return binary.BigEndian.Uint64(b), nil
	}
}

func (r *reader) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(r.b)-r.i) {
		return nil, ErrTruncated
	}
	b := r.b[r.i : r.i+int(n) : r.i+int(n)]
	r.i += int(n)
	return b, nil
}

// mapLen reads a map header; ok is false (nothing consumed) when the next value is not a map.
func (r *reader) mapLen() (n uint64, ok bool, err error) {
	if err := r.need(1); err != nil {
		return 0, false, err
	}
	c := r.b[r.i]
	switch {
	case c&0xf0 == 0x80:
		r.i++
		return uint64(c & 0x0f), true, nil
	case c == 0xde:
		r.i++
		n, err = r.uint(2)
	case c == 0xdf:
		r.i++
		n, err = r.uint(4)
	default:
		return 0, false, nil
	}
	if err == nil && n > uint64(len(r.b)-r.i)/2 { // every entry takes two bytes at least
		err = ErrTruncated
	}
	return n, true, err
}

func (r *reader) peekUndefined() bool {
	return len(r.b)-r.i >= 3 && r.b[r.i] == 0xd4 && r.b[r.i+1] == 0
}

func (r *reader) skipUndefined() { r.i += 3 }

// strHeader reads a str header; ok is false (nothing consumed) when the next value is not a string.
func (r *reader) strHeader() (n uint64, ok bool, err error) {
	if err := r.need(1); err != nil {
		return 0, false, err
	}
	c := r.b[r.i]
	switch {
	case c&0xe0 == 0xa0:
		r.i++
		return uint64(c & 0x1f), true, nil
	case c >= 0xd9 && c <= 0xdb:
		r.i++
		n, err = r.uint(1 << (c - 0xd9))
		return n, true, err
	}
	return 0, false, nil
}

func (r *reader) str() (string, bool, error) {
	n, ok, err := r.strHeader()
	if err != nil || !ok {
		return "", ok, err
	}
	b, err := r.bytes(n)
	return string(b), true, err
}

// key reads a map key of the packet itself: a string (anything else is read and ignored as "").
func (r *reader) key() (string, error) {
	s, ok, err := r.str()
	if err != nil || ok {
		return s, err
	}
	return "", r.skip(0)
}

// integer reads an integer value; isInt is false (the value consumed) when it is not one. A float
// with an integral value counts, as JavaScript's Number.isInteger has it.
func (r *reader) integer() (v int64, isInt bool, err error) {
	c, err := r.u8()
	if err != nil {
		return 0, false, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), true, nil
	case c >= 0xe0:
		return int64(int8(c)), true, nil
	case c >= 0xcc && c <= 0xcf:
		u, err := r.uint(1 << (c - 0xcc))
		if err != nil {
			return 0, false, err
		}
		if u > math.MaxInt64 {
			return 0, false, nil
		}
		return int64(u), true, nil
	case c >= 0xd0 && c <= 0xd3:
		n := 1 << (c - 0xd0)
		u, err := r.uint(n)
		if err != nil {
			return 0, false, err
		}
		shift := 64 - 8*n
		return int64(u<<shift) >> shift, true, nil
	case c == 0xca || c == 0xcb:
		f, err := r.float(c)
		if err != nil {
			return 0, false, err
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), true, nil
		}
		return 0, false, nil
	}
	r.i--
	return 0, false, r.skip(0)
}

func (r *reader) float(c byte) (float64, error) {
	if c == 0xca {
		u, err := r.uint(4)
		return float64(math.Float32frombits(uint32(u))), err
	}
	u, err := r.uint(8)
	return math.Float64frombits(u), err
}

// value transcodes one MessagePack value to JSON in r.out.
func (r *reader) value(depth int) error {
	c, err := r.u8()
	if err != nil {
		return err
	}
	switch {
	case c <= 0x7f:
		r.out = strconv.AppendInt(r.out, int64(c), 10)
	case c >= 0xe0:
		r.out = strconv.AppendInt(r.out, int64(int8(c)), 10)
	case c&0xf0 == 0x80, c == 0xde, c == 0xdf:
		r.i--
		n, _, err := r.mapLen()
		if err != nil {
			return err
		}
		return r.object(n, depth)
	case c&0xf0 == 0x90, c == 0xdc, c == 0xdd:
		var n uint64 = uint64(c & 0x0f)
		if c == 0xdc || c == 0xdd {
			if n, err = r.uint(2 << (c - 0xdc)); err != nil {
				return err
			}
		}
		return r.array(n, depth)
	case c&0xe0 == 0xa0, c >= 0xd9 && c <= 0xdb:
		r.i--
		s, _, err := r.strBytes()
		if err != nil {
			return err
		}
		r.out = appendString(r.out, s)
	case c == 0xc0:
		r.out = append(r.out, "null"...)
	case c == 0xc2:
		r.out = append(r.out, "false"...)
	case c == 0xc3:
		r.out = append(r.out, "true"...)
	case c >= 0xc4 && c <= 0xc6:
		n, err := r.uint(1 << (c - 0xc4))
		if err != nil {
			return err
		}
		b, err := r.bytes(n)
		if err != nil {
			return err
		}
		return r.binary(b)
	case c == 0xca || c == 0xcb:
		f, err := r.float(c)
		if err != nil {
			return err
		}
		r.out = appendFloat(r.out, f)
	case c >= 0xcc && c <= 0xcf:
		u, err := r.uint(1 << (c - 0xcc))
		if err != nil {
			return err
		}
		r.out = strconv.AppendUint(r.out, u, 10)
	case c >= 0xd0 && c <= 0xd3:
		n := 1 << (c - 0xd0)
		u, err := r.uint(n)
		if err != nil {
			return err
		}
		shift := 64 - 8*n
		r.out = strconv.AppendInt(r.out, int64(u<<shift)>>shift, 10)
	case c >= 0xd4 && c <= 0xd8, c >= 0xc7 && c <= 0xc9:
		return r.ext(c, depth)
	default: // 0xc1: never used
		return ErrNotMsgpack
	}
	return nil
}

func (r *reader) strBytes() ([]byte, bool, error) {
	n, ok, err := r.strHeader()
	if err != nil || !ok {
		return nil, ok, err
	}
	b, err := r.bytes(n)
	return b, true, err
}

func (r *reader) binary(b []byte) error {
	if len(r.atts) >= r.maxBin {
		return ErrTooMany
	}
	r.out = append(r.out, `{"_placeholder":true,"num":`...)
	r.out = strconv.AppendInt(r.out, int64(len(r.atts)), 10)
	r.out = append(r.out, '}')
	r.atts = append(r.atts, b)
	return nil
}

func (r *reader) object(n uint64, depth int) error {
	if depth >= r.maxDepth {
		return sioparser.ErrTooDeep
	}
	r.out = append(r.out, '{')
	for i := uint64(0); i < n; i++ {
		if i > 0 {
			r.out = append(r.out, ',')
		}
		if s, ok, err := r.strBytes(); err != nil {
			return err
		} else if ok {
			r.out = appendString(r.out, s)
		} else if v, isInt, err := r.integer(); err != nil {
			return err
		} else if isInt { // JavaScript makes every key a string
			r.out = append(r.out, '"')
			r.out = strconv.AppendInt(r.out, v, 10)
			r.out = append(r.out, '"')
		} else {
			return ErrKey
		}
		r.out = append(r.out, ':')
		if err := r.value(depth + 1); err != nil {
			return err
		}
	}
	r.out = append(r.out, '}')
	return nil
}

func (r *reader) array(n uint64, depth int) error {
	if depth >= r.maxDepth {
		return sioparser.ErrTooDeep
	}
	if n > uint64(len(r.b)-r.i) { // every element takes a byte at least
		return ErrTruncated
	}
	r.out = append(r.out, '[')
	for i := uint64(0); i < n; i++ {
		if i > 0 {
			r.out = append(r.out, ',')
		}
		if err := r.value(depth + 1); err != nil {
			return err
		}
	}
	r.out = append(r.out, ']')
	return nil
}

// ext transcodes an extension value as notepack.io 2.2 (socket.io-msgpack-parser's) decodes it:
// fixext 1 of type 0 is undefined (null in JSON, as JSON.stringify writes it in an array), fixext 8
// of type 0 a Date in milliseconds (its ISO string, as JSON.stringify writes a Date), ext 8/16/32 of
// type 0 an ArrayBuffer (binary), any other [type, binary].
func (r *reader) ext(c byte, depth int) error {
	var n uint64
	var err error
	switch {
	case c >= 0xd4 && c <= 0xd8:
		n = 1 << (c - 0xd4)
	default:
		n, err = r.uint(1 << (c - 0xc7))
		if err != nil {
			return err
		}
	}
	t, err := r.u8()
	if err != nil {
		return err
	}
	b, err := r.bytes(n)
	if err != nil {
		return err
	}
	switch {
	case t == 0 && c == 0xd4:
		r.out = append(r.out, "null"...)
		return nil
	case t == 0 && c == 0xd7:
		ms := int64(int32(binary.BigEndian.Uint32(b)))<<32 | int64(binary.BigEndian.Uint32(b[4:]))
		r.out = appendDate(r.out, ms)
		return nil
	case t == 0 && c >= 0xc7 && c <= 0xc9:
		return r.binary(b)
	}
	if depth >= r.maxDepth {
		return sioparser.ErrTooDeep
	}
	r.out = append(r.out, '[')
	r.out = strconv.AppendInt(r.out, int64(int8(t)), 10)
	r.out = append(r.out, ',')
	if err := r.binary(b); err != nil {
		return err
	}
	r.out = append(r.out, ']')
	return nil
}

// maxDateMs is the range of a JavaScript Date; beyond it JSON.stringify writes null.
const maxDateMs = 8.64e15

// appendDate writes a Date as JSON.stringify does: toISOString, with a six-digit signed year
// outside 0000–9999.
func appendDate(dst []byte, ms int64) []byte {
	if ms > maxDateMs || ms < -maxDateMs {
		return append(dst, "null"...)
	}
	t := time.UnixMilli(ms).UTC()
	dst = append(dst, '"')
	if y := t.Year(); y < 0 || y > 9999 {
		if y < 0 {
			dst = append(dst, '-')
			y = -y
		} else {
			dst = append(dst, '+')
		}
		dst = fmt.Appendf(dst, "%06d", y)
		dst = t.AppendFormat(dst, "-01-02T15:04:05.000Z")
	} else {
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	}
	return append(dst, '"')
}

// skip reads past one value without transcoding it.
func (r *reader) skip(depth int) error {
	if depth >= r.maxDepth {
		return sioparser.ErrTooDeep
	}
	save, saveAtts := len(r.out), r.atts
	err := r.value(depth)
	r.out, r.atts = r.out[:save], saveAtts
	return err
}

func appendString(dst, s []byte) []byte {
	if utf8.Valid(s) && plain(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	return sioparser.AppendString(dst, string(s))
}

// plain reports whether s needs no JSON escaping.
func plain(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendFloat writes f as JSON.stringify does (NaN and ±Infinity as null).
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(dst, f, format, -1, 64)
}
