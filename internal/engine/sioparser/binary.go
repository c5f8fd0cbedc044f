package sioparser

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
)

// Placeholder is what stands for an attachment in the JSON data of a binary packet; it marshals as
// {"_placeholder":true,"num":n}, the form socket.io-parser writes.
type Placeholder struct {
	Placeholder bool `json:"_placeholder"`
	Num         int  `json:"num"`
}

// Deconstruct prepares a value tree for a binary packet (socket.io-parser's deconstructPacket): it
// returns a copy of v in which every []byte reachable through []any and map[string]any is replaced by
// a [Placeholder] numbered in document order (depth first, object keys sorted as encoding/json
// writes them), and those byte slices, in that order, as the attachments. Other values (including json.RawMessage, which is JSON already) are kept as they are.
// Nesting deeper than maxDepth (0: [DefaultMaxDepth]) fails with [ErrTooDeep], which also stops a
// cyclic tree. With no []byte in v, attachments is empty and the packet is a plain EVENT or ACK.
func Deconstruct(v any, maxDepth int) (tree any, attachments [][]byte, err error) {
	tree, err = deconstruct(v, &attachments, 0, clampDepth(maxDepth))
	if err != nil {
		return nil, nil, err
	}
	return tree, attachments, nil
}

func deconstruct(v any, atts *[][]byte, depth, maxDepth int) (any, error) {
	switch x := v.(type) {
	case []byte:
		ph := Placeholder{Placeholder: true, Num: len(*atts)}
		*atts = append(*atts, x)
		return ph, nil
	case []any:
		if depth >= maxDepth {
			return nil, ErrTooDeep
		}
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = deconstruct(e, atts, depth+1, maxDepth); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		if depth >= maxDepth {
			return nil, ErrTooDeep
		}
		// Keys in sorted order, the order encoding/json writes them in, so that attachments are
		// numbered in document order (and deterministically).
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			var err error
			if out[k], err = deconstruct(x[k], atts, depth+1, maxDepth); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// MarshalData encodes v as the data of a packet: [Deconstruct] (with [DefaultMaxDepth]), then JSON
// without HTML escaping, like JSON.stringify (object keys come out sorted, as encoding/json writes
// maps). When attachments is not empty, the packet must be a BINARY_EVENT or BINARY_ACK carrying
// them, as socket.io-parser's encoder turns an EVENT or ACK with binary into one. Numbers follow
// encoding/json, which writes them as JavaScript does, except -0 ("-0", JSON.stringify writes 0) and
// NaN or ±Inf (an error; JSON.stringify writes null).
func MarshalData(v any) (data json.RawMessage, attachments [][]byte, err error) {
	tree, attachments, err := Deconstruct(v, 0)
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return nil, nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), attachments, nil
}

// Reconstruct decodes the data of a binary packet into a value tree (socket.io-parser's
// reconstructPacket): JSON objects become map[string]any, arrays []any, numbers json.Number, and each
// placeholder object becomes the attachment it refers to ([]byte, shared with attachments). It
// fails, like the decoder, if data is not valid JSON nested at most maxDepth (0: [DefaultMaxDepth])
// or a placeholder's num is not an integer index into attachments. Data without placeholders decodes
// to the same tree as with encoding/json (with UseNumber).
func Reconstruct(data json.RawMessage, attachments [][]byte, maxDepth int) (any, error) {
	maxDepth = clampDepth(maxDepth)
	s := scanner{data: data, maxDepth: maxDepth, placeholders: true, attachments: len(attachments)}
	end := s.value(skipSpace(data, 0), 0)
	if s.err != nil {
		return nil, s.err
	}
	if skipSpace(data, end) != len(data) {
		return nil, ErrInvalidPayload
	}
	if s.placeholderErr != nil {
		return nil, s.placeholderErr
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, ErrInvalidPayload
	}
	return reconstruct(v, attachments, 0, maxDepth)
}

func reconstruct(v any, atts [][]byte, depth, maxDepth int) (any, error) {
	if depth > maxDepth {
		return nil, ErrTooDeep
	}
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			var err error
			if x[i], err = reconstruct(e, atts, depth+1, maxDepth); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		if x["_placeholder"] == true {
			num, ok := x["num"].(json.Number)
			if !ok {
				return nil, ErrIllegalPlaceholder
			}
			f, err := strconv.ParseFloat(string(num), 64)
			if err != nil || f < 0 || f >= float64(len(atts)) || f != float64(int64(f)) {
				return nil, ErrIllegalPlaceholder
			}
			return atts[int(f)], nil
		}
		for k, e := range x {
			var err error
			if x[k], err = reconstruct(e, atts, depth+1, maxDepth); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}
