package adapter

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/sio"
)

// Session recovery on the streams adapter, without pausing the receive loop.
//
// RestoreSession reads the session and replays from the stream what it
// missed after its offset, while the receive loop goes on delivering to
// every other socket. Meanwhile the loop keeps the broadcasts it delivers
// that the restoring session would get in a buffer (bounded), and delivers
// none of them to its socket (Except its id). Resume, called by the
// namespace under its lock as it registers the socket, ends the restore: the
// buffered entries the replay did not have (by stream id) follow the
// replayed ones, in id order, before any later live broadcast; each entry
// reaches the socket once. If the loop had not delivered yet every entry the
// replay read (it lags behind the stream), it skips them for that socket
// until it did.
//
// A restore whose buffer overflows (restoreBuffer entries or bytes) fails:
// the client gets a fresh session, never a partial history (counted:
// RestoreOverflows).

// Bounds of what is kept for one restoring session.
const (
	restoreBufferEntries = 2048    // live entries buffered during a restore
	restoreBufferBytes   = 2 << 20 // their approximate size
	// restoreStale forgets a restore never resumed nor settled (a leak
	// guard only: the namespace always does one or the other, within its
	// connect middleware's timeout).
	restoreStale = 2 * time.Minute
)

// restore is one session restoring on this node: from RestoreSession to
// Resume (or Settle), then, resumed, until the receive loop delivered
// everything up to upTo.
type restore struct {
	pid, sid string
	offset   string
	sess     *sio.Session
	since    time.Time

	rooms    map[string]bool // the session's rooms, with the joins and leaves that came meanwhile
	initial  []string        // the session's rooms as saved
	order    []string        // rooms in join order, once a join or leave came (nil: initial)
	buf      []bufferedEntry
	bufBytes int
	failed   bool // the buffer overflowed

	scanned  bool     // the replay is done
	upTo     string   // the replay read the stream up to here (or the offset, later)
	replayed []string // ids of the entries replayed, ascending
	resumed  bool
}

type bufferedEntry struct {
	id   string
	data []any
}

// restoreSet is a namespace's restores.
type restoreSet struct {
	n    atomic.Int32 // len(list), read without mu on the receive loop
	mu   sync.Mutex   // innermost: held with nothing else taken inside
	list []*restore
}

// restoreStats are a node's restore counters.
type restoreStats struct {
	active    atomic.Int64 // restores not resumed yet
	records   atomic.Int64 // restores kept, resumed or not
	overflows atomic.Uint64
	abandoned atomic.Uint64
}

// Restoring is the number of sessions being restored on this node now (a
// gauge).
func (r *RedisStreamsCluster) Restoring() int { return int(r.rstats.active.Load()) }

// RestoreOverflows counts the restores that failed because what arrived
// during the restore went past its buffer (restoreBufferEntries or
// restoreBufferBytes) or the whole replay past maxRestoreEntries: those
// clients got a fresh session.
func (r *RedisStreamsCluster) RestoreOverflows() uint64 { return r.rstats.overflows.Load() }

// RestoresAbandoned counts the restores forgotten after restoreStale
// without the namespace resuming or settling them (should stay 0).
func (r *RedisStreamsCluster) RestoresAbandoned() uint64 { return r.rstats.abandoned.Load() }

func (r *RedisStreamsCluster) bufferLimits() (int, int) {
	entries, bytes := r.restoreBufEntries, r.restoreBufBytes
	if entries <= 0 {
		entries = restoreBufferEntries
	}
	if bytes <= 0 {
		bytes = restoreBufferBytes
	}
	return entries, bytes
}

// removeLocked takes x out of the set; rs.mu held.
func (rs *restoreSet) removeLocked(st *restoreStats, x *restore) {
	i := slices.Index(rs.list, x)
	if i < 0 {
		return
	}
	rs.list = slices.Delete(rs.list, i, i+1)
	rs.n.Store(int32(len(rs.list)))
	st.records.Add(-1)
	if !x.resumed {
		st.active.Add(-1)
	}
}

// restoringLocked is the restore of pid not resumed yet; rs.mu held.
func (rs *restoreSet) restoringLocked(pid string) *restore {
	for _, x := range rs.list {
		if x.pid == pid && !x.resumed {
			return x
		}
	}
	return nil
}

// deliver delivers a broadcast from the stream to this node's sockets
// (receive loop), minus the sockets being restored, which get it through
// their restore.
func (l *streamLink) deliver(p sio.Packet, opts sio.BroadcastOpts) {
	if l.rs.n.Load() > 0 {
		opts = l.onBroadcast(p, opts)
	}
	l.local.Deliver(p, opts)
}

// onBroadcast buffers p for the restores it concerns and returns opts
// without their sockets.
func (l *streamLink) onBroadcast(p sio.Packet, opts sio.BroadcastOpts) sio.BroadcastOpts {
	maxEntries, maxBytes := l.r.bufferLimits()
	rs := &l.rs
	var except []string
	rs.mu.Lock()
	for _, x := range rs.list {
		if x.resumed {
			// Registered: it got what the replay read; the loop, lagging
			// behind the replay, must not send those again.
			if !idLess(x.offset, p.Offset) || x.wasReplayed(p.Offset) {
				except = append(except, x.sid)
			}
			continue
		}
		except = append(except, x.sid)
		if x.failed || opts.Volatile || !idLess(x.offset, p.Offset) || !selects(x.rooms, opts) {
			continue
		}
		size := approxSize(p.Data, 0)
		if len(x.buf) >= maxEntries || x.bufBytes+size > maxBytes {
			x.failed, x.buf, x.bufBytes = true, nil, 0
			l.r.rstats.overflows.Add(1)
			continue
		}
		x.buf = append(x.buf, bufferedEntry{id: p.Offset, data: p.Data})
		x.bufBytes += size
	}
	rs.mu.Unlock()
	return withExcept(opts, except)
}

func withExcept(opts sio.BroadcastOpts, except []string) sio.BroadcastOpts {
	if len(except) > 0 {
		opts.Except = append(append(make([]string, 0, len(opts.Except)+len(except)), opts.Except...), except...)
	}
	return opts
}

// restoringSockets are the ids of the sockets not resumed yet (a broadcast
// with acks, which is not recovered, skips them).
func (l *streamLink) restoringSockets() []string {
	if l.rs.n.Load() == 0 {
		return nil
	}
	l.rs.mu.Lock()
	defer l.rs.mu.Unlock()
	var out []string
	for _, x := range l.rs.list {
		if !x.resumed {
			out = append(out, x.sid)
		}
	}
	return out
}

// join and leave apply a socketsJoin/Leave from the stream (receive loop),
// to the restoring sessions it selects too: they register with those rooms.
func (l *streamLink) join(opts sio.BroadcastOpts, rooms []string) {
	l.onRooms(opts, rooms, true)
	l.local.Join(opts, rooms)
}

func (l *streamLink) leave(opts sio.BroadcastOpts, rooms []string) {
	l.onRooms(opts, rooms, false)
	l.local.Leave(opts, rooms)
}

func (l *streamLink) onRooms(opts sio.BroadcastOpts, rooms []string, join bool) {
	if l.rs.n.Load() == 0 {
		return
	}
	l.rs.mu.Lock()
	defer l.rs.mu.Unlock()
	for _, x := range l.rs.list {
		if x.resumed || !selects(x.rooms, opts) {
			continue
		}
		if x.order == nil {
			x.order = slices.Clone(x.initial)
		}
		for _, room := range rooms {
			switch {
			case join && !x.rooms[room]:
				x.rooms[room] = true
				x.order = append(x.order, room)
			case !join && room != x.sid && x.rooms[room]:
				delete(x.rooms, room)
				x.order = slices.DeleteFunc(x.order, func(r string) bool { return r == room })
			}
		}
	}
}

// sweepRestores (receive loop, after a batch) forgets the resumed restores
// the loop has delivered past, and the abandoned ones.
func (r *RedisStreamsCluster) sweepRestores() {
	if r.rstats.records.Load() == 0 {
		return
	}
	last, _ := r.lastDelivered.Load().(string)
	for _, l := range r.allLinks() {
		if l.rs.n.Load() == 0 {
			continue
		}
		l.rs.mu.Lock()
		for _, x := range slices.Clone(l.rs.list) {
			switch {
			case x.resumed && last != "" && !idLess(last, x.upTo):
				l.rs.removeLocked(&r.rstats, x)
			case time.Since(x.since) > restoreStale:
				if !x.resumed {
					r.rstats.abandoned.Add(1)
				}
				l.rs.removeLocked(&r.rstats, x)
			}
		}
		l.rs.mu.Unlock()
	}
}

func (x *restore) wasReplayed(id string) bool {
	_, found := slices.BinarySearchFunc(x.replayed, id, cmpID)
	return found
}

func cmpID(a, b string) int {
	switch {
	case idLess(a, b):
		return -1
	case idLess(b, a):
		return 1
	}
	return 0
}

// selects reports whether a socket in rooms is among those opts selects.
func selects(rooms map[string]bool, o sio.BroadcastOpts) bool {
	in := len(o.Rooms) == 0
	for _, r := range o.Rooms {
		if rooms[r] {
			in = true
			break
		}
	}
	for _, r := range o.Except {
		if rooms[r] {
			return false
		}
	}
	return in
}

// approxSize estimates the memory a packet's data holds (bounded depth).
func approxSize(v any, depth int) int {
	if depth > 32 {
		return 16
	}
	switch x := v.(type) {
	case string:
		return 16 + len(x)
	case []byte:
		return 24 + len(x)
	case []any:
		n := 24
		for _, e := range x {
			n += approxSize(e, depth+1)
		}
		return n
	case map[string]any:
		n := 48
		for k, e := range x {
			n += 16 + len(k) + approxSize(e, depth+1)
		}
		return n
	}
	return 16
}

// RestoreSession implements sio.LogLink: the session of pid and the
// broadcasts it missed after offset, read from the stream without holding
// the receive loop. The restore goes on until Resume or Settle.
func (l *streamLink) RestoreSession(pid, offset string) (*sio.Session, error) {
	if !offsetRE.MatchString(offset) {
		return nil, nil
	}
	r := l.r
	key := r.keyPfx + pid
	// This node's own pending write of the session (its disconnect) first.
	r.writer.flush(key)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var get *redis.StringCmd
	var at *redis.XMessageSliceCmd
	_, _ = r.recovery.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.GetDel(ctx, key)
		at = p.XRange(ctx, r.stream, offset, offset)
		return nil
	})
	raw, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore session: %w", err)
	}
	r.mu.Lock()
	delete(r.live, pid)
	r.mu.Unlock()
	if found, err := at.Result(); err != nil || len(found) == 0 {
		return nil, err // the offset left the stream: too old to recover
	}
	dec, err := base64.StdEncoding.DecodeString(string(raw))
	if err != nil {
		return nil, nil
	}
	var ws wireSession
	if err := msgpack.Unmarshal(dec, &ws); err != nil {
		return nil, nil
	}
	s := &sio.Session{Sid: ws.Sid, Pid: ws.Pid, Rooms: ws.Rooms, Data: ws.Data, Missed: []any{}}
	x := &restore{pid: pid, sid: ws.Sid, offset: offset, sess: s, since: time.Now(),
		rooms: map[string]bool{ws.Sid: true}, initial: slices.Clone(ws.Rooms)}
	replayRooms := map[string]bool{}
	for _, room := range ws.Rooms {
		replayRooms[room] = true
		x.rooms[room] = true
	}

	// From here every broadcast the receive loop delivers is buffered for
	// the session (deliverMu: none is half delivered now); the replay reads
	// what the stream has after offset.
	r.deliverMu.Lock()
	l.rs.mu.Lock()
	if old := l.rs.restoringLocked(pid); old != nil { // a concurrent restore of the same session
		l.rs.removeLocked(&r.rstats, old)
	}
	l.rs.list = append(l.rs.list, x)
	l.rs.n.Store(int32(len(l.rs.list)))
	r.rstats.active.Add(1)
	r.rstats.records.Add(1)
	l.rs.mu.Unlock()
	missed, ids, inTail := r.tail.after(offset, l.nsp, replayRooms)
	r.deliverMu.Unlock()

	var last string
	if inTail {
		r.tail.hits.Add(1)
	} else {
		r.tail.misses.Add(1)
		missed, ids, last, err = l.replay(ctx, offset, replayRooms)
	}
	l.rs.mu.Lock()
	defer l.rs.mu.Unlock()
	if missed == nil || err != nil || !slices.Contains(l.rs.list, x) {
		l.rs.removeLocked(&r.rstats, x)
		return nil, err
	}
	x.scanned, x.replayed, x.upTo = true, ids, offset
	if last != "" && idLess(offset, last) {
		x.upTo = last
	}
	s.Missed = missed
	return s, nil
}

// replay reads the stream after offset to its end: the broadcasts a
// session in rooms missed (each its data with its id appended), their ids,
// and the id of the last entry read. nil: not restorable (too much missed,
// or the stream not read to the end).
func (l *streamLink) replay(ctx context.Context, offset string, rooms map[string]bool) (missed []any, ids []string, last string, err error) {
	r := l.r
	missed = []any{}
	from := nextOffset(offset)
	for read := 0; ; {
		if read >= r.restoreScanLimit() {
			return nil, nil, "", nil // not read to the end: never a partial history
		}
		entries, err := r.recovery.XRangeN(ctx, r.stream, from, "+", 500).Result()
		if err != nil {
			return nil, nil, "", err
		}
		for _, e := range entries {
			read++
			from, last = nextOffset(e.ID), e.ID
			if nsp, _ := e.Values["nsp"].(string); nsp != l.nsp {
				continue
			}
			if t, _ := e.Values["type"].(string); t != "3" {
				continue
			}
			d, err := decodeStream(e.Values["data"])
			if err != nil || d.Packet.Type != 2 || d.Packet.ID != nil || d.RequestID != "" || d.Opts.Flags["volatile"] == true || !includes(rooms, d.Opts) {
				continue
			}
			if len(missed) == maxRestoreEntries {
				return nil, nil, "", nil // too much missed: a fresh session, never a partial history
			}
			missed = append(missed, append(d.Packet.Data, e.ID))
			ids = append(ids, e.ID)
		}
		if len(entries) < 500 {
			return missed, ids, last, nil
		}
	}
}

// Resume implements sio.LogLink: called under the namespace's lock as the
// restored socket is registered, it ends the restore and returns the
// broadcasts that came live meanwhile, to send after the replayed ones; it
// sets the session's rooms to those it registers with. false: the restore
// failed meanwhile (its buffer overflowed): register a fresh session.
func (l *streamLink) Resume(pid string) ([]any, bool) {
	r := l.r
	rs := &l.rs
	rs.mu.Lock()
	defer rs.mu.Unlock()
	x := rs.restoringLocked(pid)
	if x == nil {
		return nil, false
	}
	if x.failed || !x.scanned {
		rs.removeLocked(&r.rstats, x)
		return nil, false
	}
	slices.SortStableFunc(x.buf, func(a, b bufferedEntry) int { return cmpID(a.id, b.id) })
	var more []any
	prev := ""
	for _, e := range x.buf {
		if e.id == prev || x.wasReplayed(e.id) {
			continue
		}
		prev = e.id
		more = append(more, append(append(make([]any, 0, len(e.data)+1), e.data...), e.id))
	}
	if len(x.replayed)+len(more) > maxRestoreEntries {
		r.rstats.overflows.Add(1)
		rs.removeLocked(&r.rstats, x)
		return nil, false
	}
	if x.order != nil {
		x.sess.Rooms = x.order // with what socketsJoin/Leave changed meanwhile
	}
	x.buf, x.bufBytes = nil, 0
	if last, _ := r.lastDelivered.Load().(string); last != "" && !idLess(last, x.upTo) {
		rs.removeLocked(&r.rstats, x) // the loop is past the replay: nothing to skip
		return more, true
	}
	x.resumed, x.since = true, time.Now()
	r.rstats.active.Add(-1)
	return more, true
}

// Settle implements sio.LogLink: the restore of pid ends without the socket
// registered (refused): what was buffered is dropped.
func (l *streamLink) Settle(pid string) {
	l.rs.mu.Lock()
	defer l.rs.mu.Unlock()
	if x := l.rs.restoringLocked(pid); x != nil {
		l.rs.removeLocked(&l.r.rstats, x)
	}
}
