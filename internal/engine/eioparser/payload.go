package eioparser

import (
	"bytes"
	"io"
	"iter"
	"math"
	"slices"
)

// PayloadLen returns the exact number of bytes [AppendPayload] appends for packets.
func PayloadLen(packets []Packet) int {
	if len(packets) == 0 {
		return 0
	}
	n := len(packets) - 1 // separators
	for _, p := range packets {
		n += EncodedLen(p, false)
	}
	return n
}

// AppendPayload appends the long-polling encoding of packets to dst: each packet encoded as text
// (binary messages as "b" + base64), joined by [Separator]. An empty list appends nothing.
func AppendPayload(dst []byte, packets []Packet) []byte {
	for i, p := range packets {
		if i > 0 {
			dst = append(dst, Separator)
		}
		dst = AppendPacket(dst, p, false)
	}
	return dst
}

// EncodePayload returns the long-polling encoding of packets in a new slice (see [AppendPayload]).
func EncodePayload(packets []Packet) []byte {
	return AppendPayload(make([]byte, 0, PayloadLen(packets)), packets)
}

// SplitPayload iterates over the packets of a long-polling payload without allocating (except for
// base64 binary messages). The packets' Data alias payload.
//
// As in engine.io-parser, the payload is split on every [Separator] and each part decoded with
// [DecodePacket]; the first part that fails to decode is yielded with its error and ends the iteration
// (the packets before it are valid and were yielded). An empty payload, or an empty part (a leading,
// doubled or trailing separator), is an [ErrEmptyPacket].
func SplitPayload(payload []byte) iter.Seq2[Packet, error] {
	return func(yield func(Packet, error) bool) {
		rest := payload
		for {
			part := rest
			i := bytes.IndexByte(rest, Separator)
			if i >= 0 {
				part, rest = rest[:i], rest[i+1:]
			}
			p, err := DecodePacket(part, false)
			if !yield(p, err) || err != nil || i < 0 {
				return
			}
		}
	}
}

// DecodePayload decodes a long-polling payload (see [SplitPayload]). On error it returns the packets
// decoded before the malformed one together with the error: Node's engine.io delivers those before it
// closes the session, and a server that wants the same behaviour can do so.
func DecodePayload(payload []byte) ([]Packet, error) {
	return AppendDecodedPayload(nil, payload)
}

// AppendDecodedPayload is [DecodePayload] appending to dst, so that a caller can reuse a slice.
func AppendDecodedPayload(dst []Packet, payload []byte) ([]Packet, error) {
	for p, err := range SplitPayload(payload) {
		if err != nil {
			return dst, err
		}
		dst = append(dst, p)
	}
	return dst, nil
}

// CheckMaxPayload reports [ErrPayloadTooLarge] when n bytes exceed maxPayload, the limit engine.io calls
// maxHttpBufferSize and announces in the handshake as maxPayload: a polling body larger than it is
// refused with HTTP 413, a larger WebSocket message closes the connection. A negative maxPayload
// disables the check; 0 allows only empty bodies.
func CheckMaxPayload(n, maxPayload int64) error {
	if maxPayload >= 0 && n > maxPayload {
		return ErrPayloadTooLarge
	}
	return nil
}

// ReadPayload appends everything r yields to dst, failing with [ErrPayloadTooLarge] as soon as more
// than maxPayload bytes have been read, so that a body without a Content-Length (chunked) is bounded
// too: at most maxPayload+1 bytes are read. A negative maxPayload disables the limit. Other read errors
// are returned as they are; io.EOF ends the body normally.
func ReadPayload(dst []byte, r io.Reader, maxPayload int64) ([]byte, error) {
	if maxPayload < 0 || maxPayload == math.MaxInt64 {
		buf := bytes.NewBuffer(dst)
		_, err := buf.ReadFrom(r)
		return buf.Bytes(), err
	}
	start := len(dst)
	lr := io.LimitedReader{R: r, N: maxPayload + 1}
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, 512)
		}
		n, err := lr.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if int64(len(dst)-start) > maxPayload {
			return dst[:start], ErrPayloadTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}
