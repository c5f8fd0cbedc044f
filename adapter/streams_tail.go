package adapter

import (
	"slices"
	"sync/atomic"
)

// The stream's tail in memory: the broadcasts this node's receive loop
// delivered lately, decoded, so that a session restore replays from here
// rather than reading the stream again from Redis and decoding every entry
// (a storm of 200 restores read and decoded ~100k entries, and took the
// CPU and the Redis connections the live traffic needed).
//
// Only the receive loop appends, and a restore takes its snapshot, with
// deliverMu held: an entry is in the snapshot (delivered before) or in the
// restore's buffer (after), never both, never neither. A restore whose
// offset is not in the tail (too old, a node just started, after an outage
// of the loop) replays from Redis, as before.

// Default bound of the tail when StreamsOptions.TailBytes is 0.
const defaultTailBytes = 16 << 20

type tailEntry struct {
	id, nsp string
	data    []any
	opts    wireOpts
	size    int
}

// streamTail holds replayable broadcasts (events without an ack, not
// volatile) in stream order, bounded by entries and approximate bytes, the
// oldest dropped first. deliverMu guards everything but the counters.
type streamTail struct {
	list       []tailEntry
	bytes      int
	maxEntries int // the stream's MAXLEN: what the stream itself no longer has is not replayed
	maxBytes   int // < 0: no tail

	bytesNow atomic.Int64  // bytes, for the metric
	hits     atomic.Uint64 // restores replayed from the tail
	misses   atomic.Uint64 // restores that read Redis
}

// add keeps a delivered broadcast (deliverMu held). The loop delivers in
// stream order, except this node's own messages, which pass a held inbox:
// those go in their place.
func (t *streamTail) add(e tailEntry) {
	if t.maxBytes < 0 || t.maxEntries <= 0 {
		return
	}
	e.size = 64 + len(e.id) + len(e.nsp) + approxSize(e.data, 0)
	for _, r := range e.opts.Rooms {
		e.size += 16 + len(r)
	}
	for _, r := range e.opts.Except {
		e.size += 16 + len(r)
	}
	if e.size > t.maxBytes {
		t.reset() // one entry past the bound: no gap may be kept
		return
	}
	if n := len(t.list); n == 0 || idLess(t.list[n-1].id, e.id) {
		t.list = append(t.list, e)
	} else {
		i, found := slices.BinarySearchFunc(t.list, e.id, func(x tailEntry, id string) int { return cmpID(x.id, id) })
		if found {
			return
		}
		t.list = slices.Insert(t.list, i, e)
	}
	t.bytes += e.size
	drop := 0
	for len(t.list)-drop > t.maxEntries || t.bytes > t.maxBytes {
		t.bytes -= t.list[drop].size
		t.list[drop] = tailEntry{}
		drop++
	}
	if drop > 0 {
		t.list = t.list[drop:]
	}
	t.bytesNow.Store(int64(t.bytes))
}

// reset forgets the tail: the loop may have missed entries (deliverMu held).
func (t *streamTail) reset() {
	t.list, t.bytes = nil, 0
	t.bytesNow.Store(0)
}

// after returns what a session of nsp in rooms missed after offset, each
// its data with its id appended, and their ids; ok false when offset is not
// in the tail (deliverMu held).
func (t *streamTail) after(offset, nsp string, rooms map[string]bool) (missed []any, ids []string, ok bool) {
	i, found := slices.BinarySearchFunc(t.list, offset, func(x tailEntry, id string) int { return cmpID(x.id, id) })
	if !found {
		return nil, nil, false
	}
	missed = []any{}
	for _, e := range t.list[i+1:] {
		if e.nsp != nsp || !includes(rooms, e.opts) {
			continue
		}
		if len(missed) == maxRestoreEntries {
			return nil, nil, true // too much missed: a fresh session
		}
		missed = append(missed, append(append(make([]any, 0, len(e.data)+1), e.data...), e.id))
		ids = append(ids, e.id)
	}
	return missed, ids, true
}

// TailBytes is the approximate memory of the stream's tail kept for
// restores (a gauge).
func (r *RedisStreamsCluster) TailBytes() int { return int(r.tail.bytesNow.Load()) }

// RestoreReads counts the session restores replayed from the tail in
// memory and those that read the stream from Redis.
func (r *RedisStreamsCluster) RestoreReads() (memory, redis uint64) {
	return r.tail.hits.Load(), r.tail.misses.Load()
}
