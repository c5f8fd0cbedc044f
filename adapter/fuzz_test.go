package adapter

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
	"github.com/switchboard/switchboard/internal/sio"
)

// Fuzz targets of the inter-node decoders (decode.go). Their seed corpora,
// testdata/fuzz/<Target>/seed-*, are what Node's redis adapter, emitter and
// streams adapter publish (written by testdata/fuzz_seeds.cjs); the f.Add
// seeds below are what this node's encoders write, and a few that must not
// decode. Run one with, for example:
//
//	go test ./adapter -run '^$' -fuzz '^FuzzRedisBroadcast$' -fuzztime 30s
//
// Each checks that decoding never panics, and that what decodes is exactly
// what was sent: the rooms and except of a broadcast are the ones of the
// payload (read again with a plain decoder), never wider, and its data can
// be sent to clients.

// goSeeds are payloads this node's encoders write.
func goSeeds() (broadcasts, requests, responses [][]byte, entries [][4]string) {
	l := &redisLink{r: &RedisCluster{requestCore: requestCore{uid: "gouid1"}}, nsp: "/"}
	pkts := []sio.Packet{
		{Type: 2, Data: []any{"message", map[string]any{"text": "hi", "n": int64(3)}}},
		{Type: 2, Data: []any{"bin", []byte{1, 2, 3}, []any{1.5, nil, true}}},
	}
	optss := []sio.BroadcastOpts{
		{},
		{Rooms: []string{"room1"}},
		{Rooms: []string{"a", "b"}, Except: []string{"c"}, Volatile: true, Compress: true},
	}
	for _, p := range pkts {
		for _, o := range optss {
			if b, err := l.encode(p, o); err == nil {
				broadcasts = append(broadcasts, b)
			}
			if s, err := encodeStreamData(p, "/", o, ""); err == nil {
				entries = append(entries, [4]string{"gouid1", "/", "3", s})
			}
			if s, err := encodeStreamData(p, "/", o, "req1"); err == nil {
				entries = append(entries, [4]string{"gouid1", "/", "3", s})
			}
		}
	}
	opts := requestOpts(sio.BroadcastOpts{Rooms: []string{"r1"}, Except: []string{"<x&y>"}})
	for _, v := range []any{
		fetchRequest{UID: "gouid1", RequestID: "id1", Type: reqRemoteFetch, Opts: opts},
		roomsRequest{UID: "gouid1", Type: reqRemoteJoin, Opts: opts, Rooms: []string{"j"}},
		roomsRequest{UID: "gouid1", Type: reqRemoteLeave, Opts: opts, Rooms: []string{"j"}},
		disconnectRequest{UID: "gouid1", Type: reqRemoteDisconnect, Opts: opts, Close: true},
		sseRequest{UID: "gouid1", Type: reqServerSideEmit, Data: []any{"ev", "a", map[string]any{"n": 1}}},
		sseRequest{UID: "gouid1", RequestID: "id2", Type: reqServerSideEmit, Data: []any{"q", true}},
		// redis-adapter 7's one-socket requests.
		map[string]any{"uid": "n", "requestId": "id3", "type": reqRemoteJoin, "sid": "s1", "room": "r"},
		map[string]any{"uid": "n", "requestId": "id4", "type": reqRemoteDisconnect, "sid": "s1", "close": true},
	} {
		if b, err := marshalJSON(v); err == nil {
			requests = append(requests, b)
		}
	}
	if b, err := msgpack.Marshal(broadcastAckRequest{UID: "gouid1", RequestID: "id5", Type: reqBroadcast,
		Packet: broadcastPacket{Type: 2, Data: []any{"ack-me", 1}, Nsp: "/"},
		Opts:   wireOpts{Rooms: []string{}, Except: []string{}, Flags: map[string]any{"timeout": 1000}}}); err == nil {
		requests = append(requests, b)
	}
	for _, v := range []any{
		map[string]any{"requestId": "id1", "sockets": []sio.SocketInfo{{ID: "s1", Handshake: map[string]any{"address": "::1"}, Rooms: []string{"s1", "r"}, Data: map[string]any{"k": "v"}}}},
		map[string]any{"requestId": "id1", "sockets": []string{}},
		map[string]any{"requestId": "id1", "rooms": []string{"a"}},
		map[string]any{"requestId": "id1"},
		sseResponse{Type: reqServerSideEmit, RequestID: "id2", Data: map[string]any{"pong": 1}},
		map[string]any{"type": reqBroadcastClientCount, "requestId": "id5", "clientCount": 3},
	} {
		if b, err := marshalJSON(v); err == nil {
			responses = append(responses, b)
		}
	}
	if b, err := msgpack.Marshal(map[string]any{"type": reqBroadcastAck, "requestId": "id5", "packet": []byte{1}}); err == nil {
		responses = append(responses, b)
	}
	for _, m := range []struct {
		typ  int
		data any
	}{
		{msgSocketsJoin, roomsData{Opts: opts, Rooms: []string{"j"}}},
		{msgDisconnectSockets, disconnectData{Opts: opts, Close: true}},
		{msgFetchSockets, fetchData{Opts: opts, RequestID: "id1"}},
		{msgFetchSocketsResponse, fetchResponseData{RequestID: "id1", Sockets: []sio.SocketInfo{{ID: "s1", Rooms: []string{"s1"}, Data: []byte{1}}}}},
		{msgServerSideEmit, sseData{Packet: []any{"ev", 1}}},
		{msgServerSideEmitResponse, packetData{RequestID: "id2", Packet: []byte{7}}},
		{msgBroadcastClientCount, clientCountData{RequestID: "id5", ClientCount: 2}},
		{msgBroadcastAck, packetData{RequestID: "id5", Packet: "ok"}},
	} {
		if s, err := encodeMessage(m.typ, m.data); err == nil {
			entries = append(entries, [4]string{"gouid1", "/", strconv.Itoa(m.typ), s})
		}
	}
	entries = append(entries, [4]string{"gouid1", "/", "1", ""}, [4]string{"gouid1", "/", "2", ""}, [4]string{"gouid1", "/", "13", ""})
	return
}

// Payloads that must not decode: the widening of issue 11 among them.
var (
	badBroadcasts = []any{
		[]any{"n1", map[string]any{"type": 2, "data": []any{"m"}, "nsp": "/"}, map[string]any{"rooms": 12345, "except": []any{}}},
		[]any{"n1", map[string]any{"type": 2, "data": []any{"m"}, "nsp": "/"}, map[string]any{"rooms": []any{}, "except": "a"}},
		[]any{"n1", map[string]any{"type": 2, "data": []any{"m"}, "nsp": "/"}, map[string]any{"rooms": []any{"r", 1}}},
		[]any{"n1", map[string]any{"type": 2, "data": []any{"m"}, "nsp": "/"}, map[string]any{"flags": map[string]any{"volatile": "yes"}}},
		[]any{"n1", map[string]any{"type": "2", "data": []any{"m"}, "nsp": "/"}, map[string]any{}},
		[]any{"n1", map[string]any{"type": 2, "data": "m", "nsp": "/"}, map[string]any{}},
		[]any{"n1", map[string]any{"type": 2, "data": []any{"m"}, "nsp": "/"}, nil},
	}
)

func msgpackOf(t testing.TB, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plainRooms reads field of opts as a plain decoder does: the reference a
// decoded broadcast must equal (nil and empty are the same: everybody). A
// field that is there but not a list of strings must not have decoded.
func plainRooms(t *testing.T, opts any, field string) []string {
	t.Helper()
	m, _ := opts.(map[string]any)
	out := []string{}
	if m[field] == nil {
		return out
	}
	a, ok := m[field].([]any)
	if !ok {
		t.Fatalf("%s %#v decoded", field, m[field])
	}
	for _, e := range a {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("%s %#v decoded", field, m[field])
		}
		out = append(out, s)
	}
	return out
}

func sameRooms(t *testing.T, what string, got []string, want []string) {
	t.Helper()
	if got == nil {
		got = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %q, the payload says %q", what, got, want)
	}
}

// sameFlags checks the flags that change a delivery against the payload's.
func sameFlags(t *testing.T, o wireOpts, ref any) {
	t.Helper()
	m, _ := ref.(map[string]any)
	flags, _ := m["flags"].(map[string]any)
	got := o.toOpts()
	if got.Volatile != (flags["volatile"] == true) || got.Compress != (flags["compress"] == true) {
		t.Fatalf("flags %+v, the payload says %v", got, m["flags"])
	}
}

// deliverable checks that an event's data can be encoded for clients.
func deliverable(t *testing.T, data []any) {
	t.Helper()
	if len(data) == 0 {
		t.Fatal("empty event")
	}
	if _, _, err := sioparser.MarshalData(data); err != nil {
		t.Fatalf("decoded data not encodable for clients: %v", err)
	}
}

func FuzzRedisBroadcast(f *testing.F) {
	b, _, _, _ := goSeeds()
	for _, p := range b {
		f.Add(p)
	}
	for _, v := range badBroadcasts {
		f.Add(msgpackOf(f, v))
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}) // an array of 4G elements, in 5 bytes
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := decodeRedisBroadcast(payload)
		if err != nil {
			return
		}
		var ref []any
		if err := msgpack.Unmarshal(payload, &ref); err != nil || len(ref) != 3 {
			t.Fatalf("decoded what a plain decoder does not: %v", err)
		}
		sameRooms(t, "rooms", b.Opts.Rooms, plainRooms(t, ref[2], "rooms"))
		sameRooms(t, "except", b.Opts.Except, plainRooms(t, ref[2], "except"))
		if uid, _ := ref[0].(string); uid != b.UID {
			t.Fatalf("uid %q, the payload says %q", b.UID, uid)
		}
		if pkt, _ := ref[1].(map[string]any); pkt["nsp"] != nil && pkt["nsp"] != b.Nsp {
			t.Fatalf("nsp %q, the payload says %v", b.Nsp, pkt["nsp"])
		}
		if b.Nsp == "" {
			t.Fatal("no namespace")
		}
		sameFlags(t, b.Opts, ref[2])
		deliverable(t, b.Data)
		opts := b.Opts.toOpts()
		sameRooms(t, "toOpts().Rooms", opts.Rooms, plainRooms(t, ref[2], "rooms"))
		sameRooms(t, "toOpts().Except", opts.Except, plainRooms(t, ref[2], "except"))
	})
}

func FuzzRedisRequest(f *testing.F) {
	_, r, _, _ := goSeeds()
	for _, p := range r {
		f.Add(p)
	}
	f.Add([]byte(`{"uid":"n","requestId":"r","type":5,"opts":{"rooms":12345,"except":[]}}`))
	f.Add([]byte(`{"uid":"n","type":2,"opts":{"rooms":[],"except":[1]},"rooms":["x"]}`))
	f.Add([]byte(`{"uid":"n","requestId":"r","type":42}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := decodeRequest(payload, "/")
		if err != nil {
			return
		}
		var ref map[string]any
		if payload[0] == '{' {
			err = json.Unmarshal(payload, &ref)
		} else {
			err = msgpack.Unmarshal(payload, &ref)
		}
		if err != nil {
			t.Fatalf("decoded what a plain decoder does not: %v", err)
		}
		if req.Type < reqSockets || req.Type > reqBroadcast {
			t.Fatalf("type %d accepted", req.Type)
		}
		if (ref["opts"] == nil) != (req.Opts == nil) {
			t.Fatalf("opts %v, the payload says %v", req.Opts, ref["opts"])
		}
		if req.Opts != nil {
			sameRooms(t, "opts.rooms", req.Opts.Rooms, plainRooms(t, ref["opts"], "rooms"))
			sameRooms(t, "opts.except", req.Opts.Except, plainRooms(t, ref["opts"], "except"))
		}
		switch req.Type {
		case reqRemoteFetch, reqBroadcast:
			if req.Opts == nil || req.RequestID == "" {
				t.Fatalf("type %d without opts or requestId", req.Type)
			}
		case reqRemoteJoin, reqRemoteLeave, reqRemoteDisconnect:
			if req.Opts == nil && req.SID == "" {
				t.Fatalf("type %d without opts or sid", req.Type)
			}
		case reqServerSideEmit:
			if _, ok := req.Data[0].(string); !ok {
				t.Fatal("serverSideEmit without an event name")
			}
		}
		if req.Type == reqBroadcast {
			data, _ := req.Packet["data"].([]any)
			deliverable(t, data)
		}
	})
}

func FuzzRedisResponse(f *testing.F) {
	_, _, r, _ := goSeeds()
	for _, p := range r {
		f.Add(p)
	}
	f.Add([]byte(`{"type":8,"requestId":"r","clientCount":"3"}`))
	f.Add([]byte(`{"requestId":"r","sockets":[{"id":1}]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		res, err := decodeResponse(payload)
		if err != nil {
			return
		}
		if res.RequestID == "" {
			t.Fatal("no requestId")
		}
		if res.ClientCount < 0 {
			t.Fatalf("clientCount %d", res.ClientCount)
		}
		for _, s := range res.Sockets {
			if s.ID == "" {
				t.Fatal("a socket without id")
			}
		}
		if _, err := json.Marshal(res.Sockets); err != nil {
			t.Fatalf("sockets not encodable: %v", err)
		}
	})
}

func FuzzStreamEntry(f *testing.F) {
	_, _, _, e := goSeeds()
	for _, s := range e {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Add("n1", "/", "3", `{"packet":{"type":2,"data":["m"]},"opts":{"rooms":12345,"except":[]}}`)
	f.Add("n1", "/", "3", `{"packet":{"type":2,"data":["m"],"nsp":"/other"},"opts":{"rooms":[],"except":[]}}`)
	f.Add("n1", "/", "99", "")
	f.Fuzz(func(t *testing.T, uid, nsp, typ, data string) {
		values := map[string]any{"uid": uid, "nsp": nsp, "type": typ}
		if data != "" {
			values["data"] = data
		}
		en, err := decodeEntry(values)
		if err != nil {
			return
		}
		if en.Type < msgInitialHeartbeat || en.Type > msgAdapterClose {
			t.Fatalf("type %d accepted", en.Type)
		}
		d, err := decodeStreamMessage(en.Type, en.Data, nsp)
		if err != nil {
			return
		}
		if en.Type == msgInitialHeartbeat || en.Type == msgHeartbeat || en.Type == msgAdapterClose {
			return
		}
		var ref map[string]any
		if strings.HasPrefix(data, "{") {
			err = json.Unmarshal([]byte(data), &ref)
		} else {
			var b []byte
			if b, err = base64.StdEncoding.DecodeString(data); err == nil {
				err = msgpack.Unmarshal(b, &ref)
			}
		}
		if err != nil {
			t.Fatalf("decoded what a plain decoder does not: %v", err)
		}
		switch en.Type {
		case msgBroadcast, msgSocketsJoin, msgSocketsLeave, msgDisconnectSockets, msgFetchSockets:
			if ref["opts"] == nil {
				t.Fatal("no opts accepted")
			}
			sameRooms(t, "opts.rooms", d.Opts.Rooms, plainRooms(t, ref["opts"], "rooms"))
			sameRooms(t, "opts.except", d.Opts.Except, plainRooms(t, ref["opts"], "except"))
			sameFlags(t, d.Opts, ref["opts"])
		}
		switch en.Type {
		case msgBroadcast:
			deliverable(t, d.Packet.Data)
			if d.Packet.Nsp != "" && d.Packet.Nsp != nsp {
				t.Fatalf("packet of %q in an entry of %q", d.Packet.Nsp, nsp)
			}
		case msgFetchSockets, msgFetchSocketsResponse, msgServerSideEmitResponse, msgBroadcastClientCount, msgBroadcastAck:
			if d.RequestID == "" {
				t.Fatal("no requestId")
			}
		case msgServerSideEmit:
			if len(d.PacketArgs) == 0 {
				t.Fatal("no event")
			}
		}
	})
}
