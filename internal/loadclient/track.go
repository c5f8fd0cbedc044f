package loadclient

import (
	"bytes"
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
)

// ParseMessage recognises a `message` event array and extracts the fields
// of its text. ok is false for other events or foreign texts.
func ParseMessage(p []byte) (sender int, seq uint64, nanos int64, isMessage, ok bool) {
	if !bytes.HasPrefix(p, msgPrefix) {
		return 0, 0, 0, false, false
	}
	i := bytes.Index(p, textKey)
	if i < 0 {
		return 0, 0, 0, true, false
	}
	t := p[i+len(textKey):]
	var vals [3]uint64
	for k := 0; k < 3; k++ {
		n := 0
		for n < len(t) && t[n] >= '0' && t[n] <= '9' {
			vals[k] = vals[k]*10 + uint64(t[n]-'0')
			n++
		}
		if n == 0 {
			return 0, 0, 0, true, false
		}
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
