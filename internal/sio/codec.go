package sio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// bytesBuffer is a binary value other than []byte (a bytes.Buffer, say).
type bytesBuffer interface{ Bytes() []byte }

// normalize turns decoded arguments into plain Go values: binary buffers
// become []byte (copied: the caller may reuse buffers).
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case bytesBuffer:
		return bytes.Clone(x.Bytes())
	default:
		return v
	}
}

// ArgDecoder is implemented (on the pointer) by payload types that decode
// themselves from decoded plain values (map[string]any, []any, string,
// float64, bool, nil, []byte), skipping the JSON round trip of the default.
type ArgDecoder interface {
	DecodeArg(v any) error
}

// RawArgDecoder is implemented (on the pointer) by payload types that decode
// themselves from the JSON the client sent (text packets; binary ones go
// through ArgDecoder or JSON decoding).
type RawArgDecoder interface {
	DecodeRawArg(raw json.RawMessage) error
}

// decodeEventArg converts an event's first argument into T: from its JSON
// directly when the packet was text (one decoding, numbers exact), else as
// decodeArg does.
func decodeEventArg[T any](a eventArgs) (T, error) {
	if a.raw == nil {
		return decodeArg[T](a.vals)
	}
	if len(a.raw) == 0 || string(a.raw[0]) == "null" {
		return decodeArg[T](nil)
	}
	raw := a.raw[0]
	var out T
	switch p := any(&out).(type) {
	case RawArgDecoder:
		if err := p.DecodeRawArg(raw); err != nil {
			return out, Errorf(CodeBadRequest, "payload has the wrong shape: %s", err.Error())
		}
		return out, nil
	case ArgDecoder, *any, *string, *map[string]any:
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return out, Errorf(CodeBadRequest, "payload cannot be decoded")
		}
		return decodeArg[T]([]any{v})
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, Errorf(CodeBadRequest, "payload has the wrong shape: %s", shapeError(err))
	}
	return out, nil
}

// decodeArg converts one event argument into T. A missing or null argument is
// a bad request unless T can hold nil. []byte fields in T receive binary
// attachments (the JSON round trip carries them as base64).
func decodeArg[T any](args []any) (T, error) {
	var out T
	var arg any
	if len(args) > 0 {
		arg = normalize(args[0])
	}
	if arg == nil {
		switch k := reflect.TypeFor[T]().Kind(); k {
		case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
			return out, nil
		default:
			return out, Errorf(CodeBadRequest, "payload required")
		}
	}
	// Fast paths for the common shapes: no JSON round trip.
	switch p := any(&out).(type) {
	case ArgDecoder:
		if err := p.DecodeArg(arg); err != nil {
			return out, Errorf(CodeBadRequest, "payload has the wrong shape: %s", err.Error())
		}
		return out, nil
	case *any:
		*p = arg
		return out, nil
	case *string:
		s, ok := arg.(string)
		if !ok {
			return out, Errorf(CodeBadRequest, "payload must be a string")
		}
		*p = s
		return out, nil
	case *map[string]any:
		m, ok := arg.(map[string]any)
		if !ok {
			return out, Errorf(CodeBadRequest, "payload must be an object")
		}
		*p = m
		return out, nil
	}
	raw, err := json.Marshal(arg)
	if err != nil {
		return out, Errorf(CodeBadRequest, "payload cannot be decoded")
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, Errorf(CodeBadRequest, "payload has the wrong shape: %s", shapeError(err))
	}
	return out, nil
}

// shapeError keeps the client-facing message short and free of Go type names.
func shapeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	return "unexpected type"
}

// toWire prepares a value for the encoder: binary ([]byte) and
// generic containers pass through so attachments survive; anything else is
// encoded to JSON once here, so the encoder never fails on it (it would send
// an empty packet) and a broadcast is not re-encoded per recipient.
func toWire(v any) (any, error) {
	switch v.(type) {
	case nil, string, bool, float64, int, int64, []byte, json.RawMessage, map[string]any, []any:
		return v, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return json.RawMessage(raw), nil
}

var okEnvelope = json.RawMessage(`{"ok":true}`)

// ackSuccess wraps a handler result as {ok:true, ...fields of r}. An object
// result is merged; any other non-nil value is carried as {ok:true, data:r}.
func ackSuccess(r any) (any, error) {
	switch x := r.(type) {
	case nil:
		return okEnvelope, nil
	case []byte: // binary, as an attachment (json.Marshal would send base64 text)
		return map[string]any{"ok": true, "data": x}, nil
	case map[string]any:
		m := make(map[string]any, len(x)+1)
		for k, v := range x {
			m[k] = v
		}
		m["ok"] = true
		return m, nil
	}
	if rv := reflect.ValueOf(r); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return okEnvelope, nil
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode ack: %w", err)
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) >= 2 && raw[0] == '{' && string(raw) == "{}":
		return okEnvelope, nil
	case len(raw) >= 2 && raw[0] == '{':
		out := make([]byte, 0, len(raw)+10)
		out = append(out, `{"ok":true,`...)
		out = append(out, raw[1:]...)
		return json.RawMessage(out), nil
	case string(raw) == "null":
		return okEnvelope, nil
	default:
		out := make([]byte, 0, len(raw)+20)
		out = append(out, `{"ok":true,"data":`...)
		out = append(out, raw...)
		out = append(out, '}')
		return json.RawMessage(out), nil
	}
}

// ackFailure is the {ok:false, error:{code,message}} envelope.
func ackFailure(e *Error) any {
	raw, _ := json.Marshal(struct {
		OK    bool   `json:"ok"`
		Error *Error `json:"error"`
	}{false, e})
	return json.RawMessage(raw)
}
