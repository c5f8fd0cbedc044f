package sioparser

import (
	"bytes"
	"math"
)

// Decoder decodes the Socket.IO packets of one connection: a text message is a packet, except that a
// BINARY_EVENT or BINARY_ACK announcing n attachments is complete only once the next n binary
// messages have been added. It follows socket.io-parser's Decoder (decodeString, isPayloadValid,
// reconstructPacket) with the deliberate differences listed on the methods.
//
// The zero value is ready to use with the default limits. A Decoder is not safe for concurrent use.
// After an error the decoder is reset (a server closes the connection anyway).
type Decoder struct {
	// MaxAttachments bounds the attachment count a binary packet may announce; 0 means
	// DefaultMaxAttachments, a negative value refuses every binary packet.
	MaxAttachments int
	// MaxDepth bounds the nesting of arrays and objects in payloads; 0 means DefaultMaxDepth.
	// Values above MaxDepthLimit are lowered to it.
	MaxDepth int

	pending Packet // binary packet waiting for attachments
	want    int    // attachments pending still needs in total; 0 when not reconstructing
	lastNsp string // last custom namespace decoded, reused to avoid allocating it again
}

// AddText decodes one text message. It returns the packet and true when the packet is complete, or
// false when it is a binary packet waiting for its attachments (see [Decoder.AddBinary]).
//
// The returned packet's Data aliases text: keep text unmodified while the packet is in use, or copy
// Data. (A binary packet's data is copied, since the caller reads its attachments in between.)
//
// Validation, in socket.io-parser's order: a type digit 0–6; for binary types an attachment count of
// ASCII digits followed by "-", between 1 and MaxAttachments; an optional namespace starting with "/"
// and ending at the first ","; an optional ack id of ASCII digits (at most 2^64-1); then the data,
// which must be one JSON value (trailing white space allowed, trailing garbage not) of the kind the
// type requires: CONNECT an object or nothing, DISCONNECT nothing, EVENT and BINARY_EVENT a non-empty
// array whose first element is a number or a string that is not a reserved event name, ACK and
// BINARY_ACK an array, CONNECT_ERROR an object or a string. In a binary packet every object whose
// "_placeholder" member is true must have a "num" member that is an integer below the attachment
// count.
//
// Deliberately stricter than socket.io-parser (which reads these through JavaScript's Number()): an
// empty message, a first character that is not a digit (" " reads as CONNECT there), an attachment
// count or ack id that is not plain digits (" 1", "1e0", "0x1"), an ack id beyond uint64, data
// starting with white space (read as ack id 0 there), a missing data for EVENT, ACK, CONNECT_ERROR and
// the binary types, and a placeholder num that is not an integer are all errors here.
func (d *Decoder) AddText(text []byte) (Packet, bool, error) {
	if d.want > 0 {
		d.Reset()
		return Packet{}, false, ErrUnexpectedText
	}
	p, n, err := d.decodeText(text)
	if err != nil {
		return Packet{}, false, err
	}
	if n == 0 {
		return p, true, nil
	}
	p.Data = bytes.Clone(p.Data)
	p.Attachments = make([][]byte, 0, n)
	d.pending, d.want = p, n
	return Packet{}, false, nil
}

// AddBinary adds the next attachment of the binary packet being reconstructed. It returns the packet
// and true with the last attachment, false before. The decoder keeps b as it is, without copying: the
// caller must not reuse its memory. A binary message when no binary packet is pending is an error
// ([ErrUnexpectedBinary]).
func (d *Decoder) AddBinary(b []byte) (Packet, bool, error) {
	if d.want == 0 {
		return Packet{}, false, ErrUnexpectedBinary
	}
	d.pending.Attachments = append(d.pending.Attachments, b)
	if len(d.pending.Attachments) < d.want {
		return Packet{}, false, nil
	}
	p := d.pending
	d.pending, d.want = Packet{}, 0
	return p, true, nil
}

// Pending reports how many attachments the decoder still waits for (0 when it is not reconstructing
// a binary packet).
func (d *Decoder) Pending() int { return d.want - len(d.pending.Attachments) }

// Reset drops a partially received binary packet (socket.io-parser's destroy).
func (d *Decoder) Reset() { d.pending, d.want = Packet{}, 0 }

// decodeText parses one text packet (socket.io-parser's decodeString) and returns it with the number
// of attachments it announces.
func (d *Decoder) decodeText(text []byte) (Packet, int, error) {
	if len(text) == 0 {
		return Packet{}, 0, ErrEmptyPacket
	}
	c := text[0]
	if c < '0' || c > '6' {
		return Packet{}, 0, ErrUnknownType
	}
	p := Packet{Type: PacketType(c - '0'), Nsp: "/"}
	i := 1

	// attachments
	n := 0
	if p.Type.IsBinary() {
		maxAtt := d.MaxAttachments
		if maxAtt == 0 {
			maxAtt = DefaultMaxAttachments
		}
		j := i
		for j < len(text) && text[j] != '-' {
			c := text[j]
			if c < '0' || c > '9' {
				return Packet{}, 0, ErrIllegalAttachments
			}
			if n < 1<<20 { // stop growing far above any bound: no overflow
				n = n*10 + int(c-'0')
			}
			j++
		}
		if j == i || j == len(text) {
			return Packet{}, 0, ErrIllegalAttachments // no digits, or no "-"
		}
		if n < 1 {
			return Packet{}, 0, ErrIllegalAttachments
		}
		if n > maxAtt {
			return Packet{}, 0, ErrTooManyAttachments
		}
		i = j + 1
	}

	// namespace
	if i < len(text) && text[i] == '/' {
		j := bytes.IndexByte(text[i:], ',')
		var nsp []byte
		if j < 0 {
			nsp, i = text[i:], len(text)
		} else {
			nsp, i = text[i:i+j], i+j+1
		}
		switch {
		case len(nsp) == 1: // "/"
		case string(nsp) == d.lastNsp:
			p.Nsp = d.lastNsp
		default:
			d.lastNsp = string(nsp)
			p.Nsp = d.lastNsp
		}
	}

	// ack id
	if i < len(text) && text[i] >= '0' && text[i] <= '9' {
		var id uint64
		for i < len(text) && text[i] >= '0' && text[i] <= '9' {
			digit := uint64(text[i] - '0')
			if id > (math.MaxUint64-digit)/10 {
				return Packet{}, 0, ErrInvalidID
			}
			id = id*10 + digit
			i++
		}
		p.ID, p.HasID = id, true
	}

	// data
	if i < len(text) {
		p.Data = text[i:]
	}
	if err := checkData(p.Type, p.Data, n, clampDepth(d.MaxDepth)); err != nil {
		return Packet{}, 0, err
	}
	return p, n, nil
}
