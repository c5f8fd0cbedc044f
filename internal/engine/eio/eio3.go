package eio

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"

	"github.com/gobwas/ws"

	"github.com/switchboard/switchboard/internal/engine/eioparser"
)

// Engine.IO protocol 3, for socket.io-client 2.x (Options.AllowEIO3, Node's allowEIO3). A session
// speaks the version of its handshake. What differs from protocol 4, as in Node's engine.io 6:
//   - the client pings and the server answers; a session without a ping for PingInterval +
//     PingTimeout ends with "ping timeout";
//   - polling payloads are length-prefixed (see eioparser.SplitPayloadV3), in binary form
//     (application/octet-stream) when one holds binary and the client takes binary (no b64);
//   - a binary WebSocket frame starts with the packet type (4), base64 binary is "b4"+base64.

// Protocol returns the Engine.IO protocol version of the session: 4, or 3 for an EIO=3 client.
func (s *Socket) Protocol() int {
	if s.v3 {
		return eioparser.Protocol3
	}
	return eioparser.Protocol
}

// eioParam is the EIO query value of the session's requests.
func (s *Socket) eioParam() string {
	if s.v3 {
		return "3"
	}
	return "4"
}

// v3Pong answers a protocol 3 client's ping.
var v3Pong = newPacket(eioparser.Pong, nil)

// v3Frame returns the protocol 3 WebSocket frame of a binary message: its type byte, then the data.
func (m *Message) v3Frame() []byte {
	m.v3Once.Do(func() {
		raw := m.frame[m.hdr:]
		f, hdr := makeFrame(ws.OpBinary, 1+len(raw))
		f[hdr] = byte(eioparser.Message)
		copy(f[int(hdr)+1:], raw)
		m.v3frame = f
	})
	return m.v3frame
}

// v3Base64Frame is the text frame of a binary message for a protocol 3 b64 client: "b4"+base64.
func (m *Message) v3Base64Frame() []byte {
	raw := m.frame[m.hdr:]
	n := 2 + base64.StdEncoding.EncodedLen(len(raw))
	f, hdr := makeFrame(ws.OpText, n)
	f[hdr], f[hdr+1] = 'b', eioparser.Message.Char()
	base64.StdEncoding.Encode(f[int(hdr)+2:], raw)
	return f
}

// writePayload answers a poll of s with msgs in its protocol's payload format.
func (s *Socket) writePayload(w http.ResponseWriter, r *http.Request, msgs []*Message) error {
	if !s.v3 {
		return s.srv.writePayload(w, r, msgs)
	}
	binary := false
	if !s.b64 {
		for _, m := range msgs {
			binary = binary || m.binary
		}
	}
	buf := scratchBufs.Get().(*bytes.Buffer)
	defer putScratch(buf)
	b := buf.AvailableBuffer()
	for _, m := range msgs {
		p := m.frame[m.hdr:]
		switch {
		case binary:
			b = eioparser.AppendBinaryV3(b, p, m.binary)
		case m.binary:
			b = eioparser.AppendBase64V3(b, p)
		default:
			b = eioparser.AppendTextV3(b, p)
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	if binary {
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Cache-Control", "no-store")
	if c := &s.srv.o.Compression; c.HTTP && len(b) >= c.HTTPThreshold {
		if enc := acceptEncoding(r.Header.Values("Accept-Encoding")); enc != encIdentity {
			z := scratchBufs.Get().(*bytes.Buffer)
			defer putScratch(z)
			compressTo(z, enc, func(w io.Writer) { _, _ = w.Write(b) })
			h.Set("Content-Encoding", encodingNames[enc])
			b = z.Bytes()
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	return err
}
