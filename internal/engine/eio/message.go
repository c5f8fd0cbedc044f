package eio

import (
	"encoding/base64"
	"sync"

	"github.com/gobwas/ws"

	"github.com/switchboard/switchboard/internal/engine/eioparser"
)

// Message is an immutable outbound Engine.IO packet, encoded once and shareable by any number of
// sockets and transports concurrently (a broadcast creates ONE Message for all recipients).
//
// frame holds the complete server WebSocket frame (header, then the packet), so a WebSocket flush
// writes it as is and the long-polling encoding of a text packet is the sub-slice after the header.
type Message struct {
	frame  []byte
	hdr    uint8 // length of the frame header in frame
	binary bool

	// The "b"+base64 encoding of a binary message (polling, b64 clients), built on first use.
	b64Once sync.Once
	b64     []byte

	// The permessage-deflate frame, built once by the first connection that sends it compressed
	// (so a broadcast is compressed once); nil when compressing does not make it smaller.
	zOnce  sync.Once
	zframe []byte

	// The protocol 3 frame of a binary message (eio3.go), built on first use.
	v3Once  sync.Once
	v3frame []byte
}

// TextMessage returns a message packet carrying text (without the '4' type digit). The caller must
// not modify text afterwards.
func TextMessage(text []byte) *Message { return newPacket(eioparser.Message, text) }

// BinaryMessage returns a binary message packet carrying b. The caller must not modify b afterwards.
func BinaryMessage(b []byte) *Message {
	m := &Message{binary: true}
	m.frame, m.hdr = makeFrame(ws.OpBinary, len(b))
	copy(m.frame[m.hdr:], b)
	return m
}

// newPacket builds a text packet of type t: its type digit followed by data.
func newPacket(t eioparser.PacketType, data []byte) *Message {
	m := &Message{}
	m.frame, m.hdr = makeFrame(ws.OpText, 1+len(data))
	m.frame[m.hdr] = t.Char()
	copy(m.frame[int(m.hdr)+1:], data)
	return m
}

// makeFrame allocates a frame of n payload bytes with its (unmasked, final) header written.
func makeFrame(op ws.OpCode, n int) ([]byte, uint8) {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(n)}
	hs := ws.HeaderSize(h)
	b := make([]byte, hs+n)
	var scratch [ws.MaxHeaderSize]byte
	w := sliceWriter{b: b[:0]}
	_ = ws.WriteHeaderBuffer(&w, h, scratch[:]) // cannot fail: the header fits and the writer never errs
	return b, uint8(hs)
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// polling returns the packet as it appears in a long-polling payload.
func (m *Message) polling() []byte {
	if !m.binary {
		return m.frame[m.hdr:]
	}
	m.b64Once.Do(func() {
		raw := m.frame[m.hdr:]
		b := make([]byte, 1, 1+base64.StdEncoding.EncodedLen(len(raw)))
		b[0] = 'b'
		m.b64 = base64.StdEncoding.AppendEncode(b, raw)
	})
	return m.b64
}

// deflated returns the compressed frame of the message, nil when it does not compress.
func (m *Message) deflated() []byte {
	m.zOnce.Do(func() {
		op := ws.OpText
		if m.binary {
			op = ws.OpBinary
		}
		m.zframe = deflateFrame(op, m.frame[m.hdr:])
	})
	return m.zframe
}

// size is what the message counts against MaxBuffered.
func (m *Message) size() int { return len(m.frame) }

// Size is the message's encoded size in bytes (its WebSocket frame), what
// it costs to keep (the recovery log counts it).
func (m *Message) Size() int { return m.size() }

// Control packets shared by every session.
var (
	pingPacket  = newPacket(eioparser.Ping, nil)
	noopPacket  = newPacket(eioparser.Noop, nil)
	closePacket = newPacket(eioparser.Close, nil)
	probePong   = newPacket(eioparser.Pong, []byte("probe"))
)
