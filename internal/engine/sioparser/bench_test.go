package sioparser

import (
	"encoding/json"
	"strings"
	"testing"
)

var benchArgs = []struct {
	name string
	arg  json.RawMessage
}{
	{"small", json.RawMessage(`{"user":"ann","text":"hello there","ts":1700000000}`)},
	{"1KB", json.RawMessage(`{"user":"ann","text":"` + strings.Repeat("lorem ipsum ", 83) + `","ts":1700000000}`)},
}

// BenchmarkEncodeEvent encodes `2/chat,12["message",<arg>]` into a reused buffer, as a server does
// for an emit (the argument already marshalled).
func BenchmarkEncodeEvent(b *testing.B) {
	for _, bc := range benchArgs {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 2048)
			b.ReportAllocs()
			b.SetBytes(int64(len(AppendEventData(AppendHeader(nil, Event, 0, "/chat", 12, true), "message", bc.arg))))
			for b.Loop() {
				buf = AppendHeader(buf[:0], Event, 0, "/chat", 12, true)
				buf = AppendEventData(buf, "message", bc.arg)
			}
		})
	}
}

// BenchmarkDecodeEvent decodes and validates `2/chat,12["message",<arg>]` and splits it into the
// event name and the raw arguments, as a server does for each incoming event.
func BenchmarkDecodeEvent(b *testing.B) {
	for _, bc := range benchArgs {
		b.Run(bc.name, func(b *testing.B) {
			text := AppendEventData(AppendHeader(nil, Event, 0, "/chat", 12, true), "message", bc.arg)
			var d Decoder
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				p, _, err := d.AddText(text)
				if err != nil {
					b.Fatal(err)
				}
				name, args, err := SplitEvent(p.Data)
				if err != nil || len(name) == 0 || len(args) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeBinaryEvent decodes a BINARY_EVENT with one 1 KB attachment.
func BenchmarkDecodeBinaryEvent(b *testing.B) {
	text := []byte(`51-/up,3["upload",{"name":"f.bin","data":{"_placeholder":true,"num":0}}]`)
	att := make([]byte, 1024)
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.AddText(text); err != nil {
			b.Fatal(err)
		}
		if _, done, err := d.AddBinary(att); err != nil || !done {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalData deconstructs and marshals a value tree with one binary.
func BenchmarkMarshalData(b *testing.B) {
	v := []any{"upload", map[string]any{"name": "f.bin", "data": make([]byte, 1024)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := MarshalData(v); err != nil {
			b.Fatal(err)
		}
	}
}
