package eioparser

import (
	"bytes"
	"errors"
	"testing"
)

// The seed corpus is the reference vectors (f.Add below) plus the files in testdata/fuzz/<FuzzName>,
// which `go test` runs as ordinary test cases. Run the fuzzers with, for example:
//
//	go test ./internal/engine/eioparser -run '^$' -fuzz '^FuzzDecodePacket$' -fuzztime 30s

func samePackets(a, b Packet) bool {
	return a.Type == b.Type && a.Binary == b.Binary && bytes.Equal(a.Data, b.Data)
}

func FuzzDecodePacket(f *testing.F) {
	for _, v := range refDecodePacket {
		f.Add([]byte(v.in), false)
	}
	for _, v := range refEncodePacket {
		f.Add([]byte(v.out), v.outBinary)
	}
	f.Fuzz(func(t *testing.T, data []byte, binaryFrame bool) {
		p, err := DecodePacket(data, binaryFrame)
		if err != nil {
			if !errors.Is(err, ErrParser) {
				t.Fatalf("error %v is not a parser error", err)
			}
			return
		}
		if !p.Type.Valid() || (p.Binary && p.Type != Message) {
			t.Fatalf("decoded an invalid packet %+v", p)
		}
		// binaryFrame doubles as "supports binary": a packet read from a text frame is written back
		// as text, one read from a binary frame as raw bytes.
		enc := EncodePacket(p, binaryFrame)
		if len(enc) != EncodedLen(p, binaryFrame) {
			t.Fatalf("EncodedLen %d, encoded %d", EncodedLen(p, binaryFrame), len(enc))
		}
		if !p.Binary && !bytes.Equal(enc, data) {
			t.Fatalf("text packet %q re-encoded as %q", data, enc)
		}
		if binaryFrame && !bytes.Equal(enc, data) {
			t.Fatalf("binary frame %q re-encoded as %q", data, enc)
		}
		p2, err := DecodePacket(enc, binaryFrame)
		if err != nil || !samePackets(p, p2) {
			t.Fatalf("decode(encode(decode(%q))) = %+v, %v; want %+v", data, p2, err, p)
		}
		if enc2 := EncodePacket(p2, binaryFrame); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %q then %q", enc, enc2)
		}
		// The base64 form of any binary message decodes back to it.
		if p.Binary {
			b64 := EncodePacket(p, false)
			p3, err := DecodePacket(b64, false)
			if err != nil || !samePackets(p, p3) {
				t.Fatalf("base64 round trip of %x: %q -> %+v, %v", p.Data, b64, p3, err)
			}
		}
	})
}

func FuzzDecodePayload(f *testing.F) {
	for _, v := range refDecodePayload {
		f.Add([]byte(v.payload))
	}
	for _, v := range refEncodePayload {
		f.Add([]byte(v.payload))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		packets, err := DecodePayload(data)
		n := 0
		for p, e := range SplitPayload(data) {
			if e != nil {
				if !errors.Is(e, ErrParser) || e != err {
					t.Fatalf("SplitPayload error %v, DecodePayload error %v", e, err)
				}
				break
			}
			if n >= len(packets) || !samePackets(p, packets[n]) {
				t.Fatalf("SplitPayload and DecodePayload disagree at %d", n)
			}
			n++
		}
		if n != len(packets) {
			t.Fatalf("SplitPayload yielded %d packets, DecodePayload %d", n, len(packets))
		}
		if err != nil {
			if len(data) == 0 && !errors.Is(err, ErrEmptyPacket) {
				t.Fatalf("empty payload: %v", err)
			}
			return
		}
		enc := EncodePayload(packets)
		hasBinary := false
		for _, p := range packets {
			hasBinary = hasBinary || p.Binary
		}
		if !hasBinary && !bytes.Equal(enc, data) {
			t.Fatalf("payload %q re-encoded as %q", data, enc)
		}
		back, err := DecodePayload(enc)
		if err != nil || len(back) != len(packets) {
			t.Fatalf("re-decoding %q: %d packets, %v", enc, len(back), err)
		}
		for i := range back {
			if !samePackets(back[i], packets[i]) {
				t.Fatalf("packet %d changed: %+v -> %+v", i, packets[i], back[i])
			}
		}
		if enc2 := EncodePayload(back); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %q then %q", enc, enc2)
		}
	})
}
