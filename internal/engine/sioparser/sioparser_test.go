package sioparser

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// ---- reference vectors (vectors_test.go) ----

type encodeVector struct {
	typ         PacketType
	nsp         string
	id          uint64
	hasID       bool
	data        string // canonical JSON of the value, binaries as {"$bin":"hex"}
	text        string // socket.io-parser's encoding
	attachments []string
}

// msg is one message given to the decoder: text, or a binary attachment.
type msg struct {
	binary bool
	data   string
}

func txt(s string) msg { return msg{data: s} }
func bin(s string) msg { return msg{binary: true, data: s} }

type decodeVector struct {
	in      []msg
	err     string // socket.io-parser's exception message
	pending bool   // socket.io-parser still waits for attachments
	typ     PacketType
	nsp     string
	id      string // as JavaScript prints the number; "" for none
	data    string // canonical JSON, binaries as {"$bin":"hex"}; "" for none
}

// refErrors maps socket.io-parser's exception messages to this package's errors.
func refError(msg string) error {
	switch {
	case msg == "invalid payload":
		return ErrInvalidPayload
	case strings.HasPrefix(msg, "unknown packet type"):
		return ErrUnknownType
	case msg == "Illegal attachments":
		return ErrIllegalAttachments
	case msg == "too many attachments":
		return ErrTooManyAttachments
	case msg == "illegal attachments": // from reconstructPacket
		return ErrIllegalPlaceholder
	case msg == "got binary data when not reconstructing a packet":
		return ErrUnexpectedBinary
	case msg == "got plaintext data when reconstructing a packet":
		return ErrUnexpectedText
	}
	panic("unmapped error " + msg)
}

// refDeviations lists the inputs (first message) on which this decoder deliberately rejects what
// socket.io-parser accepts, mostly because JavaScript's Number() reads white space as 0 and "1e0" or
// "0x1" as numbers, and because decodeString lets packets through without the data their type needs
// (isPacketValid, which socket.io-parser exports but does not apply when decoding, refuses them).
var refDeviations = map[string]error{
	"":                                       ErrEmptyPacket,        // Number("") is 0: a CONNECT
	" ":                                      ErrUnknownType,        // Number(" ") is 0: a CONNECT
	" {}":                                    ErrUnknownType,        // idem, with data
	"0 {}":                                   ErrInvalidPayload,     // " " read as ack id 0
	"2 [\"a\"]":                              ErrInvalidPayload,     // idem
	"2/a, [\"a\"]":                           ErrInvalidPayload,     // idem
	"2\t[\"a\"]":                             ErrInvalidPayload,     // idem
	"2\n[\"a\"]":                             ErrInvalidPayload,     // idem
	"2/admin,99999999999999999999999[\"a\"]": ErrInvalidID,          // read as 1e+23
	"2":                                      ErrInvalidPayload,     // EVENT without data
	"2/admin":                                ErrInvalidPayload,     // idem
	"2/admin,":                               ErrInvalidPayload,     // idem
	"21":                                     ErrInvalidPayload,     // idem, with an ack id
	"3":                                      ErrInvalidPayload,     // ACK without data
	"31":                                     ErrInvalidPayload,     // idem
	"4":                                      ErrInvalidPayload,     // CONNECT_ERROR without data
	"41":                                     ErrInvalidPayload,     // idem
	"51-":                                    ErrInvalidPayload,     // BINARY_EVENT without data
	"61-":                                    ErrInvalidPayload,     // BINARY_ACK without data
	"5 1-[\"a\"]":                            ErrIllegalAttachments, // Number(" 1") is 1
	"51e0-[\"a\"]":                           ErrIllegalAttachments, // Number("1e0") is 1
	"50x1-[\"a\"]":                           ErrIllegalAttachments, // Number("0x1") is 1
	`51-["a",{"_placeholder":true,"num":0.5}]`: ErrIllegalPlaceholder, // indexes nothing: undefined
}

// run feeds the messages of a vector to a fresh decoder. It returns the complete packet, whether the
// decoder still waits, and the first error.
func run(d *Decoder, in []msg) (p Packet, pending bool, err error) {
	for _, m := range in {
		var done bool
		if m.binary {
			p, done, err = d.AddBinary([]byte(m.data))
		} else {
			p, done, err = d.AddText([]byte(m.data))
		}
		if err != nil {
			return Packet{}, false, err
		}
		pending = !done
	}
	return p, pending, nil
}

// canonical re-encodes a value tree (json.Number or float64 numbers, []byte for binaries) as JSON
// with sorted keys, binaries as {"$bin":"hex"}, numbers as float64: the form the vectors use.
func canonical(t *testing.T, v any) string {
	t.Helper()
	var conv func(any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case []byte:
			return map[string]any{"$bin": hex.EncodeToString(x)}
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				t.Fatalf("number %q: %v", x, err)
			}
			return f + 0 // JSON.stringify writes -0 as 0
		case float64:
			return x + 0
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = conv(e)
			}
			return out
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[k] = conv(e)
			}
			return out
		}
		return v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(conv(v)); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func canonicalJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("vector JSON %q: %v", s, err)
	}
	return canonical(t, v)
}

// fromCanonical turns vector JSON back into a value tree with []byte binaries.
func fromCanonical(t *testing.T, s string) any {
	t.Helper()
	if s == "" {
		return nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	var conv func(any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case []any:
			for i, e := range x {
				x[i] = conv(e)
			}
		case map[string]any:
			if h, ok := x["$bin"].(string); ok && len(x) == 1 {
				b, err := hex.DecodeString(h)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			for k, e := range x {
				x[k] = conv(e)
			}
		}
		return v
	}
	return conv(v)
}

func TestReferenceDecode(t *testing.T) {
	for _, v := range refDecode {
		name := fmt.Sprintf("%q", v.in[0].data)
		var d Decoder
		p, pending, err := run(&d, v.in)
		if want, ok := refDeviations[v.in[0].data]; ok && !v.in[0].binary {
			if !errors.Is(err, want) || !errors.Is(err, ErrInvalidPacket) {
				t.Errorf("%s: got %+v, %v; want %v (deliberate deviation)", name, p, err, want)
			}
			continue
		}
		switch {
		case v.err != "":
			want := refError(v.err)
			if !errors.Is(err, want) || !errors.Is(err, ErrInvalidPacket) {
				t.Errorf("%s: got %+v, %v; want %v (%s)", name, p, err, want, v.err)
			}
			if d.Pending() != 0 {
				t.Errorf("%s: decoder not reset after an error", name)
			}
		case v.pending:
			if err != nil || !pending || d.Pending() == 0 {
				t.Errorf("%s: got %+v, pending %v, %v; want pending", name, p, pending, err)
			}
		default:
			if err != nil || pending {
				t.Errorf("%s: pending %v, %v; want a packet", name, pending, err)
				continue
			}
			isBinary := v.in[0].data[0] == '5' || v.in[0].data[0] == '6'
			wantType := v.typ
			if isBinary {
				wantType += BinaryEvent - Event
			}
			if p.Type != wantType || p.Nsp != v.nsp {
				t.Errorf("%s: type %v nsp %q, want %v %q", name, p.Type, p.Nsp, wantType, v.nsp)
			}
			if p.HasID != (v.id != "") {
				t.Errorf("%s: HasID %v, want id %q", name, p.HasID, v.id)
			} else if p.HasID {
				want, _ := strconv.ParseFloat(v.id, 64)
				if float64(p.ID) != want {
					t.Errorf("%s: id %d, want %s", name, p.ID, v.id)
				}
			}
			if (len(p.Data) > 0) != (v.data != "") {
				t.Errorf("%s: data %q, want %q", name, p.Data, v.data)
				continue
			}
			if v.data == "" {
				continue
			}
			var tree any
			if isBinary {
				tree, err = Reconstruct(p.Data, p.Attachments, 0)
				if err != nil {
					t.Errorf("%s: Reconstruct: %v", name, err)
					continue
				}
			} else if err := json.Unmarshal(p.Data, &tree); err != nil {
				t.Errorf("%s: data %q: %v", name, p.Data, err)
				continue
			}
			if got, want := canonical(t, tree), canonicalJSON(t, v.data); got != want {
				t.Errorf("%s: data %s, want %s", name, got, want)
			}
		}
	}
}

func TestReferenceEncode(t *testing.T) {
	for _, v := range refEncode {
		tree := fromCanonical(t, v.data)
		data, atts, err := MarshalData(tree)
		if err != nil {
			t.Fatalf("MarshalData(%s): %v", v.data, err)
		}
		if v.data == "" {
			data = nil
		}
		typ := v.typ
		if len(atts) > 0 {
			typ += BinaryEvent - Event
		}
		p := Packet{Type: typ, Nsp: v.nsp, ID: v.id, HasID: v.hasID, Data: data, Attachments: atts}
		if got := Encode(p); string(got) != v.text {
			t.Errorf("Encode(%+v) = %q, want %q", p, got, v.text)
		}
		if n := EncodedLen(p); n != len(v.text) {
			t.Errorf("EncodedLen(%q) = %d", v.text, n)
		}
		if len(atts) != len(v.attachments) {
			t.Errorf("%q: %d attachments, want %d", v.text, len(atts), len(v.attachments))
		} else {
			for i := range atts {
				if string(atts[i]) != v.attachments[i] {
					t.Errorf("%q: attachment %d = %x, want %x", v.text, i, atts[i], v.attachments[i])
				}
			}
		}
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%q): %v", v.text, err)
		}
		// The header written piecewise is the same.
		h := AppendHeader(nil, typ, len(atts), v.nsp, v.id, v.hasID)
		if string(h)+string(data) != v.text {
			t.Errorf("AppendHeader: %q + %q, want %q", h, data, v.text)
		}
		// And it decodes back to the same packet.
		var d Decoder
		msgs := []msg{txt(v.text)}
		for _, a := range v.attachments {
			msgs = append(msgs, bin(a))
		}
		back, pending, err := run(&d, msgs)
		if err != nil || pending {
			t.Errorf("decoding %q: pending %v, %v", v.text, pending, err)
			continue
		}
		if back.Type != p.Type || back.ID != p.ID || back.HasID != p.HasID || !bytes.Equal(back.Data, p.Data) ||
			(back.Nsp != p.Nsp && !(p.Nsp == "" && back.Nsp == "/")) || len(back.Attachments) != len(p.Attachments) {
			t.Errorf("decoding %q: %+v, want %+v", v.text, back, p)
		}
	}
}

// TestMarshalDataNumbers checks that numbers marshal as JSON.stringify writes them.
func TestMarshalDataNumbers(t *testing.T) {
	for _, v := range refEncode {
		if len(v.attachments) > 0 || v.data == "" {
			continue
		}
		var tree any // float64 numbers, like JavaScript's
		if err := json.Unmarshal([]byte(v.data), &tree); err != nil {
			t.Fatal(err)
		}
		data, _, err := MarshalData(tree)
		if err != nil || !strings.HasSuffix(v.text, string(data)) {
			t.Errorf("MarshalData(%s) = %s, %v; want the suffix of %q", v.data, data, err, v.text)
		}
	}
}

func TestAppendStringMatchesStringify(t *testing.T) {
	for _, v := range refStringify {
		if got := AppendString(nil, v.in); string(got) != v.out {
			t.Errorf("AppendString(%q) = %q, want %q", v.in, got, v.out)
		}
	}
	// Invalid UTF-8 becomes \ufffd, byte by byte as encoding/json does, and the result is always
	// valid JSON.
	for _, s := range []string{"a\xffb", "\xc3", "\xed\xa0\x80", "ok\xe2\x82"} {
		got := AppendString(nil, s)
		std, _ := json.Marshal(s)
		var back, want string
		json.Unmarshal(std, &want)
		if err := json.Unmarshal(got, &back); err != nil || back != want {
			t.Errorf("AppendString(%q) = %q -> %q, %v", s, got, back, err)
		}
		if !bytes.Contains(got, []byte(`\ufffd`)) {
			t.Errorf("AppendString(%q) = %q", s, got)
		}
	}
}

// ---- decoder rules beyond the vectors ----

func nested(open, close string, n int, inner string) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

func TestDecodeRules(t *testing.T) {
	deep := func(n int) string { return `2["a",` + nested("[", "]", n-1, "1") + `]` }
	deepObj := func(n int) string { return `0` + nested(`{"a":`, "}", n, "1") }
	for _, tc := range []struct {
		in   string
		want error // nil: valid
	}{
		{"2[\"a\"]", nil},
		{deep(DefaultMaxDepth), nil},
		{deep(DefaultMaxDepth + 1), ErrTooDeep},
		{deepObj(DefaultMaxDepth), nil},
		{deepObj(DefaultMaxDepth + 1), ErrTooDeep},
		{"2" + strings.Repeat("[", 100000), ErrTooDeep},
		{`2["a",` + strings.Repeat("[", 50), ErrInvalidPayload},
		{"2/admin,18446744073709551615[\"x\"]", nil},
		{"218446744073709551616[\"x\"]", ErrInvalidID},
		{"299999999999999999999999999999[\"x\"]", ErrInvalidID},
		{"2007[\"x\"]", nil},
		{"2[\"a\"]\r\n\t ", nil},
		{"2[\"a\"] x", ErrInvalidPayload},
		{"2[\"a\"]{}", ErrInvalidPayload},
		{"2[\"a\"],", ErrInvalidPayload},
		{"2[\"a\" ,]", ErrInvalidPayload},
		{"2[,\"a\"]", ErrInvalidPayload},
		{"2[\"a\",\"\\ud800\\udc00\"]", nil},
		{"2[\"\\u0063onnect\"]", ErrInvalidPayload}, // "connect" escaped
		{"2[\"connect\\u0000\"]", nil},
		{"2[-1]", nil},
		{"2[1e5,2]", nil},
		{"2[\"a\",-]", ErrInvalidPayload},
		{"2[\"a\",1.e5]", ErrInvalidPayload},
		{"2[\"a\",1e+]", ErrInvalidPayload},
		{"2[\"a\",00]", ErrInvalidPayload},
		{"2[\"a\",-01]", ErrInvalidPayload},
		{"2[\"a\",\"\\uZZZZ\"]", ErrInvalidPayload},
		{"2[\"a\",\"\\", ErrInvalidPayload},
		{"2[\"a\",\"\\u00", ErrInvalidPayload},
		{"2[\"a\",nul]", ErrInvalidPayload},
		{"2[\"a\",True]", ErrInvalidPayload},
		{"2[\"a\"\x00]", ErrInvalidPayload},
		{"2[\"a\x7f\xff\"]", nil}, // bytes >= 0x7f are not checked (the transport decodes UTF-8)
		{"2[\"a\",{\"k\" : 1 , \"l\":[ ]}]", nil},
		{"2[\"a\",{\"k\" 1}]", ErrInvalidPayload},
		{"2[\"a\",{\"k\":}]", ErrInvalidPayload},
		{"2[\"a\",{,}]", ErrInvalidPayload},
		{"2[\"a\",{\"k\":1", ErrInvalidPayload},
		{"2[\"a\",{\"k\"", ErrInvalidPayload},
		{"2[\"a\",{", ErrInvalidPayload},
		{"2[", ErrInvalidPayload},
		{"2[\"a\",", ErrInvalidPayload},
		{"2/ns", ErrInvalidPayload},
		{"2/ns,12", ErrInvalidPayload},
		{"0/ns,12", nil},
		{"1/ns,12", nil},
		{"0/ns,12{}", nil},
		{"0/,", nil},
		{"4/x,\"\"", nil},
		{"5" + strings.Repeat("9", 40) + "-[\"a\"]", ErrTooManyAttachments},
		{"5010-[\"a\"]", nil}, // leading zeros, as Number("010") reads them
		{"5011-[\"a\"]", ErrTooManyAttachments},
		{"50-", ErrIllegalAttachments},
		{"5-1-[\"a\"]", ErrIllegalAttachments},
		{"51-51-[\"a\"]", ErrInvalidPayload},
		{"6\u00a0-[]", ErrIllegalAttachments},
	} {
		var d Decoder
		_, _, err := d.AddText([]byte(tc.in))
		if !errors.Is(err, tc.want) || (tc.want != nil && !errors.Is(err, ErrInvalidPacket)) {
			in := tc.in
			if len(in) > 60 {
				in = in[:60] + "…"
			}
			t.Errorf("AddText(%q): %v, want %v", in, err, tc.want)
		}
	}
}

func TestDecoderLimits(t *testing.T) {
	d := Decoder{MaxAttachments: 2, MaxDepth: 3}
	if _, _, err := d.AddText([]byte(`52-["a"]`)); err != nil {
		t.Fatal(err)
	}
	d.Reset()
	if _, _, err := d.AddText([]byte(`53-["a"]`)); !errors.Is(err, ErrTooManyAttachments) {
		t.Errorf("3 attachments over a bound of 2: %v", err)
	}
	if _, _, err := d.AddText([]byte(`2["a",[[1]]]`)); err != nil {
		t.Errorf("depth 3: %v", err)
	}
	if _, _, err := d.AddText([]byte(`2["a",[[[1]]]]`)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("depth 4 over a bound of 3: %v", err)
	}
	none := Decoder{MaxAttachments: -1}
	if _, _, err := none.AddText([]byte(`51-["a"]`)); !errors.Is(err, ErrTooManyAttachments) {
		t.Errorf("binary refused: %v", err)
	}
	huge := Decoder{MaxDepth: 1 << 30}
	if _, _, err := huge.AddText([]byte("2" + strings.Repeat("[", MaxDepthLimit+1))); !errors.Is(err, ErrTooDeep) {
		t.Errorf("MaxDepth is capped at MaxDepthLimit: %v", err)
	}
}

func TestDecoderBinaryFlow(t *testing.T) {
	var d Decoder
	text := []byte(`62-/admin,9[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]`)
	p, done, err := d.AddText(text)
	if err != nil || done || d.Pending() != 2 {
		t.Fatalf("AddText: %+v %v %v pending %d", p, done, err, d.Pending())
	}
	copy(text, strings.Repeat("x", len(text))) // the caller reuses its buffer: the decoder copied
	a0, a1 := []byte{1}, []byte{2, 2}
	if _, done, err := d.AddBinary(a0); err != nil || done || d.Pending() != 1 {
		t.Fatalf("first attachment: %v %v", done, err)
	}
	p, done, err = d.AddBinary(a1)
	if err != nil || !done || d.Pending() != 0 {
		t.Fatalf("second attachment: %v %v", done, err)
	}
	if p.Type != BinaryAck || p.Nsp != "/admin" || !p.HasID || p.ID != 9 || len(p.Attachments) != 2 ||
		&p.Attachments[0][0] != &a0[0] || string(p.Data) != `[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]` {
		t.Fatalf("packet %+v", p)
	}
	v, err := Reconstruct(p.Data, p.Attachments, 0)
	if err != nil || canonical(t, v) != `[{"$bin":"0202"},{"$bin":"01"}]` {
		t.Fatalf("Reconstruct: %v %v", v, err)
	}
	// The decoder is ready for the next packet.
	if p, done, err := d.AddText([]byte(`2["next"]`)); err != nil || !done || p.Type != Event {
		t.Fatalf("after a binary packet: %+v %v %v", p, done, err)
	}
	// Text while reconstructing: error, and the decoder is reset.
	d.AddText([]byte(`51-["a"]`))
	if _, _, err := d.AddText([]byte(`2["b"]`)); !errors.Is(err, ErrUnexpectedText) {
		t.Fatalf("text while reconstructing: %v", err)
	}
	if _, _, err := d.AddBinary([]byte{1}); !errors.Is(err, ErrUnexpectedBinary) {
		t.Fatalf("binary after reset: %v", err)
	}
	d.AddText([]byte(`51-["a"]`))
	d.Reset()
	if d.Pending() != 0 {
		t.Fatal("Reset")
	}
}

func TestDecodeAliasingAndInterning(t *testing.T) {
	var d Decoder
	text := []byte(`2/chat,5["m",1]`)
	p, _, err := d.AddText(text)
	if err != nil || &p.Data[0] != &text[8] {
		t.Fatalf("Data does not alias the input: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := d.AddText(text); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("decoding an event in a known namespace allocates %v times", n)
	}
	p2, _, _ := d.AddText([]byte(`2/other,["m"]`))
	p3, _, _ := d.AddText([]byte(`2/other,["m"]`))
	if p2.Nsp != "/other" || p3.Nsp != "/other" || p.Nsp != "/chat" {
		t.Errorf("namespaces %q %q %q", p.Nsp, p2.Nsp, p3.Nsp)
	}
}

func TestValidate(t *testing.T) {
	ok := []Packet{
		{Type: Connect},
		{Type: Connect, Nsp: "/admin", Data: json.RawMessage(`{"sid":"x"}`)},
		{Type: Disconnect, Nsp: "/"},
		{Type: Event, Data: json.RawMessage(`["a"]`), ID: 3, HasID: true},
		{Type: Ack, Data: json.RawMessage(`[]`), ID: 3, HasID: true},
		{Type: ConnectError, Data: json.RawMessage(`"no"`)},
		{Type: BinaryEvent, Data: json.RawMessage(`["a",{"_placeholder":true,"num":0}]`), Attachments: [][]byte{{1}}},
		{Type: BinaryAck, Data: json.RawMessage(`[]`), Attachments: [][]byte{{1}}},
	}
	for _, p := range ok {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", p, err)
		}
	}
	for _, tc := range []struct {
		p    Packet
		want error
	}{
		{Packet{Type: 7}, ErrUnknownType},
		{Packet{Type: Connect, Nsp: "admin"}, ErrInvalidNamespace},
		{Packet{Type: Connect, Nsp: "/a,b"}, ErrInvalidNamespace},
		{Packet{Type: Event, Data: json.RawMessage(`["a"]`), Attachments: [][]byte{{1}}}, ErrIllegalAttachments},
		{Packet{Type: BinaryEvent, Data: json.RawMessage(`["a"]`)}, ErrIllegalAttachments},
		{Packet{Type: BinaryEvent, Data: json.RawMessage(`["a",{"_placeholder":true,"num":1}]`), Attachments: [][]byte{{1}}}, ErrIllegalPlaceholder},
		{Packet{Type: Event, Data: json.RawMessage(`["disconnect"]`)}, ErrInvalidPayload},
		{Packet{Type: Event}, ErrInvalidPayload},
		{Packet{Type: Event, Data: json.RawMessage(` ["a"]`)}, ErrInvalidPayload},
		{Packet{Type: Disconnect, Data: json.RawMessage(`{}`)}, ErrInvalidPayload},
		{Packet{Type: ConnectError, Data: json.RawMessage(`[]`)}, ErrInvalidPayload},
		{Packet{Type: Ack, Data: json.RawMessage(`{}`)}, ErrInvalidPayload},
	} {
		if err := tc.p.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("Validate(%+v) = %v, want %v", tc.p, err, tc.want)
		}
	}
}

func TestTypes(t *testing.T) {
	for typ := Connect; typ <= BinaryAck; typ++ {
		if !typ.Valid() || typ.String() != typeNames[typ] {
			t.Errorf("%d: %v %q", typ, typ.Valid(), typ.String())
		}
		if typ.IsBinary() != (typ == BinaryEvent || typ == BinaryAck) ||
			typ.IsEvent() != (typ == Event || typ == BinaryEvent) || typ.IsAck() != (typ == Ack || typ == BinaryAck) {
			t.Errorf("%v: predicates", typ)
		}
	}
	if PacketType(7).Valid() || PacketType(7).String() != "INVALID" {
		t.Error("type 7")
	}
	for _, name := range []string{"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"} {
		if !IsReservedEvent(name) {
			t.Errorf("%s is reserved", name)
		}
	}
	for _, name := range []string{"", "connected", "Connect", "message", "disconnectin", "removeListenerX"} {
		if IsReservedEvent(name) {
			t.Errorf("%s is not reserved", name)
		}
	}
}

// ---- events ----

func TestSplitEvent(t *testing.T) {
	for _, tc := range []struct {
		data, name, args string
		err              error
	}{
		{`["chat"]`, "chat", "", nil},
		{`["chat",1]`, "chat", "1", nil},
		{`["chat",{"a":[1,2]},"x",null]`, "chat", `{"a":[1,2]},"x",null`, nil},
		{`[ "chat" , 1 , 2 ] `, "chat", "1 , 2", nil},
		{"[\"chat\"]\n", "chat", "", nil},
		{`["caf\u00e9","x"]`, "café", `"x"`, nil},
		{`["a\"b",1]`, `a"b`, "1", nil},
		{`[12,"x"]`, "12", `"x"`, nil},
		{`[-1.5e3]`, "-1.5e3", "", nil},
		{`[""]`, "", "", nil},
		{`[]`, "", "", ErrInvalidPayload},
		{`[ ]`, "", "", ErrInvalidPayload},
		{`{}`, "", "", ErrInvalidPayload},
		{``, "", "", ErrInvalidPayload},
		{`[`, "", "", ErrInvalidPayload},
		{`]`, "", "", ErrInvalidPayload},
		{`[null]`, "", "", ErrInvalidPayload},
		{`[{"a":1}]`, "", "", ErrInvalidPayload},
		{`["a",]`, "", "", ErrInvalidPayload},
		{`["a" 1]`, "", "", ErrInvalidPayload},
		{`["a]`, "", "", ErrInvalidPayload},
		{`["a\"]`, "", "", ErrInvalidPayload},
		{`[-]`, "", "", ErrInvalidPayload},
	} {
		name, args, err := SplitEvent([]byte(tc.data))
		if !errors.Is(err, tc.err) || string(name) != tc.name || string(args) != tc.args {
			t.Errorf("SplitEvent(%q) = %q, %q, %v; want %q, %q, %v", tc.data, name, args, err, tc.name, tc.args, tc.err)
		}
	}
	// The name aliases the data when it has no escapes, and nothing is allocated.
	data := []byte(`["message",{"text":"hi"},2]`)
	name, _, _ := SplitEvent(data)
	if &name[0] != &data[2] {
		t.Error("name does not alias data")
	}
	handlers := map[string]int{"message": 1}
	if n := testing.AllocsPerRun(100, func() {
		name, args, err := SplitEvent(data)
		if err != nil || handlers[string(name)] != 1 || len(args) == 0 {
			t.Fatal("SplitEvent")
		}
	}); n != 0 {
		t.Errorf("SplitEvent + lookup allocates %v times", n)
	}
}

func TestRawArgs(t *testing.T) {
	_, args, err := SplitEvent([]byte(`["e", 1 ,{"a":[1,{"b":"]"}]}, "x,y" ,[],null]`))
	if err != nil {
		t.Fatal(err)
	}
	parts, err := args.Split(nil)
	want := []string{`1`, `{"a":[1,{"b":"]"}]}`, `"x,y"`, `[]`, `null`}
	if err != nil || len(parts) != len(want) {
		t.Fatalf("Split = %q, %v", parts, err)
	}
	for i := range want {
		if string(parts[i]) != want[i] {
			t.Errorf("arg %d = %q, want %q", i, parts[i], want[i])
		}
	}
	var into []any
	if err := json.Unmarshal(args.Array(), &into); err != nil || len(into) != 5 {
		t.Errorf("Array() = %s: %v", args.Array(), err)
	}
	if got := string(RawArgs(nil).Array()); got != "[]" {
		t.Errorf("empty Array() = %q", got)
	}
	if parts, err := RawArgs(nil).Split(nil); err != nil || len(parts) != 0 {
		t.Errorf("empty Split = %q %v", parts, err)
	}
	for _, bad := range []string{`1,`, `1 2`, `{`, `1,,2`, `,1`, `]`} {
		if _, err := RawArgs(bad).Split(nil); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("Split(%q): %v", bad, err)
		}
	}
	acks, err := SplitArray([]byte(` [1, "a"] `))
	if err != nil || string(acks) != `1, "a"` {
		t.Errorf("SplitArray = %q, %v", acks, err)
	}
	if acks, err := SplitArray([]byte(`[]`)); err != nil || len(acks) != 0 {
		t.Errorf("SplitArray([]) = %q, %v", acks, err)
	}
	if _, err := SplitArray([]byte(`{}`)); !errors.Is(err, ErrInvalidPayload) {
		t.Errorf("SplitArray({}): %v", err)
	}
}

func TestEventBuilders(t *testing.T) {
	buf := AppendHeader(nil, Event, 0, "/chat", 7, true)
	buf = AppendEventData(buf, "say \"hi\"", json.RawMessage(`{"a":1}`), json.RawMessage(`"x"`))
	if string(buf) != `2/chat,7["say \"hi\"",{"a":1},"x"]` {
		t.Errorf("event = %s", buf)
	}
	if got := AppendEventData(nil, "ping"); string(got) != `["ping"]` {
		t.Errorf("no args: %s", got)
	}
	if got := AppendArray(AppendHeader(nil, Ack, 0, "/", 3, true), json.RawMessage(`1`), json.RawMessage(`null`)); string(got) != `33[1,null]` {
		t.Errorf("ack: %s", got)
	}
	if got := AppendArray(nil); string(got) != `[]` {
		t.Errorf("empty array: %s", got)
	}
	// A built event decodes and splits back.
	var d Decoder
	p, _, err := d.AddText(buf)
	if err != nil {
		t.Fatal(err)
	}
	name, args, err := SplitEvent(p.Data)
	if err != nil || string(name) != `say "hi"` || string(args) != `{"a":1},"x"` {
		t.Errorf("split %q %q %v", name, args, err)
	}
	// Re-emitting the raw arguments under another name.
	out := AppendEventData(AppendHeader(nil, Event, 0, "/", 0, false), "relay", args.Array())
	if string(out) != `2["relay",[{"a":1},"x"]]` {
		t.Errorf("relay %s", out)
	}
}

// ---- binary ----

func TestDeconstructReconstruct(t *testing.T) {
	v := []any{"upload", map[string]any{"name": "f", "chunks": []any{[]byte{1, 2}, []byte{}, json.RawMessage(`{"raw":true}`)}}, []byte(nil), 3.5}
	tree, atts, err := Deconstruct(v, 0)
	if err != nil || len(atts) != 3 {
		t.Fatalf("Deconstruct: %d attachments, %v", len(atts), err)
	}
	data, atts2, err := MarshalData(v)
	if err != nil || len(atts2) != 3 {
		t.Fatal(err)
	}
	want := `["upload",{"chunks":[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"raw":true}],"name":"f"},{"_placeholder":true,"num":2},3.5]`
	if string(data) != want {
		t.Errorf("MarshalData = %s\nwant %s", data, want)
	}
	if b, _ := json.Marshal(tree); string(b) != want {
		t.Errorf("Deconstruct tree marshals as %s", b)
	}
	// The original is untouched.
	if _, ok := v[1].(map[string]any)["chunks"].([]any)[0].([]byte); !ok {
		t.Error("Deconstruct modified its input")
	}
	back, err := Reconstruct(data, atts2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := canonical(t, back); got != `["upload",{"chunks":[{"$bin":"0102"},{"$bin":""},{"raw":true}],"name":"f"},{"$bin":""},3.5]` {
		t.Errorf("Reconstruct = %s", got)
	}
	// Packet round trip through the decoder.
	p := Packet{Type: BinaryEvent, Nsp: "/up", Data: data, Attachments: atts2}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	var d Decoder
	msgs := []msg{txt(string(Encode(p)))}
	for _, a := range atts2 {
		msgs = append(msgs, bin(string(a)))
	}
	got, pending, err := run(&d, msgs)
	if err != nil || pending || !bytes.Equal(got.Data, data) || len(got.Attachments) != 3 {
		t.Fatalf("decode: %+v %v %v", got, pending, err)
	}
	// No binary: no attachments, the data marshals as plain JSON without HTML escaping.
	data, atts, err = MarshalData([]any{"a<b>&", map[string]any{"k": nil}})
	if err != nil || len(atts) != 0 || string(data) != `["a<b>&",{"k":null}]` {
		t.Errorf("MarshalData = %s %d %v", data, len(atts), err)
	}
}

func TestBinaryDepthAndCycles(t *testing.T) {
	var v any = []byte{1}
	for range DefaultMaxDepth {
		v = []any{v}
	}
	if _, atts, err := Deconstruct(v, 0); err != nil || len(atts) != 1 {
		t.Errorf("depth %d: %v", DefaultMaxDepth, err)
	}
	if _, _, err := Deconstruct([]any{v}, 0); !errors.Is(err, ErrTooDeep) {
		t.Errorf("depth %d: %v", DefaultMaxDepth+1, err)
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	if _, _, err := Deconstruct(cyclic, 0); !errors.Is(err, ErrTooDeep) {
		t.Errorf("cycle: %v", err)
	}
	if _, _, err := MarshalData(cyclic); !errors.Is(err, ErrTooDeep) {
		t.Errorf("MarshalData cycle: %v", err)
	}
	if _, err := Reconstruct(json.RawMessage(nested("[", "]", DefaultMaxDepth+1, "")), nil, 0); !errors.Is(err, ErrTooDeep) {
		t.Errorf("Reconstruct depth: %v", err)
	}
	if _, err := Reconstruct(json.RawMessage(nested("[", "]", 5, "")), nil, 4); !errors.Is(err, ErrTooDeep) {
		t.Errorf("Reconstruct custom depth: %v", err)
	}
	for _, bad := range []string{`[{"_placeholder":true,"num":1}]`, `{"_placeholder":true}`, `[1]x`, ``, `[`} {
		if _, err := Reconstruct(json.RawMessage(bad), [][]byte{{1}}, 0); err == nil {
			t.Errorf("Reconstruct(%s) succeeded", bad)
		}
	}
	// A placeholder at the top level.
	if v, err := Reconstruct(json.RawMessage(` {"_placeholder":true,"num":0} `), [][]byte{{9}}, 0); err != nil || canonical(t, v) != `{"$bin":"09"}` {
		t.Errorf("top-level placeholder: %v %v", v, err)
	}
}

// ---- JSON scanner against encoding/json ----

func TestScannerMatchesEncodingJSON(t *testing.T) {
	cases := []string{
		`0`, `-0`, `1.5`, `-1.5e-3`, `1E+2`, `1e`, `01`, `.1`, `1.`, `-`, `+1`, `--1`, `1e1.5`,
		`""`, `"a"`, `"\u00e9"`, `"\uD83D\uDE00"`, `"\ud800"`, `"\x"`, `"\u12g4"`, "\"\x1f\"", "\"\x7f\"", `"\/"`,
		`"`, `"\"`, `true`, `false`, `null`, `tru`, `nulll`, `[]`, `[1,]`, `[,]`, `[1 2]`, `{}`, `{"a":1}`,
		`{"a":1,}`, `{"a"}`, `{a:1}`, `{"a":1 "b":2}`, ` [ 1 , { "a" : [ ] } ] `, "\t\n\r 1 \t\n\r", `[1]]`, `[[1]`,
		`{"a":{"b":{"c":[1,2,{"d":null}]}}}`, "\xff", `"\xff"`, "", " ", `1 1`, `[1],`, "[\"a\x00\"]",
	}
	for _, c := range cases {
		got := validJSON([]byte(c), MaxDepthLimit) == nil
		if want := json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid = %v", c, got, want)
		}
	}
}

func TestUnquote(t *testing.T) {
	for lit, want := range map[string]string{
		`"abc"`:                "abc",
		`"a\"b\\c\/d"`:         `a"b\c/d`,
		`"\b\f\n\r\t"`:         "\b\f\n\r\t",
		`"\u00e9\u20AC"`:       "é€",
		`"\ud83d\ude00"`:       "😀",
		`"\ud83d"`:             "\ufffd",
		`"\ude00x"`:            "\ufffdx",
		`"\ud83d\u0041"`:       "\ufffdA",
		`"\ud83d\ud83d\ude00"`: "\ufffd😀",
		`"\u0000"`:             "\x00",
	} {
		var std string
		if err := json.Unmarshal([]byte(lit), &std); err != nil {
			t.Fatal(err)
		}
		if got := string(unquote(nil, []byte(lit))); got != want || got != std {
			t.Errorf("unquote(%s) = %q, want %q (encoding/json: %q)", lit, got, want, std)
		}
	}
}

func TestAllocations(t *testing.T) {
	var d Decoder
	text := []byte(`2/chat,12["message",{"user":"ann","text":"hello there","ts":1700000000}]`)
	if n := testing.AllocsPerRun(100, func() {
		p, _, err := d.AddText(text)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := SplitEvent(p.Data); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("decode + split allocates %v times", n)
	}
	buf := make([]byte, 0, 256)
	arg := json.RawMessage(`{"user":"ann","text":"hello there"}`)
	p := Packet{Type: Event, Nsp: "/chat", ID: 12, HasID: true, Data: text[9:]}
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendHeader(buf[:0], Event, 0, "/chat", 12, true)
		buf = AppendEventData(buf, "message", arg)
		buf = AppendPacket(buf[:0], p)
	}); n != 0 {
		t.Errorf("encoding allocates %v times", n)
	}
}
