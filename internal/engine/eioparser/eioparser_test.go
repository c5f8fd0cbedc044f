package eioparser

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// packetVector describes a packet in the reference vectors (vectors_test.go).
type packetVector struct {
	typ    PacketType
	binary bool
	data   string
	err    bool // engine.io-parser returned its "parser error" packet
}

type encodeVector struct {
	in             packetVector
	supportsBinary bool
	out            string
	outBinary      bool
}

type decodeVector struct {
	in   string
	want packetVector
}

type payloadVector struct {
	packets []packetVector
	payload string
}

func hexString(s string) string {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func (v packetVector) packet() Packet {
	p := Packet{Type: v.typ, Binary: v.binary}
	if v.data != "" {
		p.Data = []byte(v.data)
	}
	return p
}

func samePacket(p Packet, v packetVector) bool {
	return p.Type == v.typ && p.Binary == v.binary && string(p.Data) == v.data
}

// refDeviations are the inputs on which this decoder deliberately differs from engine.io-parser:
// Node's base64 decoder skips characters that are not base64 (and stops at the first '='), this one
// rejects malformed base64 with ErrBadBase64.
var refDeviations = map[string]error{
	"b!!!!":               ErrBadBase64,
	"bAQ ID":              ErrBadBase64,
	"b====":               ErrBadBase64,
	"4a\x1eb!!\x1e4c":     ErrBadBase64,
	"b!!":                 ErrBadBase64,
	"\x1e4a\x1eb!!\x1e4c": ErrBadBase64,
}

func TestReferenceEncodePacket(t *testing.T) {
	for _, v := range refEncodePacket {
		p := v.in.packet()
		got := EncodePacket(p, v.supportsBinary)
		if string(got) != v.out {
			t.Errorf("EncodePacket(%+v, %v) = %q, want %q", v.in, v.supportsBinary, got, v.out)
		}
		if n := EncodedLen(p, v.supportsBinary); n != len(got) {
			t.Errorf("EncodedLen(%+v) = %d, encoded %d bytes", v.in, n, len(got))
		}
		// Append-style: the prefix in dst is kept.
		got = AppendPacket([]byte("xyz"), p, v.supportsBinary)
		if string(got) != "xyz"+v.out {
			t.Errorf("AppendPacket(xyz, %+v) = %q", v.in, got)
		}
		// Decoding the encoding gives the packet back (a binary frame when outBinary).
		back, err := DecodePacket([]byte(v.out), v.outBinary)
		if err != nil || !samePacket(back, v.in) {
			t.Errorf("DecodePacket(%q, %v) = %+v, %v; want %+v", v.out, v.outBinary, back, err, v.in)
		}
	}
}

func TestReferenceDecodePacket(t *testing.T) {
	for _, v := range refDecodePacket {
		got, err := DecodePacket([]byte(v.in), false)
		if want, ok := refDeviations[v.in]; ok {
			if !errors.Is(err, want) || !errors.Is(err, ErrParser) {
				t.Errorf("DecodePacket(%q): err = %v, want %v (deliberate deviation)", v.in, err, want)
			}
			continue
		}
		if v.want.err {
			if err == nil || !errors.Is(err, ErrParser) {
				t.Errorf("DecodePacket(%q) = %+v, %v; want a parser error", v.in, got, err)
			}
			continue
		}
		if err != nil || !samePacket(got, v.want) {
			t.Errorf("DecodePacket(%q) = %+v (%q), %v; want %+v", v.in, got, got.Data, err, v.want)
		}
	}
}

func TestReferenceEncodePayload(t *testing.T) {
	for _, v := range refEncodePayload {
		packets := make([]Packet, len(v.packets))
		for i, pv := range v.packets {
			packets[i] = pv.packet()
		}
		got := EncodePayload(packets)
		if string(got) != v.payload {
			t.Errorf("EncodePayload(%+v) = %q, want %q", v.packets, got, v.payload)
		}
		if n := PayloadLen(packets); n != len(got) {
			t.Errorf("PayloadLen = %d, encoded %d", n, len(got))
		}
		back, err := DecodePayload(got)
		if err != nil || len(back) != len(packets) {
			t.Fatalf("DecodePayload(%q) = %v, %v", got, back, err)
		}
		for i := range back {
			if !samePacket(back[i], v.packets[i]) {
				t.Errorf("DecodePayload(%q)[%d] = %+v, want %+v", got, i, back[i], v.packets[i])
			}
		}
	}
}

func TestReferenceDecodePayload(t *testing.T) {
	for _, v := range refDecodePayload {
		got, err := DecodePayload([]byte(v.payload))
		want := v.packets
		if dev, ok := refDeviations[v.payload]; ok {
			if !errors.Is(err, dev) {
				t.Errorf("DecodePayload(%q): err = %v, want %v (deliberate deviation)", v.payload, err, dev)
			}
			continue
		}
		wantErr := len(want) > 0 && want[len(want)-1].err
		if wantErr {
			want = want[:len(want)-1]
			if !errors.Is(err, ErrParser) {
				t.Errorf("DecodePayload(%q): err = %v, want a parser error", v.payload, err)
			}
		} else if err != nil {
			t.Errorf("DecodePayload(%q): %v", v.payload, err)
		}
		if len(got) != len(want) {
			t.Errorf("DecodePayload(%q) = %d packets %+v, want %d", v.payload, len(got), got, len(want))
			continue
		}
		for i := range got {
			if !samePacket(got[i], want[i]) {
				t.Errorf("DecodePayload(%q)[%d] = %+v, want %+v", v.payload, i, got[i], want[i])
			}
		}
	}
}

func TestDecodePacketErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", ErrEmptyPacket},
		{"7", ErrUnknownType},
		{"9", ErrUnknownType},
		{"/", ErrUnknownType}, // '0'-1
		{"a", ErrUnknownType},
		{"B", ErrUnknownType},
		{"\x00", ErrUnknownType},
		{"\xff4", ErrUnknownType},
		{"\x1e", ErrUnknownType},
		{"b=", ErrBadBase64},
		{"bA", ErrBadBase64},      // a single sextet cannot encode a byte
		{"bAAA=A", ErrBadBase64},  // data after padding
		{"bAQ=", ErrBadBase64},    // wrong padding
		{"bAQID-_", ErrBadBase64}, // URL alphabet
		{"b\x00", ErrBadBase64},
	} {
		p, err := DecodePacket([]byte(tc.in), false)
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrParser) {
			t.Errorf("DecodePacket(%q) = %+v, %v; want %v", tc.in, p, err, tc.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "eioparser: ") {
			t.Errorf("error text %q", err)
		}
	}
	if errors.Is(ErrPayloadTooLarge, ErrParser) {
		t.Error("ErrPayloadTooLarge must not be a parser error")
	}
}

func TestDecodeBase64Forms(t *testing.T) {
	for _, in := range []string{"bAQIDBA==", "bAQIDBA", "bAQID\r\nBA==", "bAQIDBA\n"} {
		p, err := DecodePacket([]byte(in), false)
		if err != nil || !p.Binary || p.Type != Message || !bytes.Equal(p.Data, []byte{1, 2, 3, 4}) {
			t.Errorf("DecodePacket(%q) = %+v, %v", in, p, err)
		}
	}
}

func TestBinaryFrame(t *testing.T) {
	for _, in := range [][]byte{nil, {}, []byte("4hello"), {0, 0xff}, []byte("bAQID")} {
		p, err := DecodePacket(in, true)
		if err != nil || !p.Binary || p.Type != Message || !bytes.Equal(p.Data, in) {
			t.Errorf("DecodePacket(%q, binary) = %+v, %v", in, p, err)
		}
		if got := EncodePacket(p, true); !bytes.Equal(got, in) {
			t.Errorf("EncodePacket(binary %q) = %q", in, got)
		}
	}
	// Binary wins over Type when encoding, as in engine.io-parser.
	if got := EncodePacket(Packet{Type: Ping, Binary: true, Data: []byte{1, 2, 3}}, false); string(got) != "bAQID" {
		t.Errorf("binary ping encoded as %q", got)
	}
}

func TestDecodeAliasesInput(t *testing.T) {
	in := []byte("4hello")
	p, err := DecodePacket(in, false)
	if err != nil || &p.Data[0] != &in[1] {
		t.Fatalf("Data does not alias the input: %+v %v", p, err)
	}
}

func TestTypes(t *testing.T) {
	for typ := Open; typ <= Noop; typ++ {
		if !typ.Valid() || typ.String() != typeNames[typ] || typ.Char() != '0'+byte(typ) {
			t.Errorf("type %d: %v %q %q", typ, typ.Valid(), typ.String(), typ.Char())
		}
		enc := EncodePacket(Packet{Type: typ, Data: []byte("x")}, true)
		p, err := DecodePacket(enc, false)
		if err != nil || p.Type != typ || string(p.Data) != "x" {
			t.Errorf("round trip of %v: %+v %v", typ, p, err)
		}
	}
	if PacketType(7).Valid() || PacketType(7).String() != "invalid" {
		t.Error("type 7 must be invalid")
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	packets := []Packet{
		{Type: Open, Data: []byte(`{"sid":"x"}`)},
		{Type: Ping},
		{Type: Message, Data: []byte(`2["a",1]`)},
		{Type: Message, Binary: true, Data: []byte{0, 1, 2, 0x1e, 0xff}},
		{Type: Message, Binary: true},
		{Type: Noop},
		{Type: Close},
	}
	enc := EncodePayload(packets)
	dec, err := DecodePayload(enc)
	if err != nil || len(dec) != len(packets) {
		t.Fatalf("DecodePayload(%q) = %+v, %v", enc, dec, err)
	}
	for i := range dec {
		if dec[i].Type != packets[i].Type || dec[i].Binary != packets[i].Binary || !bytes.Equal(dec[i].Data, packets[i].Data) {
			t.Errorf("packet %d: %+v, want %+v", i, dec[i], packets[i])
		}
	}
	if got := EncodePayload(nil); len(got) != 0 {
		t.Errorf("EncodePayload(nil) = %q", got)
	}
	// Reusing a packet slice.
	buf := make([]Packet, 0, 8)
	dec2, err := AppendDecodedPayload(buf[:0], enc)
	if err != nil || len(dec2) != len(packets) || &dec2[0] != &buf[:1][0] {
		t.Errorf("AppendDecodedPayload did not reuse dst: %v", err)
	}
}

func TestSplitPayloadStops(t *testing.T) {
	n := 0
	for range SplitPayload([]byte("4a\x1e4b\x1e4c")) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("iterated %d times", n)
	}
	var errs []error
	for _, err := range SplitPayload([]byte("4a\x1e7\x1e4c")) {
		errs = append(errs, err)
	}
	if len(errs) != 2 || errs[0] != nil || !errors.Is(errs[1], ErrUnknownType) {
		t.Errorf("errors %v", errs)
	}
}

func TestCheckMaxPayload(t *testing.T) {
	for _, tc := range []struct {
		n, max int64
		ok     bool
	}{
		{0, 0, true}, {1, 0, false}, {100, 100, true}, {101, 100, false}, {1 << 40, -1, true},
	} {
		if err := CheckMaxPayload(tc.n, tc.max); (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrPayloadTooLarge)) {
			t.Errorf("CheckMaxPayload(%d, %d) = %v", tc.n, tc.max, err)
		}
	}
}

// countingReader records how much was read, to prove ReadPayload stops early.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadPayload(t *testing.T) {
	body := strings.Repeat("4hello\x1e", 1000) + "4end"
	for _, max := range []int64{int64(len(body)), int64(len(body)) + 1, -1, 1<<63 - 1} {
		got, err := ReadPayload([]byte("pre"), iotest.OneByteReader(strings.NewReader(body)), max)
		if err != nil || string(got) != "pre"+body {
			t.Errorf("max %d: %d bytes, %v", max, len(got), err)
		}
	}
	for _, max := range []int64{0, 1, int64(len(body)) - 1} {
		cr := &countingReader{r: strings.NewReader(body)}
		got, err := ReadPayload([]byte("pre"), cr, max)
		if !errors.Is(err, ErrPayloadTooLarge) || string(got) != "pre" {
			t.Errorf("max %d: %q, %v", max, got, err)
		}
		if int64(cr.n) > max+1 {
			t.Errorf("max %d: read %d bytes", max, cr.n)
		}
	}
	if got, err := ReadPayload(nil, strings.NewReader(""), 0); err != nil || len(got) != 0 {
		t.Errorf("empty body: %q %v", got, err)
	}
	boom := errors.New("boom")
	if _, err := ReadPayload(nil, iotest.ErrReader(boom), 10); err != boom {
		t.Errorf("read error: %v", err)
	}
	if _, err := ReadPayload(nil, iotest.ErrReader(boom), -1); err != boom {
		t.Errorf("read error (unlimited): %v", err)
	}
}

func TestAllocations(t *testing.T) {
	text := []byte(`42["chat",{"text":"hello"}]`)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodePacket(text, false) }); n != 0 {
		t.Errorf("DecodePacket allocates %v times", n)
	}
	payload := []byte("4a\x1e4b\x1e2\x1e42[\"x\"]")
	if n := testing.AllocsPerRun(100, func() {
		for _, err := range SplitPayload(payload) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("SplitPayload allocates %v times", n)
	}
	buf := make([]byte, 0, 256)
	p := Packet{Type: Message, Data: text[1:]}
	bin := Packet{Type: Message, Binary: true, Data: []byte{1, 2, 3, 4, 5}}
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendPacket(buf[:0], p, true)
		buf = AppendPacket(buf, bin, false)
		buf = AppendPayload(buf, []Packet{p, bin})
	}); n != 0 {
		t.Errorf("AppendPacket/AppendPayload allocate %v times", n)
	}
}
