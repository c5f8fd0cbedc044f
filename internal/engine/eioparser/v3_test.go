package eioparser

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// Payloads written by engine.io-parser 2.2.1 (socket.io-client 2.5's) from the packets named.
func TestV3PayloadsMatchEngineIOParser2(t *testing.T) {
	text := AppendTextV3(nil, []byte(`0{"sid":"x"}`))
	text = AppendTextV3(text, []byte("4héllo 😀"))
	if got, want := string(text), `12:0{"sid":"x"}9:4héllo 😀`; got != want {
		t.Fatalf("text payload %q, want %q", got, want)
	}
	b64 := AppendTextV3(nil, []byte("4a"))
	b64 = AppendBase64V3(b64, []byte{1, 2, 3})
	if got, want := string(b64), "2:4a6:b4AQID"; got != want {
		t.Fatalf("text payload with binary %q, want %q", got, want)
	}
	bin := AppendBinaryV3(nil, []byte("4é"), false)
	bin = AppendBinaryV3(bin, []byte{1, 2, 3}, true)
	if got, want := hex.EncodeToString(bin), "0003ff34c3a90104ff04010203"; got != want {
		t.Fatalf("binary payload %s, want %s", got, want)
	}
	long := AppendBinaryV3(nil, bytes.Repeat([]byte("x"), 1234), true)
	if !bytes.HasPrefix(long, []byte{1, 1, 2, 3, 5, 0xff, 4}) {
		t.Fatalf("binary payload length prefix % x", long[:8])
	}

	var got []Packet
	for p, err := range SplitPayloadV3(text, false) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if len(got) != 2 || got[0].Type != Open || string(got[1].Data) != "héllo 😀" {
		t.Fatalf("decoded %+v", got)
	}
	got = got[:0]
	for p, err := range SplitPayloadV3(b64, false) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if len(got) != 2 || !got[1].Binary || !bytes.Equal(got[1].Data, []byte{1, 2, 3}) {
		t.Fatalf("decoded %+v", got)
	}
	got = got[:0]
	for p, err := range SplitPayloadV3(bin, true) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if len(got) != 2 || string(got[0].Data) != "é" || got[0].Binary || !got[1].Binary || !bytes.Equal(got[1].Data, []byte{1, 2, 3}) {
		t.Fatalf("decoded %+v", got)
	}
}

func TestV3PayloadRefusals(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload string
		binary  bool
	}{
		{"empty", "", false},
		{"no colon", "12", false},
		{"no length", ":4a", false},
		{"not a number", "1x:4", false},
		{"length beyond the data", "5:4ab", false},
		{"length inside a surrogate pair", "2:4😀", false},
		{"eleven digits", "00000000001:4", false},
		{"unknown type", "2:9a", false},
		{"base64 of a non-message", "4:b2AA", false},
		{"bad base64", "4:b4!!", false},
		{"binary: no 255", "\x01\x03", true},
		{"binary: digit over 9", "\x01\x0a\xff\x04", true},
		{"binary: length beyond the data", "\x01\x09\xff\x04ab", true},
		{"binary: binary packet of another type", "\x01\x02\xff\x02a", true},
		{"binary: empty binary packet", "\x01\x00\xff", true},
	} {
		var err error
		for _, e := range SplitPayloadV3([]byte(c.payload), c.binary) {
			if e != nil {
				err = e
			}
		}
		if !errors.Is(err, ErrParser) {
			t.Errorf("%s: %q decoded without a parser error (%v)", c.name, c.payload, err)
		}
	}
	// A zero-length packet is skipped, as engine.io-parser 2 does.
	n := 0
	for p, err := range SplitPayloadV3([]byte("0:1:2"), false) {
		if err != nil || p.Type != Ping {
			t.Fatalf("%+v %v", p, err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d packets", n)
	}
}

func TestDecodePacketV3Frames(t *testing.T) {
	p, err := DecodePacketV3([]byte{4, 1, 2}, true)
	if err != nil || !p.Binary || !bytes.Equal(p.Data, []byte{1, 2}) {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := DecodePacketV3([]byte{1, 2}, true); !errors.Is(err, ErrParser) {
		t.Fatalf("a binary frame of type 1: %v", err)
	}
	if p, err := DecodePacketV3([]byte("2probe"), false); err != nil || p.Type != Ping || string(p.Data) != "probe" {
		t.Fatalf("%+v %v", p, err)
	}
}

func FuzzDecodePayloadV3(f *testing.F) {
	f.Add([]byte("2:4a6:b4AQID"), false)
	f.Add([]byte("\x00\x03\xff4é\x01\x04\xff\x04\x01\x02\x03"), true)
	f.Fuzz(func(t *testing.T, b []byte, binary bool) {
		var packets []Packet
		for p, err := range SplitPayloadV3(b, binary) {
			if err != nil {
				return
			}
			packets = append(packets, p)
		}
		if len(packets) == 0 {
			return // "0:" holds no packet
		}
		// What decodes encodes back to a payload that decodes to the same packets.
		var out []byte
		for _, p := range packets {
			switch {
			case binary:
				if p.Binary {
					out = AppendBinaryV3(out, p.Data, true)
				} else {
					out = AppendBinaryV3(out, AppendPacket(nil, p, false), false)
				}
			case p.Binary:
				out = AppendBase64V3(out, p.Data)
			default:
				out = AppendTextV3(out, AppendPacket(nil, p, false))
			}
		}
		i := 0
		for p, err := range SplitPayloadV3(out, binary) {
			if err != nil {
				t.Fatalf("re-encoded payload %q: %v", out, err)
			}
			if i >= len(packets) || p.Type != packets[i].Type || p.Binary != packets[i].Binary || !bytes.Equal(p.Data, packets[i].Data) {
				t.Fatalf("packet %d: %+v, want %+v", i, p, packets)
			}
			i++
		}
		if i != len(packets) {
			t.Fatalf("%d packets back, want %d", i, len(packets))
		}
	})
}
