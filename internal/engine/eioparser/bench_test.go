package eioparser

import (
	"bytes"
	"testing"
)

var benchMessage = []byte(`2/chat,12["message",{"user":"ann","text":"hello there","ts":1700000000}]`)

// BenchmarkEncodePacket encodes a message packet into a reused buffer.
func BenchmarkEncodePacket(b *testing.B) {
	buf := make([]byte, 0, 256)
	p := Packet{Type: Message, Data: benchMessage}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchMessage) + 1))
	for b.Loop() {
		buf = AppendPacket(buf[:0], p, true)
	}
}

// BenchmarkDecodePacket decodes a text message packet.
func BenchmarkDecodePacket(b *testing.B) {
	text := append([]byte{'4'}, benchMessage...)
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := DecodePacket(text, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePayload walks a polling payload of 16 messages.
func BenchmarkDecodePayload(b *testing.B) {
	payload := bytes.Repeat(append(append([]byte{'4'}, benchMessage...), Separator), 16)
	payload = payload[:len(payload)-1]
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		for _, err := range SplitPayload(payload) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEncodePayload encodes 16 messages into a reused buffer.
func BenchmarkEncodePayload(b *testing.B) {
	packets := make([]Packet, 16)
	for i := range packets {
		packets[i] = Packet{Type: Message, Data: benchMessage}
	}
	buf := make([]byte, 0, PayloadLen(packets))
	b.ReportAllocs()
	b.SetBytes(int64(PayloadLen(packets)))
	for b.Loop() {
		buf = AppendPayload(buf[:0], packets)
	}
}
