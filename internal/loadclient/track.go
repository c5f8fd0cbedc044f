package loadclient

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
)

// Message texts carry "<sender>:<seq>:<unix nanos>" and optional padding,
// so a receiver knows who sent it, which one it is, and how old it is.

// AppendText appends a message text for sender/seq sent at nanos, padded
// with 'x' to at least pad bytes.
func AppendText(b []byte, sender int, seq uint64, nanos int64, pad int) []byte {
	start := len(b)
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, nanos, 10)
	for len(b)-start < pad {
		b = append(b, 'x')
	}
	return b
}

var (
	msgPrefix = []byte(`["message",`)
	textKey   = []byte(`"text":"`)
	// textKeyT is textKey without its quote: bytes.Index skips ahead to
	// candidates by their first byte, and quotes are everywhere in JSON.
	textKeyT = textKey[1:]
)

// ParseMessage recognises a `message` event array and extracts the fields
// of its text. ok is false for other events or foreign texts.
func ParseMessage(p []byte) (sender int, seq uint64, nanos int64, isMessage, ok bool) {
	var hint int
	return ParseMessageHint(p, &hint)
}

// ParseMessageHint is ParseMessage for a stream of messages of one layout
// (one connection's): *hint is where the text key was found last time, and
// is checked first. A quote inside a JSON string is escaped, so "text":"
// at any offset can only be the key.
func ParseMessageHint(p []byte, hint *int) (sender int, seq uint64, nanos int64, isMessage, ok bool) {
	if !bytes.HasPrefix(p, msgPrefix) {
		return 0, 0, 0, false, false
	}
	i := *hint
	if i <= 0 || i+len(textKey) > len(p) || string(p[i:i+len(textKey)]) != string(textKey) {
		i = bytes.Index(p[len(msgPrefix):], textKeyT)
		if i <= 0 {
			return 0, 0, 0, true, false
		}
		i += len(msgPrefix) - 1 // back to the quote
		if p[i] != '"' {
			return 0, 0, 0, true, false
		}
		*hint = i
	}
	t := p[i+len(textKey):]
	var vals [3]uint64
	for k := 0; k < 3; k++ {
		v, n := parseDigits(t)
		if n == 0 {
			return 0, 0, 0, true, false
		}
		vals[k] = v
		t = t[n:]
		if k < 2 {
			if len(t) == 0 || t[0] != ':' {
				return 0, 0, 0, true, false
			}
			t = t[1:]
		}
	}
	return int(vals[0]), vals[1], int64(vals[2]), true, true
}

// parseDigits parses the decimal digits at the start of t (at most 19 of
// them are meaningful), eight at a time where it can (SWAR).
func parseDigits(t []byte) (v uint64, n int) {
	for n+8 <= len(t) && n <= 8 {
		x := binary.LittleEndian.Uint64(t[n:]) - 0x3030303030303030
		// All eight are digits when no byte went below '0' or above '9'.
		if (x|(x+0x7676767676767676))&0x8080808080808080 != 0 {
			break
		}
		x = (x*10 + x>>8) & 0x00ff00ff00ff00ff
		x = (x*100 + x>>16) & 0x0000ffff0000ffff
		x = (x*10000 + x>>32) & 0xffffffff
		v = v*100000000 + x
		n += 8
	}
	for n < len(t) && t[n] >= '0' && t[n] <= '9' {
		v = v*10 + uint64(t[n]-'0')
		n++
	}
	return v, n
}

// maxGap bounds the missing sequence numbers one tracker remembers.
const maxGap = 1 << 16

// SeqTracker counts the deliveries one receiver got from one sender:
// unique, duplicated, and reordered (arrived after a later one). Messages
// in a room arrive in order per the contract, so gaps are rare and small.
type SeqTracker struct {
	next uint64
	gaps map[uint64]struct{}
}

// Outcome of one delivery.
type Outcome int

const (
	Unique Outcome = iota
	Reordered
	Duplicate
)

// Add records seq.
func (t *SeqTracker) Add(seq uint64) Outcome {
	switch {
	case seq == t.next:
		t.next++
		return Unique
	case seq > t.next:
		if seq-t.next <= maxGap {
			if t.gaps == nil {
				t.gaps = map[uint64]struct{}{}
			}
			for s := t.next; s < seq; s++ {
				t.gaps[s] = struct{}{}
			}
		}
		t.next = seq + 1
		return Unique
	default:
		if _, ok := t.gaps[seq]; ok {
			delete(t.gaps, seq)
			return Reordered
		}
		return Duplicate
	}
}

// Receiver tracks one connection's deliveries by sender.
type Receiver struct {
	mu     sync.Mutex
	single SeqTracker // sender 0 (fan-out's only sender): no map lookup
	others map[int]*SeqTracker
}

// Add records a delivery.
func (r *Receiver) Add(sender int, seq uint64) Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sender == 0 {
		return r.single.Add(seq)
	}
	if r.others == nil {
		r.others = map[int]*SeqTracker{}
	}
	t := r.others[sender]
	if t == nil {
		t = &SeqTracker{}
		r.others[sender] = t
	}
	return t.Add(seq)
}

// Counters are atomics updated from every connection's goroutine.
type Counters struct {
	Delivered  atomic.Int64 // message events received (all)
	Unique     atomic.Int64
	Duplicated atomic.Int64
	Reordered  atomic.Int64
	Foreign    atomic.Int64 // message events whose text is not ours
	OtherEvts  atomic.Int64 // user-joined, user-left, ...
	FirstRecv  atomic.Int64 // unix nanos of the first delivery
	LastRecv   atomic.Int64 // unix nanos of the last delivery
}

// Note records a delivery's time.
func (c *Counters) Note(now int64) {
	if c.FirstRecv.Load() == 0 {
		c.FirstRecv.CompareAndSwap(0, now)
	}
	for {
		l := c.LastRecv.Load()
		if now <= l || c.LastRecv.CompareAndSwap(l, now) {
			return
		}
	}
}
