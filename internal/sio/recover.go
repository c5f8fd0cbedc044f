package sio

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eio"
)

// maxReplayPackets bounds what one recovered client is replayed, as the
// streams adapter bounds a restore (adapter.maxRestoreEntries): a client
// that missed more is refused recovery and gets a fresh session, as for an
// expired offset, rather than a partial history that would claim to be
// complete (socket.recovered === true with events silently missing).
const maxReplayPackets = 10000

// maxStoredSessions bounds the sessions a store keeps for recovery; beyond,
// the oldest are evicted first (counted as LimitRecoveryEvict). MAX_CONNECTIONS
// defaults to 10000 per node: ten times that lets every connection of a full
// node drop and come back several times within one window, and keeps the map
// to tens of MB at most (a Session is two ids, its rooms and its user).
const maxStoredSessions = 100_000

// recoveryStore keeps, on this node, what connection state recovery needs
// when no cluster log does: the sessions of recently disconnected clients
// and the broadcasts of the recovery window (Node's SessionAwareAdapter).
// Both are bounded: packets by maxBytes of encoding, sessions by count; the
// oldest go first, and a session whose offset went is not recovered.
type recoveryStore struct {
	window      time.Duration
	maxBytes    int64  // cap of bytes; <= 0: none
	maxSessions int    // cap of len(sessions); <= 0: none
	onEvict     func() // a packet or session evicted before its window ended
	prefix      string // offsets of another process never match

	mu       sync.Mutex
	seq      uint64
	sessions map[string]storedSession // by pid
	order    []sessionRef             // persist order; order[head:] may be live
	head     int
	persists uint64         // persist count: tells a live order entry from a stale one
	packets  []storedPacket // in seq order; packets[phead:] are kept
	phead    int
	bytes    int64 // encoded size of the kept packets
}

type storedSession struct {
	s  Session
	at time.Time
	n  uint64 // its persist number (the sessionRef that is live)
}

type sessionRef struct {
	pid string
	n   uint64
}

type storedPacket struct {
	seq  uint64
	at   time.Time
	opts BroadcastOpts
	msgs []*eio.Message
	size int64
}

// newRecoveryStore keeps window's sessions and broadcasts, at most maxBytes
// of encoded broadcasts (negative: no cap); onEvict (may be nil) is called
// once per packet or session evicted by a cap, outside the store's lock.
func newRecoveryStore(window time.Duration, maxBytes int64, onEvict func()) *recoveryStore {
	if onEvict == nil {
		onEvict = func() {}
	}
	return &recoveryStore{
		window: window, maxBytes: maxBytes, maxSessions: maxStoredSessions, onEvict: onEvict,
		prefix: newID()[:8] + "-", sessions: map[string]storedSession{},
	}
}

// add gives a broadcast the next offset and keeps it: build encodes the
// packet with that offset.
func (r *recoveryStore) add(opts BroadcastOpts, build func(offset string) []*eio.Message) []*eio.Message {
	r.mu.Lock()
	r.seq++
	msgs := build(r.prefix + strconv.FormatUint(r.seq, 36))
	var size int64
	for _, m := range msgs {
		size += int64(m.Size())
	}
	now := time.Now()
	r.packets = append(r.packets, storedPacket{seq: r.seq, at: now, opts: opts, msgs: msgs, size: size})
	r.bytes += size
	evicted := r.purge(now)
	r.mu.Unlock()
	r.evicted(evicted)
	return msgs
}

// persist keeps the session of a connection that ended recoverably.
func (r *recoveryStore) persist(s Session) {
	r.mu.Lock()
	now := time.Now()
	r.persists++
	r.sessions[s.Pid] = storedSession{s: s, at: now, n: r.persists}
	r.order = append(r.order, sessionRef{pid: s.Pid, n: r.persists})
	evicted := r.purge(now)
	r.mu.Unlock()
	r.evicted(evicted)
}

func (r *recoveryStore) evicted(n int) {
	for range n {
		r.onEvict()
	}
}

// kept is the packets kept, in seq order; r.mu must be held.
func (r *recoveryStore) kept() []storedPacket { return r.packets[r.phead:] }

// find is the index in kept of the packet of sequence seq.
func (r *recoveryStore) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(r.kept(), seq, func(p storedPacket, s uint64) int { return cmpUint(p.seq, s) })
}

// take removes and returns session pid if it is still within the window,
// offset is a packet this store still has (not expired, not evicted) and
// what the session missed since fits maxReplayPackets; after is that
// packet's sequence.
func (r *recoveryStore) take(pid, offset string) (sess *Session, after uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.sessions[pid]
	if !ok {
		return nil, 0
	}
	delete(r.sessions, pid) // its order entry is stale now
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
	i, found := r.find(seq)
	if !found {
		return nil, 0 // unknown, expired or evicted offset: Node refuses to recover too
	}
	if n := countIncluded(r.kept()[i+1:], st.s.Rooms, maxReplayPackets+1); n > maxReplayPackets {
		return nil, 0 // too much missed: a fresh session, never a partial replay
	}
	s := st.s
	return &s, seq
}

// missed returns the packets after seq that a session in rooms would have
// received; false when that history is no longer complete (the packet of
// seq was evicted since take) or exceeds maxReplayPackets: the session must
// not be recovered then.
func (r *recoveryStore) missed(rooms []string, after uint64) ([][]*eio.Message, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, found := r.find(after)
	if !found {
		return nil, false
	}
	kept := r.kept()[i+1:]
	if countIncluded(kept, rooms, maxReplayPackets+1) > maxReplayPackets {
		return nil, false
	}
	var out [][]*eio.Message
	for _, p := range kept {
		if includes(rooms, p.opts) {
			out = append(out, p.msgs)
		}
	}
	return out, true
}

// countIncluded counts the packets a session in rooms would have received,
// stopping at limit.
func countIncluded(packets []storedPacket, rooms []string, limit int) int {
	n := 0
	for _, p := range packets {
		if includes(rooms, p.opts) {
			if n++; n >= limit {
				break
			}
		}
	}
	return n
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

// purge drops the packets and sessions past the window, then the oldest
// beyond the caps, and returns how many the caps evicted; r.mu must be held.
func (r *recoveryStore) purge(now time.Time) (evicted int) {
	for r.phead < len(r.packets) {
		p := &r.packets[r.phead]
		expired := now.Sub(p.at) > r.window
		if !expired && (r.maxBytes <= 0 || r.bytes <= r.maxBytes) {
			break
		}
		if !expired {
			evicted++
		}
		r.bytes -= p.size
		*p = storedPacket{} // its messages go now
		r.phead++
	}
	// Compact once the dropped prefix dominates: amortised O(1) per packet.
	if r.phead == len(r.packets) {
		r.packets, r.phead = r.packets[:0], 0
		if cap(r.packets) > 1024 {
			r.packets = nil // a flood's array goes with it
		}
	} else if r.phead > 64 && r.phead*2 > len(r.packets) {
		r.packets, r.phead = append(make([]storedPacket, 0, 2*(len(r.packets)-r.phead)), r.packets[r.phead:]...), 0
	}

	for r.head < len(r.order) {
		ref := r.order[r.head]
		st, live := r.sessions[ref.pid]
		live = live && st.n == ref.n
		if live {
			expired := now.Sub(st.at) > r.window
			if !expired && (r.maxSessions <= 0 || len(r.sessions) <= r.maxSessions) {
				break
			}
			if !expired {
				evicted++
			}
			delete(r.sessions, ref.pid)
		}
		r.order[r.head] = sessionRef{}
		r.head++
	}
	// Taken sessions leave stale entries behind the oldest live one: compact
	// once they dominate.
	if r.head == len(r.order) {
		r.order, r.head = r.order[:0], 0
	} else if n := len(r.order) - r.head; r.head > 64 && r.head*2 > len(r.order) || n > 2*len(r.sessions)+64 {
		live := make([]sessionRef, 0, 2*len(r.sessions)+1)
		for _, ref := range r.order[r.head:] {
			if st, ok := r.sessions[ref.pid]; ok && st.n == ref.n {
				live = append(live, ref)
			}
		}
		r.order, r.head = live, 0
	}
	return evicted
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
