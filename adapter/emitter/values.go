package emitter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// Arguments are first turned into the values a JavaScript program would
// have handed Node's emitter (plain values: nil, bool, string, int64,
// uint64, float64, []byte for a Buffer, time.Time for a Date, []any for an
// array, *object for an object), then encoded as notepack.io (broadcasts)
// or JSON.stringify (requests) encode those.

// maxDepth bounds the nesting of arrays and objects in arguments (a value
// that contains itself would never end). Switchboard nodes drop broadcasts
// nested deeper than about 130 levels; Node servers take any depth.
const maxDepth = 1000

var errTooDeep = fmt.Errorf("arguments nested deeper than %d levels", maxDepth)

// object is a JavaScript object: its keys in the order a JS object
// iterates them (see jsOrder).
type object struct {
	keys []string
	vals []any
}

// plainArgs is [event, ...args] as plain values.
func plainArgs(event string, args []any) ([]any, error) {
	out := make([]any, 1, len(args)+1)
	out[0] = event
	for i, a := range args {
		v, err := plain(a, 1)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// plain turns v into a plain value (see above).
func plain(v any, depth int) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, int64, uint64, float64, time.Time:
		return x, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint:
		return uint64(x), nil
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case float32:
		return float64(x), nil // JavaScript numbers are doubles
	case []byte:
		if x == nil {
			return []byte{}, nil // a Buffer is never null
		}
		return x, nil
	case json.RawMessage:
		return decodeJSON(x, depth)
	case []any:
		if depth >= maxDepth {
			return nil, errTooDeep
		}
		out := make([]any, len(x))
		for i, e := range x {
			p, err := plain(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	case map[string]any:
		if depth >= maxDepth {
			return nil, errTooDeep
		}
		o := &object{keys: make([]string, 0, len(x)), vals: make([]any, 0, len(x))}
		for k := range x {
			o.keys = append(o.keys, k)
		}
		slices.Sort(o.keys)
		for _, k := range o.keys {
			p, err := plain(x[k], depth+1)
			if err != nil {
				return nil, err
			}
			o.vals = append(o.vals, p)
		}
		o.jsOrder()
		return o, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeJSON(raw, depth)
}

// decodeJSON reads one JSON value into plain values, object members in
// their order.
func decodeJSON(raw []byte, depth int) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := readJSON(dec, depth)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the value")
	}
	return v, nil
}

func readJSON(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxDepth {
			return nil, errTooDeep
		}
		if t == '[' {
			arr := []any{}
			for dec.More() {
				v, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token() // ]
			return arr, err
		}
		o := &object{}
		var index map[string]int // for the repeated names of long objects
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, _ := k.(string)
			v, err := readJSON(dec, depth+1)
			if err != nil {
				return nil, err
			}
			// A repeated name keeps its first place and takes the last
			// value, as in JSON.parse.
			i := -1
			if index != nil {
				if j, ok := index[key]; ok {
					i = j
				}
			} else {
				i = slices.Index(o.keys, key)
				if len(o.keys) >= 16 {
					index = make(map[string]int, 2*len(o.keys))
					for j, k := range o.keys {
						index[k] = j
					}
				}
			}
			if i >= 0 {
				o.vals[i] = v
				continue
			}
			if index != nil {
				index[key] = len(o.keys)
			}
			o.keys = append(o.keys, key)
			o.vals = append(o.vals, v)
		}
		if _, err := dec.Token(); err != nil { // }
			return nil, err
		}
		o.jsOrder()
		return o, nil
	case json.Number:
		return jsonNumber(string(t)), nil
	default: // string, bool, nil
		return t, nil
	}
}

// jsonNumber is an integer when s is one that fits 64 bits, else a double.
func jsonNumber(s string) any {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return u
		}
	}
	f, _ := strconv.ParseFloat(s, 64) // ±Inf when out of range, as in JavaScript
	return f
}

// arrayIndex reports whether k is a canonical array index ("0", "17"),
// the keys a JavaScript object lists first, in numeric order.
func arrayIndex(k string) (uint64, bool) {
	if k == "" || len(k) > 10 || (k[0] == '0' && len(k) > 1) {
		return 0, false
	}
	n, err := strconv.ParseUint(k, 10, 64)
	if err != nil || n >= math.MaxUint32 {
		return 0, false
	}
	return n, true
}

// jsOrder reorders the keys as a JavaScript object with them, inserted in
// their current order, lists them: array indices first in numeric order,
// then the others as they were.
func (o *object) jsOrder() {
	type kv struct {
		k     string
		v     any
		index uint64
		isIdx bool
	}
	has := false
	for _, k := range o.keys {
		if _, ok := arrayIndex(k); ok {
			has = true
			break
		}
	}
	if !has {
		return
	}
	items := make([]kv, len(o.keys))
	for i, k := range o.keys {
		n, ok := arrayIndex(k)
		items[i] = kv{k, o.vals[i], n, ok}
	}
	slices.SortStableFunc(items, func(a, b kv) int {
		switch {
		case a.isIdx && b.isIdx:
			if a.index < b.index {
				return -1
			}
			if a.index > b.index {
				return 1
			}
			return 0
		case a.isIdx:
			return -1
		case b.isIdx:
			return 1
		}
		return 0
	})
	for i, it := range items {
		o.keys[i], o.vals[i] = it.k, it.v
	}
}

// ---- msgpack, as notepack.io 3 encodes ----

type msgpackWriter struct {
	enc *msgpack.Encoder
	err error
}

func (w *msgpackWriter) strings(list []string) {
	if w.err == nil {
		w.err = w.enc.EncodeArrayLen(len(list))
	}
	for _, s := range list {
		if w.err == nil {
			w.err = w.enc.EncodeString(s)
		}
	}
}

func (w *msgpackWriter) value(v any) {
	if w.err != nil {
		return
	}
	e := w.enc
	var err error
	switch x := v.(type) {
	case nil:
		err = e.EncodeNil()
	case bool:
		err = e.EncodeBool(x)
	case string:
		err = e.EncodeString(x)
	case int64:
		err = e.EncodeInt(x) // the smallest of fixint, (u)int 8, 16, 32, 64
	case uint64:
		err = e.EncodeUint(x)
	case float64:
		err = w.number(x)
	case []byte:
		err = e.EncodeBytes(x) // bin 8, 16 or 32
	case time.Time:
		err = e.EncodeTime(x) // timestamp 32, 64 or 96 (ext -1)
	case []any:
		if err = e.EncodeArrayLen(len(x)); err == nil {
			for _, el := range x {
				w.value(el)
			}
		}
	case *object:
		if err = e.EncodeMapLen(len(x.keys)); err == nil {
			for i, k := range x.keys {
				if w.err == nil {
					w.err = e.EncodeString(k)
				}
				w.value(x.vals[i])
			}
		}
	default:
		err = fmt.Errorf("value of type %T", v)
	}
	if w.err == nil {
		w.err = err
	}
}

// number encodes a double as notepack.io does: an integral finite one as
// an integer, anything else as float 64.
func (w *msgpackWriter) number(f float64) error {
	if f == math.Trunc(f) && !math.IsInf(f, 0) {
		switch {
		case f >= -(1<<63) && f < 1<<63:
			return w.enc.EncodeInt(int64(f)) // -0 is 0, as in notepack
		case f > 0 && f < 1<<64:
			return w.enc.EncodeUint(uint64(f))
		}
	}
	if math.IsNaN(f) {
		f = math.Float64frombits(0x7ff8000000000000) // the NaN V8 writes (Go's math.NaN has another)
	}
	return w.enc.EncodeFloat64(f) // the encoder's compact floats are off: always 0xcb
}

// ---- JSON, as JSON.stringify writes ----

func appendJSON(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case string:
		return sioparser.AppendString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case float64:
		return appendJSONNumber(b, x)
	case []byte: // Buffer.prototype.toJSON
		b = append(b, `{"type":"Buffer","data":[`...)
		for i, c := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(c), 10)
		}
		return append(b, "]}"...)
	case time.Time: // Date.prototype.toJSON
		b = append(b, '"')
		b = appendISODate(b, x)
		return append(b, '"')
	case []any:
		b = append(b, '[')
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, el)
		}
		return append(b, ']')
	case *object:
		b = append(b, '{')
		for i, k := range x.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = sioparser.AppendString(b, k)
			b = append(b, ':')
			b = appendJSON(b, x.vals[i])
		}
		return append(b, '}')
	}
	return append(b, "null"...) // not produced by plain
}

// appendJSONNumber writes f as JavaScript's Number.prototype.toString
// (what JSON.stringify writes; NaN and ±Infinity are null).
func appendJSONNumber(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if f == 0 {
		return append(b, '0') // -0 too
	}
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-07 → e-7, as JavaScript writes exponents
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendISODate writes t as Date.prototype.toISOString (milliseconds, UTC;
// six-digit signed years outside 0-9999).
func appendISODate(b []byte, t time.Time) []byte {
	t = t.UTC()
	y := t.Year()
	if y >= 0 && y <= 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	}
	sign := byte('+')
	if y < 0 {
		sign, y = '-', -y
	}
	b = append(b, sign)
	b = append(b, fmt.Sprintf("%06d", y)...)
	return t.AppendFormat(b, "-01-02T15:04:05.000Z")
}

func appendStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = sioparser.AppendString(b, s)
	}
	return append(b, ']')
}
