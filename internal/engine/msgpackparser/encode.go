package msgpackparser

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// ErrBadJSON is returned by [Append] for data that is not valid JSON (a bug of the caller: the server
// only encodes JSON it produced).
var ErrBadJSON = errors.New("msgpackparser: data is not valid JSON")

// Append appends the MessagePack form of a packet to dst: a map {type, data, nsp, id} as
// socket.io-msgpack-parser's encoder writes it. data is the default parser's JSON (nil for none), in
// which placeholders {"_placeholder":true,"num":n} stand for atts[n]: they become binary values.
// BINARY_EVENT and BINARY_ACK are written as EVENT and ACK. Integers are written in their smallest
// form, other numbers as float 64, as notepack.io does.
func Append(dst []byte, t sioparser.PacketType, nsp string, id uint64, hasID bool, data json.RawMessage, atts [][]byte) ([]byte, error) {
	switch t {
	case sioparser.BinaryEvent:
		t = sioparser.Event
	case sioparser.BinaryAck:
		t = sioparser.Ack
	}
	if nsp == "" {
		nsp = "/"
	}
	n := 2
	if len(data) > 0 {
		n++
	}
	if hasID {
		n++
	}
	dst = append(dst, 0x80|byte(n))
	dst = appendStr(dst, "type")
	dst = appendInt(dst, int64(t))
	if len(data) > 0 {
		dst = appendStr(dst, "data")
		w := writer{b: data, atts: atts, out: dst}
		i, err := w.value(w.ws(0), 0)
		if err != nil {
			return nil, err
		}
		if w.ws(i) != len(data) {
			return nil, ErrBadJSON
		}
		dst = w.out
	}
	dst = appendStr(dst, "nsp")
	dst = appendStr(dst, nsp)
	if hasID {
		dst = appendStr(dst, "id")
		if id > math.MaxInt64 {
			dst = append(dst, 0xcf)
			dst = binary.BigEndian.AppendUint64(dst, id)
		} else {
			dst = appendInt(dst, int64(id))
		}
	}
	return dst, nil
}

type writer struct {
	b    []byte
	atts [][]byte
	out  []byte
}

func (w *writer) ws(i int) int {
	for i < len(w.b) && (w.b[i] == ' ' || w.b[i] == '\t' || w.b[i] == '\n' || w.b[i] == '\r') {
		i++
	}
	return i
}

// value transcodes the JSON value at i and returns the index after it.
func (w *writer) value(i, depth int) (int, error) {
	if i >= len(w.b) || depth > sioparser.MaxDepthLimit {
		return 0, ErrBadJSON
	}
	switch c := w.b[i]; {
	case c == '{':
		return w.object(i, depth)
	case c == '[':
		n, _, err := scan(w.b, i, depth)
		if err != nil {
			return 0, err
		}
		w.out = appendArrayLen(w.out, n)
		i = w.ws(i + 1)
		for k := 0; k < n; k++ {
			if i, err = w.value(i, depth+1); err != nil {
				return 0, err
			}
			i = w.ws(i)
			i = w.ws(i + 1) // ',' or ']'
		}
		if n == 0 {
			i = w.ws(i + 1)
		}
		return i, nil
	case c == '"':
		s, end, err := str(w.b, i)
		if err != nil {
			return 0, err
		}
		w.out = appendStrBytes(w.out, s)
		return end, nil
	case c == 't' && hasLiteral(w.b, i, "true"):
		w.out = append(w.out, 0xc3)
		return i + 4, nil
	case c == 'f' && hasLiteral(w.b, i, "false"):
		w.out = append(w.out, 0xc2)
		return i + 5, nil
	case c == 'n' && hasLiteral(w.b, i, "null"):
		w.out = append(w.out, 0xc0)
		return i + 4, nil
	case c == '-' || c >= '0' && c <= '9':
		end := numberEnd(w.b, i)
		lit := string(w.b[i:end])
		if v, err := strconv.ParseInt(lit, 10, 64); err == nil {
			w.out = appendInt(w.out, v)
		} else if u, err := strconv.ParseUint(lit, 10, 64); err == nil {
			w.out = append(w.out, 0xcf)
			w.out = binary.BigEndian.AppendUint64(w.out, u)
		} else if f, err := strconv.ParseFloat(lit, 64); err == nil || errors.Is(err, strconv.ErrRange) {
			w.out = append(w.out, 0xcb)
			w.out = binary.BigEndian.AppendUint64(w.out, math.Float64bits(f))
		} else {
			return 0, ErrBadJSON
		}
		return end, nil
	}
	return 0, ErrBadJSON
}

func (w *writer) object(i, depth int) (int, error) {
	n, ph, err := scan(w.b, i, depth)
	if err != nil {
		return 0, err
	}
	if ph >= 0 && ph < len(w.atts) {
		w.out = appendBin(w.out, w.atts[ph])
		_, end, err := skip(w.b, i, depth)
		return end, err
	}
	w.out = appendMapLen(w.out, n)
	i = w.ws(i + 1)
	for k := 0; k < n; k++ {
		key, end, err := str(w.b, i)
		if err != nil {
			return 0, err
		}
		w.out = appendStrBytes(w.out, key)
		i = w.ws(w.ws(end) + 1) // past ':'
		if i, err = w.value(i, depth+1); err != nil {
			return 0, err
		}
		i = w.ws(w.ws(i) + 1) // ',' or '}'
	}
	if n == 0 {
		i = w.ws(i + 1)
	}
	return i, nil
}

// scan counts the elements (or members) of the container at i and, for an object, returns the num
// of a placeholder ("_placeholder" true and an integer "num"), -1 when it is none.
func scan(b []byte, i, depth int) (n, placeholder int, err error) {
	placeholder = -1
	isPlaceholder, num := false, -1
	obj := b[i] == '{'
	i = wsAt(b, i+1)
	if i < len(b) && (b[i] == ']' || b[i] == '}') {
		return 0, -1, nil
	}
	for {
		if obj {
			key, end, err := str(b, i)
			if err != nil {
				return 0, -1, err
			}
			i = wsAt(b, end)
			if i >= len(b) || b[i] != ':' {
				return 0, -1, ErrBadJSON
			}
			i = wsAt(b, i+1)
			vStart := i
			if _, i, err = skip(b, i, depth+1); err != nil {
				return 0, -1, err
			}
			switch string(key) {
			case "_placeholder":
				isPlaceholder = string(b[vStart:i]) == "true"
			case "num":
				if v, err := strconv.Atoi(string(b[vStart:i])); err == nil && v >= 0 {
					num = v
				}
			}
		} else if _, i, err = skip(b, i, depth+1); err != nil {
			return 0, -1, err
		}
		n++
		i = wsAt(b, i)
		if i >= len(b) {
			return 0, -1, ErrBadJSON
		}
		switch b[i] {
		case ',':
			i = wsAt(b, i+1)
			continue
		case ']', '}':
		default:
			return 0, -1, ErrBadJSON
		}
		break
	}
	if isPlaceholder && num >= 0 {
		placeholder = num
	}
	return n, placeholder, nil
}

// skip returns the bounds of the JSON value at i.
func skip(b []byte, i, depth int) (start, end int, err error) {
	if i >= len(b) || depth > sioparser.MaxDepthLimit {
		return 0, 0, ErrBadJSON
	}
	start = i
	switch c := b[i]; {
	case c == '{' || c == '[':
		d := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				_, e, err := str(b, i)
				if err != nil {
					return 0, 0, err
				}
				i = e - 1
			case '{', '[':
				d++
			case '}', ']':
				d--
				if d == 0 {
					return start, i + 1, nil
				}
			}
		}
		return 0, 0, ErrBadJSON
	case c == '"':
		_, e, err := str(b, i)
		return start, e, err
	case c == 't' && hasLiteral(b, i, "true"):
		return start, i + 4, nil
	case c == 'f' && hasLiteral(b, i, "false"):
		return start, i + 5, nil
	case c == 'n' && hasLiteral(b, i, "null"):
		return start, i + 4, nil
	case c == '-' || c >= '0' && c <= '9':
		return start, numberEnd(b, i), nil
	}
	return 0, 0, ErrBadJSON
}

// str returns the decoded JSON string at i and the index after it.
func str(b []byte, i int) ([]byte, int, error) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, ErrBadJSON
	}
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			if !escaped {
				return b[i+1 : j], j + 1, nil
			}
			var s string
			if err := json.Unmarshal(b[i:j+1], &s); err != nil {
				return nil, 0, ErrBadJSON
			}
			return []byte(s), j + 1, nil
		}
	}
	return nil, 0, ErrBadJSON
}

func wsAt(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasLiteral(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

func numberEnd(b []byte, i int) int {
	for i < len(b) {
		switch c := b[i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			i++
		default:
			return i
		}
	}
	return i
}

func appendInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= 0x7f:
		return append(dst, byte(v))
	case v < 0 && v >= -32:
		return append(dst, byte(int8(v)))
	case v >= 0 && v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v >= 0 && v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	case v >= 0 && v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	case v >= 0:
		return binary.BigEndian.AppendUint64(append(dst, 0xcf), uint64(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(int8(v)))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, 0xd1), uint16(int16(v)))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(int32(v)))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

func appendStr(dst []byte, s string) []byte {
	return append(strHeader(dst, len(s)), s...)
}

func appendStrBytes(dst, s []byte) []byte {
	return append(strHeader(dst, len(s)), s...)
}

func strHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
}

func appendBin(dst, b []byte) []byte {
	switch n := len(b); {
	case n <= math.MaxUint8:
		dst = append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xc5), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
	}
	return append(dst, b...)
}

func appendArrayLen(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(n))
}

func appendMapLen(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdf), uint32(n))
}
