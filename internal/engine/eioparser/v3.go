package eioparser

import (
	"encoding/base64"
	"iter"
	"strconv"
	"unicode/utf8"
)

// Engine.IO protocol 3 (engine.io-parser 2.x), spoken by socket.io-client 2.x and accepted by Node's
// engine.io with allowEIO3. Its packets are those of protocol 4 except binary ones: a binary WebSocket
// frame starts with the packet type byte (4), and base64 binary is "b4" + base64. Its polling payloads
// differ: text payloads prefix every packet with its length in UTF-16 code units and a colon (there is
// no separator); binary payloads (application/octet-stream, for clients that take binary) prefix every
// packet with 0 (text) or 1 (binary), its length as one byte per decimal digit, and 255.

// Protocol3 is the previous Engine.IO protocol version, EIO=3.
const Protocol3 = 3

// ErrBadLength is a protocol 3 payload whose length prefix is malformed or does not match its data.
var ErrBadLength error = &parseError{"bad length in payload"}

// maxLenDigits bounds a length prefix: a payload is far below 10^10 bytes.
const maxLenDigits = 10

// DecodePacketV3 decodes one protocol 3 packet: a binary WebSocket frame (its type byte, then the
// data: only messages are binary) or a text packet, where "b" is followed by the type digit and
// base64.
func DecodePacketV3(data []byte, binaryFrame bool) (Packet, error) {
	if binaryFrame {
		if len(data) == 0 || data[0] != byte(Message) {
			return Packet{}, ErrUnknownType
		}
		return Packet{Type: Message, Binary: true, Data: data[1:]}, nil
	}
	if len(data) > 0 && data[0] == 'b' {
		if len(data) < 2 || data[1] != Message.Char() {
			return Packet{}, ErrUnknownType
		}
		b, err := decodeBase64(data[2:])
		if err != nil {
			return Packet{}, err
		}
		return Packet{Type: Message, Binary: true, Data: b}, nil
	}
	return DecodePacket(data, false)
}

// UTF16Len is the length of UTF-8 text in UTF-16 code units, JavaScript's String length, the unit
// of protocol 3 text payloads (an invalid byte counts as one U+FFFD).
func UTF16Len(s []byte) int {
	n := 0
	for len(s) > 0 {
		if s[0] < utf8.RuneSelf {
			n++
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRune(s)
		if r > 0xFFFF {
			n += 2
		} else {
			n++
		}
		s = s[size:]
	}
	return n
}

// AppendTextV3 appends an encoded text packet (type digit and data) to a protocol 3 text payload.
func AppendTextV3(dst, packet []byte) []byte {
	dst = strconv.AppendInt(dst, int64(UTF16Len(packet)), 10)
	dst = append(dst, ':')
	return append(dst, packet...)
}

// AppendBase64V3 appends a binary message, as "b4" + base64, to a protocol 3 text payload.
func AppendBase64V3(dst, data []byte) []byte {
	dst = strconv.AppendInt(dst, int64(2+base64.StdEncoding.EncodedLen(len(data))), 10)
	dst = append(dst, ':', 'b', Message.Char())
	return base64.StdEncoding.AppendEncode(dst, data)
}

// AppendBinaryV3 appends a packet to a protocol 3 binary payload: an encoded text packet when
// binary is false, else the data of a binary message (its type byte is added here).
func AppendBinaryV3(dst, packet []byte, binary bool) []byte {
	n := len(packet)
	kind := byte(0)
	if binary {
		kind, n = 1, n+1
	}
	dst = append(dst, kind)
	start := len(dst)
	dst = strconv.AppendInt(dst, int64(n), 10)
	for i := start; i < len(dst); i++ {
		dst[i] -= '0' // one byte per digit, by value
	}
	dst = append(dst, 0xff)
	if binary {
		dst = append(dst, byte(Message))
	}
	return append(dst, packet...)
}

// SplitPayloadV3 iterates over the packets of a protocol 3 polling payload: a binary payload when
// binary is set (the body was application/octet-stream), else a text payload. Data aliases payload
// (except base64 binary). As engine.io-parser 2.x, an empty payload is an error, zero-length packets
// of a text payload are skipped, and the first error ends the iteration.
func SplitPayloadV3(payload []byte, binary bool) iter.Seq2[Packet, error] {
	return func(yield func(Packet, error) bool) {
		if len(payload) == 0 {
			yield(Packet{}, ErrEmptyPacket)
			return
		}
		rest := payload
		for len(rest) > 0 {
			var (
				p   Packet
				err error
				ok  = true
			)
			if binary {
				p, rest, err = nextBinaryV3(rest)
			} else {
				p, rest, ok, err = nextTextV3(rest)
			}
			if err != nil {
				yield(Packet{}, err)
				return
			}
			if ok && !yield(p, nil) {
				return
			}
		}
	}
}

// lengthPrefix reads decimal digits up to the byte end; digit maps a byte to its value (-1: not one).
func lengthPrefix(b []byte, end byte, digit func(byte) int) (n, used int, err error) {
	for i, c := range b {
		if c == end {
			if i == 0 {
				return 0, 0, ErrBadLength
			}
			return n, i + 1, nil
		}
		d := digit(c)
		if d < 0 || i >= maxLenDigits {
			return 0, 0, ErrBadLength
		}
		n = n*10 + d
	}
	return 0, 0, ErrBadLength
}

func asciiDigit(c byte) int {
	if c >= '0' && c <= '9' {
		return int(c - '0')
	}
	return -1
}

func byteDigit(c byte) int {
	if c <= 9 {
		return int(c)
	}
	return -1
}

// nextTextV3 reads "<n>:" and n UTF-16 code units of packet; ok is false for an empty packet.
func nextTextV3(b []byte) (p Packet, rest []byte, ok bool, err error) {
	n, used, err := lengthPrefix(b, ':', asciiDigit)
	if err != nil {
		return Packet{}, nil, false, err
	}
	b = b[used:]
	i, units := 0, 0
	for units < n {
		if i >= len(b) {
			return Packet{}, nil, false, ErrBadLength
		}
		if b[i] < utf8.RuneSelf {
			i++
			units++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		i += size
		if units++; r > 0xFFFF {
			units++
		}
	}
	if units != n { // the length ends inside a surrogate pair
		return Packet{}, nil, false, ErrBadLength
	}
	if n == 0 {
		return Packet{}, b, false, nil
	}
	p, err = DecodePacketV3(b[:i], false)
	return p, b[i:], true, err
}

// nextBinaryV3 reads one packet of a binary payload.
func nextBinaryV3(b []byte) (Packet, []byte, error) {
	text := b[0] == 0
	n, used, err := lengthPrefix(b[1:], 0xff, byteDigit)
	if err != nil {
		return Packet{}, nil, err
	}
	b = b[1+used:]
	if n > len(b) {
		return Packet{}, nil, ErrBadLength
	}
	if text {
		p, err := DecodePacketV3(b[:n], false)
		return p, b[n:], err
	}
	p, err := DecodePacketV3(b[:n], true)
	return p, b[n:], err
}
