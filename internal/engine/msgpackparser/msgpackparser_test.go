package msgpackparser

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// Written by notepack.io 2.2 (socket.io-msgpack-parser's encoder) from the packets named.
var nodeVectors = []struct {
	name, hex string
	typ       sioparser.PacketType
	nsp, data string
	id        uint64
	hasID     bool
	atts      [][]byte
}{
	{"connect {token}", "83a47479706500a36e7370a12fa46461746181a5746f6b656ea3616263", sioparser.Connect, "/", `{"token":"abc"}`, 0, false, nil},
	{"connect /chat, no auth", "82a47479706500a36e7370a52f63686174", sioparser.Connect, "/chat", ``, 0, false, nil},
	{"event with ack id", "84a47479706502a36e7370a12fa46461746192a76d65737361676588a4726f6f6da27231a474657874ab68c3a96c6c6f20f09f9880a16e03a166cb3ff8000000000000a36e6567f9a3626967cf0000000100000000a174c3a17ac0a269640c",
		sioparser.Event, "/", `["message",{"room":"r1","text":"héllo 😀","n":3,"f":1.5,"neg":-7,"big":4294967296,"t":true,"z":null}]`, 12, true, nil},
	{"binary values", "83a47479706502a36e7370a12fa46461746193a466696c65c40301020381a5696e6e6572c401ff",
		sioparser.BinaryEvent, "/", `["file",{"_placeholder":true,"num":0},{"inner":{"_placeholder":true,"num":1}}]`, 0, false, [][]byte{{1, 2, 3}, {255}}},
	{"ack", "84a47479706503a36e7370a12fa4646174619181a26f6bc3a2696407", sioparser.Ack, "/", `[{"ok":true}]`, 7, true, nil},
	{"Date", "83a47479706502a36e7370a12fa46461746192a164d700000001a2524e68fb", sioparser.Event, "/", `["d","2026-12-07T21:00:00.123Z"]`, 0, false, nil},
	{"Date before 1970", "83a47479706502a36e7370a12fa46461746192a164d700fffffffffffffc18", sioparser.Event, "/", `["d","1969-12-31T23:59:59.000Z"]`, 0, false, nil},
	{"Uint8Array and ArrayBuffer (ext 0)", "83a47479706502a36e7370a12fa46461746192a162c70300010203", sioparser.BinaryEvent, "/", `["b",{"_placeholder":true,"num":0}]`, 0, false, [][]byte{{1, 2, 3}}},
	{"undefined (fixext 1, type 0)", "83a47479706502a36e7370a12fa46461746192a175d40000", sioparser.Event, "/", `["u",null]`, 0, false, nil},
	{"other extension: [type, binary]", "83a47479706502a36e7370a12fa46461746192a178d6050a0b0c0d", sioparser.BinaryEvent, "/", `["x",[5,{"_placeholder":true,"num":0}]]`, 0, false, [][]byte{{10, 11, 12, 13}}},
	{"undefined", "83a47479706502a36e7370a12fa46461746193a175c001", sioparser.Event, "/", `["u",null,1]`, 0, false, nil},
}

func TestDecodeNodeVectors(t *testing.T) {
	for _, v := range nodeVectors {
		t.Run(v.name, func(t *testing.T) {
			msg, _ := hex.DecodeString(v.hex)
			var d Decoder
			p, err := d.Decode(msg)
			if err != nil {
				t.Fatal(err)
			}
			if p.Type != v.typ || p.Nsp != v.nsp || string(p.Data) != v.data || p.ID != v.id || p.HasID != v.hasID {
				t.Fatalf("got type %v nsp %q data %s id %d/%v", p.Type, p.Nsp, p.Data, p.ID, p.HasID)
			}
			if len(p.Attachments) != len(v.atts) {
				t.Fatalf("attachments %x, want %x", p.Attachments, v.atts)
			}
			for i := range v.atts {
				if !bytes.Equal(p.Attachments[i], v.atts[i]) {
					t.Fatalf("attachment %d: %x, want %x", i, p.Attachments[i], v.atts[i])
				}
			}
			// And back: what Append writes decodes to the same packet.
			out, err := Append(nil, p.Type, p.Nsp, p.ID, p.HasID, p.Data, p.Attachments)
			if err != nil {
				t.Fatal(err)
			}
			q, err := d.Decode(out)
			if err != nil {
				t.Fatalf("decode of Append's %x: %v", out, err)
			}
			if q.Type != p.Type || q.Nsp != p.Nsp || string(q.Data) != string(p.Data) || q.ID != p.ID || q.HasID != p.HasID || len(q.Attachments) != len(p.Attachments) {
				t.Fatalf("round trip: %+v, want %+v", q, p)
			}
		})
	}
}

func TestAppendBytes(t *testing.T) {
	// What the server sends most: an event, a CONNECT answer, a disconnect. The bytes are checked
	// against notepack.io's encoding of the same object (same key order: type, data, nsp, id).
	cases := []struct {
		name  string
		typ   sioparser.PacketType
		nsp   string
		id    uint64
		hasID bool
		data  string
		atts  [][]byte
		want  string
	}{
		// node -e 'console.log(require("notepack.io").encode({type:2,data:["m",{"a":1}],nsp:"/"}).toString("hex"))'
		{"event", sioparser.Event, "/", 0, false, `["m", {"a": 1}]`, nil, "83a47479706502a46461746192a16d81a16101a36e7370a12f"},
		// {type:0,data:{sid:"x"},nsp:"/chat"}
		{"connect", sioparser.Connect, "/chat", 0, false, `{"sid":"x"}`, nil, "83a47479706500a46461746181a3736964a178a36e7370a52f63686174"},
		// {type:1,nsp:"/"}
		{"disconnect", sioparser.Disconnect, "", 0, false, ``, nil, "82a47479706501a36e7370a12f"},
		// {type:3,data:[Buffer.from([9]),-1.5,"é\n"],nsp:"/",id:300}
		{"binary ack", sioparser.BinaryAck, "/", 300, true, `[{"_placeholder":true,"num":0},-1.5,"\u00e9\n"]`, [][]byte{{9}},
			"84a47479706503a46461746193c40109cbbff8000000000000a3c3a90aa36e7370a12fa26964cd012c"},
	}
	for _, c := range cases {
		got, err := Append(nil, c.typ, c.nsp, c.id, c.hasID, json.RawMessage(c.data), c.atts)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if hex.EncodeToString(got) != c.want {
			t.Errorf("%s: %x, want %s", c.name, got, c.want)
		}
	}
}

func TestAppendRefusesBadJSON(t *testing.T) {
	for _, data := range []string{`[`, `{"a"}`, `["x",]x`, `[1] 2`, `"abc`, `tru`} {
		if _, err := Append(nil, sioparser.Event, "/", 0, false, json.RawMessage(data), nil); err == nil {
			t.Errorf("%q: no error", data)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	m := func(h string) []byte { b, _ := hex.DecodeString(strings.ReplaceAll(h, " ", "")); return b }
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"not a map", m("93 01 02 03"), ErrNotMsgpack},
		{"text packet", []byte(`2["m"]`), ErrNotMsgpack},
		{"no type", m("81 a3 6e7370 a1 2f"), ErrType},
		{"type 5", m("82 a4 74797065 05 a3 6e7370 a1 2f"), ErrType},
		{"type a string", m("82 a4 74797065 a1 32 a3 6e7370 a1 2f"), ErrType},
		{"no nsp", m("81 a4 74797065 01"), ErrNamespace},
		{"nsp not a string", m("82 a4 74797065 01 a3 6e7370 01"), ErrNamespace},
		{"event without data", m("82 a4 74797065 02 a3 6e7370 a1 2f"), ErrPayload},
		{"event data an object", m("83 a4 74797065 02 a3 6e7370 a1 2f a4 64617461 80"), ErrPayload},
		{"disconnect with data", m("83 a4 74797065 01 a3 6e7370 a1 2f a4 64617461 80"), ErrPayload},
		{"connect data an array", m("83 a4 74797065 00 a3 6e7370 a1 2f a4 64617461 90"), ErrPayload},
		{"negative id", m("84 a4 74797065 03 a3 6e7370 a1 2f a4 64617461 90 a2 6964 ff"), ErrID},
		{"fractional id", m("84 a4 74797065 03 a3 6e7370 a1 2f a4 64617461 90 a2 6964 cb 3ff8000000000000"), ErrID},
		{"map claims 2^32-1 entries", m("df ffffffff a4 74797065"), ErrTruncated},
		{"array claims 2^32-1 elements", m("83 a4 74797065 02 a3 6e7370 a1 2f a4 64617461 dd ffffffff a1 6d"), ErrTruncated},
		{"bin claims more than it has", m("83 a4 74797065 02 a3 6e7370 a1 2f a4 64617461 92 a1 6d c6 7fffffff 00"), ErrTruncated},
		{"str claims more than it has", m("83 a4 74797065 02 a3 6e7370 db 7fffffff 2f"), ErrTruncated},
		{"trailing bytes", append(m("82 a4 74797065 01 a3 6e7370 a1 2f"), 0), ErrNotMsgpack},
		{"never-used byte c1", m("83 a4 74797065 02 a3 6e7370 a1 2f a4 64617461 92 a1 6d c1"), ErrNotMsgpack},
		{"map key an array", m("83 a4 74797065 02 a3 6e7370 a1 2f a4 64617461 92 a1 6d 81 90 01"), ErrKey},
		{"reserved event name", m("83 a4 74797065 02 a3 6e7370 a1 2f a4 64617461 91 a7 636f6e6e656374"), sioparser.ErrInvalidPayload},
		{"binary in a CONNECT", m("83 a4 74797065 00 a3 6e7370 a1 2f a4 64617461 81 a1 62 c4 01 00"), ErrPayload},
	}
	for _, c := range cases {
		var d Decoder
		_, err := d.Decode(c.msg)
		if !errors.Is(err, c.want) || !errors.Is(err, sioparser.ErrInvalidPacket) {
			t.Errorf("%s: %v, want %v (and ErrInvalidPacket)", c.name, err, c.want)
		}
	}
}

func TestDecodeBounds(t *testing.T) {
	head, _ := hex.DecodeString("83a47479706502a36e7370a12fa4646174619291a16d") // {type:2,nsp:"/",data:[["m"], …
	// Nesting one level deeper than allowed.
	deep := append([]byte{}, head...)
	deep = append(deep, bytes.Repeat([]byte{0x91}, sioparser.DefaultMaxDepth)...)
	deep = append(deep, 0xc0)
	if _, err := new(Decoder).Decode(deep); !errors.Is(err, sioparser.ErrTooDeep) {
		t.Errorf("too deep: %v", err)
	}
	// More binary values than MaxBinaries.
	d := Decoder{MaxBinaries: 3}
	msg, _ := hex.DecodeString("83a47479706502a36e7370a12fa46461746195a16d")
	for i := 0; i < 4; i++ {
		msg = append(msg, 0xc4, 1, byte(i))
	}
	if _, err := d.Decode(msg); !errors.Is(err, ErrTooMany) {
		t.Errorf("4 binaries with MaxBinaries 3: %v", err)
	}
	d.MaxBinaries = 4
	if p, err := d.Decode(msg); err != nil || len(p.Attachments) != 4 {
		t.Errorf("4 binaries with MaxBinaries 4: %v, %d attachments", err, len(p.Attachments))
	}
}

// sameJSON compares two JSON texts as values (invalid UTF-8 is \ufffd in one and U+FFFD in the other).
func sameJSON(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func FuzzDecode(f *testing.F) {
	for _, v := range nodeVectors {
		b, _ := hex.DecodeString(v.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var d Decoder
		p, err := d.Decode(msg)
		if err != nil {
			if !errors.Is(err, sioparser.ErrInvalidPacket) {
				t.Fatalf("error %v is not ErrInvalidPacket", err)
			}
			return
		}
		if !json.Valid(p.Data) && p.Data != nil {
			t.Fatalf("data %q is not JSON", p.Data)
		}
		out, err := Append(nil, p.Type, p.Nsp, p.ID, p.HasID, p.Data, p.Attachments)
		if err != nil {
			t.Fatalf("Append of a decoded packet: %v (data %s)", err, p.Data)
		}
		q, err := d.Decode(out)
		if err != nil || !sameJSON(q.Data, p.Data) || q.Type != p.Type || q.Nsp != cmp.Or(p.Nsp, "/") || q.ID != p.ID || len(q.Attachments) != len(p.Attachments) {
			t.Fatalf("round trip: %+v, %v; want %+v", q, err, p)
		}
	})
}
