package sioparser

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// The seed corpus is the reference vectors (f.Add below) plus the files in testdata/fuzz/<FuzzName>,
// which `go test` runs as ordinary test cases. Run a fuzzer with, for example:
//
//	go test ./internal/engine/sioparser -run '^$' -fuzz '^FuzzSocketIODecode$' -fuzztime 30s

func addDecodeSeeds(f *testing.F) {
	for _, v := range refDecode {
		att := []byte{}
		if len(v.in) > 1 && v.in[1].binary {
			att = []byte(v.in[1].data)
		}
		if !v.in[0].binary {
			f.Add([]byte(v.in[0].data), att)
		}
	}
	for _, v := range refEncode {
		att := []byte{}
		if len(v.attachments) > 0 {
			att = []byte(v.attachments[0])
		}
		f.Add([]byte(v.text), att)
	}
}

// FuzzSocketIODecode decodes a text packet, feeds it the attachments it asks for, and checks that a
// packet the decoder accepts is valid, re-encodes to a text that decodes to the same packet (and
// re-encodes identically), and can be split and reconstructed. Errors must match ErrInvalidPacket.
func FuzzSocketIODecode(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, text, attachment []byte) {
		var d Decoder
		p, done, err := d.AddText(text)
		if err != nil {
			if !errors.Is(err, ErrInvalidPacket) || d.Pending() != 0 {
				t.Fatalf("error %v (pending %d)", err, d.Pending())
			}
			return
		}
		for i := 0; !done; i++ {
			if i > DefaultMaxAttachments {
				t.Fatalf("more than %d attachments requested", DefaultMaxAttachments)
			}
			p, done, err = d.AddBinary(append(bytes.Clone(attachment), byte(i)))
			if err != nil {
				t.Fatalf("AddBinary: %v", err)
			}
		}
		checkPacket(t, p)
	})
}

func checkPacket(t *testing.T, p Packet) {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("decoded packet %+v does not validate: %v", p, err)
	}
	if len(p.Data) > 0 && !json.Valid(p.Data) {
		t.Fatalf("accepted data %q that encoding/json rejects", p.Data)
	}
	enc := Encode(p)
	if len(enc) != EncodedLen(p) || !bytes.HasSuffix(enc, p.Data) {
		t.Fatalf("Encode = %q, EncodedLen %d", enc, EncodedLen(p))
	}
	var d Decoder
	p2, done, err := d.AddText(enc)
	for i := 0; err == nil && !done && i < len(p.Attachments); i++ {
		p2, done, err = d.AddBinary(p.Attachments[i])
	}
	if err != nil || !done {
		t.Fatalf("re-decoding %q: done %v, %v", enc, done, err)
	}
	if p2.Type != p.Type || p2.Nsp != p.Nsp || p2.ID != p.ID || p2.HasID != p.HasID ||
		!bytes.Equal(p2.Data, p.Data) || len(p2.Attachments) != len(p.Attachments) {
		t.Fatalf("decode(encode(p)) = %+v, want %+v", p2, p)
	}
	if enc2 := Encode(p2); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable: %q then %q", enc, enc2)
	}
	switch {
	case p.Type.IsEvent():
		name, args, err := SplitEvent(p.Data)
		if err != nil {
			t.Fatalf("SplitEvent(%q): %v", p.Data, err)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(p.Data, &elems); err != nil || len(elems) == 0 {
			t.Fatalf("data %q: %v", p.Data, err)
		}
		var s string
		if json.Unmarshal(elems[0], &s) == nil {
			// The parser passes bytes that are not UTF-8 through (the transport has decoded UTF-8
			// before, as Node does); encoding/json turns each into U+FFFD, and so does AppendString.
			var fixed string
			if err := json.Unmarshal(AppendString(nil, string(name)), &fixed); err != nil || fixed != s || IsReservedEvent(s) {
				t.Fatalf("name %q, encoding/json reads %q", name, s)
			}
		} else if string(name) != string(elems[0]) {
			t.Fatalf("numeric name %q, element %q", name, elems[0])
		}
		checkArgs(t, args, elems[1:])
	case p.Type.IsAck():
		args, err := SplitArray(p.Data)
		if err != nil {
			t.Fatalf("SplitArray(%q): %v", p.Data, err)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(p.Data, &elems); err != nil {
			t.Fatal(err)
		}
		checkArgs(t, args, elems)
	}
	if p.Type.IsBinary() {
		if _, err := Reconstruct(p.Data, p.Attachments, 0); err != nil {
			t.Fatalf("Reconstruct(%q): %v", p.Data, err)
		}
	}
}

func checkArgs(t *testing.T, args RawArgs, want []json.RawMessage) {
	t.Helper()
	got, err := args.Split(nil)
	if err != nil || len(got) != len(want) {
		t.Fatalf("args %q split into %q, %v; encoding/json: %q", args, got, err, want)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("arg %d = %q, encoding/json: %q", i, got[i], want[i])
		}
	}
}

// FuzzJSON checks the JSON scanner against encoding/json and that the helpers reading raw JSON
// never panic on arbitrary bytes.
func FuzzJSON(f *testing.F) {
	for _, v := range refDecode {
		if !v.in[0].binary && len(v.in[0].data) > 1 {
			f.Add([]byte(v.in[0].data[1:]))
		}
	}
	for _, s := range []string{`[1,{"a":"\u00e9"}]`, `{"_placeholder":true,"num":0}`, `"\ud800"`, `-0.5e+10`, `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := validJSON(data, MaxDepthLimit) == nil
		if want := json.Valid(data); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", data, got, want)
		}
		SplitEvent(data)
		SplitArray(data)
		RawArgs(data).Split(nil)
		v, err := Reconstruct(data, [][]byte{{1}, {2}}, 0)
		if err == nil && !got {
			t.Fatalf("Reconstruct accepted invalid JSON %q: %v", data, v)
		}
		for _, typ := range []PacketType{Connect, Event, Ack, ConnectError, BinaryEvent} {
			checkData(typ, data, 2, DefaultMaxDepth)
		}
	})
}
