package sioparser

import (
	"encoding/json"
)

// RawArgs are the arguments of an event or an ack still encoded: the elements of the JSON array
// without its brackets ("1,{\"a\":2}"), empty when there are none. It aliases the packet's data.
type RawArgs []byte

// SplitEvent splits the data of an EVENT or BINARY_EVENT, a JSON array whose first element is the
// event name, into the name and the arguments, without decoding the arguments.
//
// name is the unescaped event name; it aliases data unless the name contained escapes. A numeric
// name (socket.io-parser accepts numbers) is returned as its JSON text. A lookup such as
// handlers[string(name)] does not allocate.
//
// SplitEvent reads only the brackets and the name: it relies on data being valid JSON, as the
// [Decoder] guarantees. Anything else may yield an error or arguments that are not valid JSON, never
// a panic. It does not check reserved names (the decoder does).
func SplitEvent(data []byte) (name []byte, args RawArgs, err error) {
	inner, ok := arrayBody(data)
	if !ok || len(inner) == 0 {
		return nil, nil, ErrInvalidPayload
	}
	var end int
	switch c := inner[0]; {
	case c == '"':
		end = scanString(inner, 0)
		if end < 0 {
			return nil, nil, ErrInvalidPayload
		}
		name = inner[1 : end-1]
		if hasBackslash(name) {
			name = unquote(nil, inner[:end])
		}
	case c == '-' || (c >= '0' && c <= '9'):
		end = scanNumber(inner, 0)
		if end < 0 {
			return nil, nil, ErrInvalidPayload
		}
		name = inner[:end]
	default:
		return nil, nil, ErrInvalidPayload
	}
	rest := inner[skipSpace(inner, end):]
	if len(rest) == 0 {
		return name, nil, nil
	}
	if rest[0] != ',' {
		return nil, nil, ErrInvalidPayload
	}
	args = RawArgs(trimSpace(rest[1:]))
	if len(args) == 0 {
		return nil, nil, ErrInvalidPayload // "[\"a\",]"
	}
	return name, args, nil
}

// SplitArray returns the elements of a JSON array (the data of an ACK) without its brackets. Like
// [SplitEvent] it relies on data being valid JSON and checks only the brackets.
func SplitArray(data []byte) (RawArgs, error) {
	inner, ok := arrayBody(data)
	if !ok {
		return nil, ErrInvalidPayload
	}
	return RawArgs(inner), nil
}

// arrayBody returns what lies between the brackets of the JSON array data, trimmed of white space.
func arrayBody(data []byte) ([]byte, bool) {
	data = trimSpace(data)
	if len(data) < 2 || data[0] != '[' || data[len(data)-1] != ']' {
		return nil, false
	}
	return trimSpace(data[1 : len(data)-1]), true
}

func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// Split appends each argument to dst, as a slice of a, and returns the extended slice. Unlike
// [SplitEvent] it scans every argument and fails with [ErrInvalidPayload] if a is not a list of valid
// JSON values (nesting bounded by [MaxDepthLimit]).
func (a RawArgs) Split(dst []json.RawMessage) ([]json.RawMessage, error) {
	s := scanner{data: a, maxDepth: MaxDepthLimit}
	i := 0
	for i < len(a) {
		end := s.value(i, 0)
		if s.err != nil {
			return dst, s.err
		}
		dst = append(dst, json.RawMessage(a[i:end]))
		i = skipSpace(a, end)
		if i == len(a) {
			break
		}
		if a[i] != ',' {
			return dst, ErrInvalidPayload
		}
		i = skipSpace(a, i+1)
		if i == len(a) {
			return dst, ErrInvalidPayload // trailing comma
		}
	}
	return dst, nil
}

// AppendArray appends the arguments as a JSON array, "[" + a + "]", to dst.
func (a RawArgs) AppendArray(dst []byte) []byte {
	dst = append(dst, '[')
	dst = append(dst, a...)
	return append(dst, ']')
}

// Array returns the arguments as a JSON array in a new slice (for json.Unmarshal into a slice or a
// struct of fields).
func (a RawArgs) Array() json.RawMessage { return a.AppendArray(make([]byte, 0, len(a)+2)) }
