package sio

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eio"
)

// recoveryStore keeps, on this node, what connection state recovery needs
// when no cluster log does: the sessions of recently disconnected clients
// and the broadcasts of the recovery window (Node's SessionAwareAdapter).
type recoveryStore struct {
	window time.Duration
	prefix string // offsets of another process never match

	mu        sync.Mutex
	seq       uint64
	sessions  map[string]storedSession // by pid
	packets   []storedPacket           // in seq order
	bytes     int64                    // encoded size of packets
	lastPurge time.Time
}

type storedSession struct {
	s  Session
	at time.Time
}

type storedPacket struct {
	seq  uint64
	at   time.Time
	opts BroadcastOpts
	msgs []*eio.Message
}

func newRecoveryStore(window time.Duration) *recoveryStore {
	return &recoveryStore{window: window, prefix: newID()[:8] + "-", sessions: map[string]storedSession{}}
}

// add gives a broadcast the next offset and keeps it: build encodes the
// packet with that offset.
func (r *recoveryStore) add(opts BroadcastOpts, build func(offset string) []*eio.Message) []*eio.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	msgs := build(r.prefix + strconv.FormatUint(r.seq, 36))
	now := time.Now()
	r.packets = append(r.packets, storedPacket{seq: r.seq, at: now, opts: opts, msgs: msgs})
	r.purge(now)
	return msgs
}

// persist keeps the session of a connection that ended recoverably.
func (r *recoveryStore) persist(s Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.sessions[s.Pid] = storedSession{s: s, at: now}
	r.purge(now)
}

// take removes and returns session pid if it is still within the window and
// offset is a packet this store still has; after is that packet's sequence.
func (r *recoveryStore) take(pid, offset string) (sess *Session, after uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.sessions[pid]
	if !ok {
		return nil, 0
	}
	delete(r.sessions, pid)
	if time.Since(st.at) > r.window {
		return nil, 0
	}
	seqStr, ok := strings.CutPrefix(offset, r.prefix)
	if !ok {
		return nil, 0
	}
	seq, err := strconv.ParseUint(seqStr, 36, 64)
	if err != nil {
		return nil, 0
	}
	if _, found := slices.BinarySearchFunc(r.packets, seq, func(p storedPacket, s uint64) int { return cmpUint(p.seq, s) }); !found {
		return nil, 0 // unknown or expired offset: Node refuses to recover too
	}
	s := st.s
	return &s, seq
}

// missed returns the packets after seq that a session in rooms would have received.
func (r *recoveryStore) missed(rooms []string, after uint64) [][]*eio.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, _ := slices.BinarySearchFunc(r.packets, after+1, func(p storedPacket, s uint64) int { return cmpUint(p.seq, s) })
	var out [][]*eio.Message
	for _, p := range r.packets[i:] {
		if includes(rooms, p.opts) {
			out = append(out, p.msgs)
		}
	}
	return out
}

// includes is Node's shouldIncludePacket.
func includes(rooms []string, opts BroadcastOpts) bool {
	included := len(opts.Rooms) == 0
	for _, r := range rooms {
		if slices.Contains(opts.Except, r) {
			return false
		}
		if !included && slices.Contains(opts.Rooms, r) {
			included = true
		}
	}
	return included
}

func (r *recoveryStore) purge(now time.Time) {
	cut := 0
	for cut < len(r.packets) && now.Sub(r.packets[cut].at) > r.window {
		cut++
	}
	if cut > 0 {
		r.packets = slices.Delete(r.packets, 0, cut)
	}
	if now.Sub(r.lastPurge) < 10*time.Second {
		return
	}
	r.lastPurge = now
	for pid, s := range r.sessions {
		if now.Sub(s.at) > r.window {
			delete(r.sessions, pid)
		}
	}
}

// size is the encoded bytes of the packets kept.
func (r *recoveryStore) size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
