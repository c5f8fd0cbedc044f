package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// FuzzAPIBody feeds the HTTP publish API's body decoders (api.go) anything:
// they never panic, refuse whatever is not one JSON object of their known
// members, and what they accept obeys their rules and decodes the same once
// encoded again.
func FuzzAPIBody(f *testing.F) {
	for _, s := range []string{
		`{"event":"news","args":[{"a":1},"two",3.5,null,true,[]]}`,
		`{"namespace":"/chat","rooms":["lobby","r2"],"except":["user:bob"],"event":"x"}`,
		`{"namespace":null,"rooms":null,"event":"x","args":null}`,
		`{"text":"hello","userId":"bot","name":"Bot","clientId":"c1"}`,
		`{"text":"hi"}`,
		`{"close":false}`, `{}`, ``, `null`, `[]`, `"x"`, `{"event":"connect"}`, `{"event":"x","event":"y"}`,
		`{"Event":"x"}`, `{"event":"x"} {}`, `{"event":"x",}`, `{"event":"\ud800"}`, `{"text":"\u0000"}`,
		`{"event":"x","args":[` + strings.Repeat("[", 101) + strings.Repeat("]", 101) + `]}`,
		`{"event":"x","args":["]\"[{"]}`, ` { "text" : "a" } `, "{\"text\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		valid := json.Valid(body)
		isObject := valid && strings.HasPrefix(strings.TrimLeft(string(body), " \t\r\n"), "{")

		if req, err := decodeEmit(body); err == nil {
			if !isObject {
				t.Fatalf("emit accepted %q", body)
			}
			if req.Event == "" || sioparser.IsReservedEvent(req.Event) || !strings.HasPrefix(req.Namespace, "/") {
				t.Fatalf("emit accepted %q as %+v", body, req)
			}
			for _, r := range append(append([]string{}, req.Rooms...), req.Except...) {
				if r == "" {
					t.Fatalf("emit accepted an empty room from %q", body)
				}
			}
			for _, a := range req.Args {
				if !json.Valid(a) || jsonDepth(a) > apiMaxDepth {
					t.Fatalf("emit accepted arg %q from %q", a, body)
				}
			}
			again := encode(t, map[string]any{
				"namespace": req.Namespace, "rooms": req.Rooms, "except": req.Except, "event": req.Event, "args": req.Args,
			})
			req2, err := decodeEmit(again)
			if err != nil || !reflect.DeepEqual(norm(req), norm(req2)) {
				t.Fatalf("emit %q -> %+v -> %s -> %+v, %v", body, req, again, req2, err)
			}
		}

		if req, err := decodePost(body); err == nil {
			if !isObject {
				t.Fatalf("post accepted %q as %+v", body, req)
			}
			m := map[string]any{"text": req.Text, "userId": req.UserID, "name": req.Name}
			if req.ClientID != nil {
				m["clientId"] = *req.ClientID
			}
			again := encode(t, m)
			req2, err := decodePost(again)
			if err != nil || !reflect.DeepEqual(req, req2) {
				t.Fatalf("post %q -> %+v -> %s -> %+v, %v", body, req, again, req2, err)
			}
		}

		if len(body) > 0 {
			if _, err := decodeDisconnect(body); err == nil && !isObject {
				t.Fatalf("disconnect accepted %q", body)
			}
		}
		if !valid {
			_, e1 := decodeEmit(body)
			_, e2 := decodePost(body)
			if e1 == nil || e2 == nil {
				t.Fatalf("invalid JSON %q accepted", body)
			}
		}
		_ = jsonDepth(body) // on anything: no panic
	})
}

// encode is JSON without HTML escaping (which would rewrite the raw args).
func encode(t *testing.T, v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// norm makes nil and empty lists equal (an encoded nil list is null, absent).
func norm(r emitRequest) emitRequest {
	if len(r.Rooms) == 0 {
		r.Rooms = nil
	}
	if len(r.Except) == 0 {
		r.Except = nil
	}
	if len(r.Args) == 0 {
		r.Args = nil
	}
	for i, a := range r.Args {
		r.Args[i] = json.RawMessage(append([]byte(nil), a...))
	}
	return r
}
