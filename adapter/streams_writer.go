package adapter

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// writeQueueMax bounds the writes a streams node has queued (session writes
// and the messages it answers other nodes with); past it a write is dropped
// and counted (WriteQueueDropped).
const writeQueueMax = 16384

// writeBatch is the most writes one round trip (a pipeline) carries.
const writeBatch = 256

// streamWriter carries out a streams node's Redis writes off the receive
// loop and off the sockets' goroutines: the sessions it keeps (SET, DEL)
// and the messages it answers with (heartbeats, fetchSockets and
// serverSideEmit responses, the counts and acks of broadcasts with acks).
// One worker goroutine writes them in order, in pipelines of up to
// writeBatch, while there is something to write (none otherwise), so what
// the receive loop answers costs a bounded number of goroutines whatever the
// number of recipients.
//
// A session's pending write is replaced by a newer one of the same session
// (coalesced: the latest state is what counts); writes of one session are
// carried out in the order they were made.
type streamWriter struct {
	c       redis.UniversalClient
	onError func(error)
	max     int // 0: writeQueueMax

	mu       sync.Mutex
	fifo     []writeItem              // in order; a session item whose write was taken (flush) is skipped
	sessions map[string]*sessionOp    // pending session writes, by key
	inflight map[string]chan struct{} // session keys the worker is writing now: closed once written
	depth    int                      // writes waiting (not taken yet)
	running  bool                     // the worker goroutine runs

	dropped atomic.Uint64
	lastLog atomic.Int64 // unix nanos of the last drop logged
}

// writeItem is a session write (key set) or a message to add to the stream.
type writeItem struct {
	key string
	msg *outMessage
}

type outMessage struct {
	l    *streamLink
	typ  int
	data any // nil: none
}

// sessionOp is a session write: SET value (with ttl), or DEL when del.
type sessionOp struct {
	del   bool
	value []byte
	ttl   time.Duration
}

func newStreamWriter(c redis.UniversalClient, onError func(error)) *streamWriter {
	return &streamWriter{c: c, onError: onError, sessions: map[string]*sessionOp{}, inflight: map[string]chan struct{}{}}
}

func (w *streamWriter) limit() int {
	if w.max > 0 {
		return w.max
	}
	return writeQueueMax
}

// session queues a write of session key (coalesced with a pending one).
func (w *streamWriter) session(key string, op *sessionOp) {
	w.mu.Lock()
	if _, ok := w.sessions[key]; ok {
		w.sessions[key] = op
		w.mu.Unlock()
		return
	}
	if w.depth >= w.limit() {
		w.mu.Unlock()
		w.drop()
		return
	}
	w.sessions[key] = op
	w.fifo = append(w.fifo, writeItem{key: key})
	w.depth++
	w.startLocked()
	w.mu.Unlock()
}

// message queues a message of l for the stream.
func (w *streamWriter) message(l *streamLink, typ int, data any) {
	w.mu.Lock()
	if w.depth >= w.limit() {
		w.mu.Unlock()
		w.drop()
		return
	}
	w.fifo = append(w.fifo, writeItem{msg: &outMessage{l: l, typ: typ, data: data}})
	w.depth++
	w.startLocked()
	w.mu.Unlock()
}

func (w *streamWriter) drop() {
	w.dropped.Add(1)
	now := time.Now().UnixNano()
	if last := w.lastLog.Load(); now-last > int64(time.Second) && w.lastLog.CompareAndSwap(last, now) {
		w.onError(fmt.Errorf("cluster: redis write queue full (%d): write dropped", w.limit()))
	}
}

func (w *streamWriter) startLocked() {
	if !w.running {
		w.running = true
		go w.run()
	}
}

// run writes until nothing is left, then ends.
func (w *streamWriter) run() {
	for {
		batch, keys, wait := w.take()
		if wait != nil { // the next write is of a session a flush is writing
			select {
			case <-wait:
			case <-time.After(2 * publishTimeout):
			}
			continue
		}
		if len(batch) == 0 {
			return
		}
		w.write(batch)
		w.mu.Lock()
		for _, k := range keys {
			close(w.inflight[k])
			delete(w.inflight, k)
		}
		w.mu.Unlock()
	}
}

// take removes up to writeBatch writes from the queue (none and no wait:
// the worker ends, running is cleared under the same lock). wait is set
// when the first write is of a session whose older write a flush is
// carrying out: the worker waits for it first.
func (w *streamWriter) take() (batch []pendingWrite, keys []string, wait chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for n < len(w.fifo) && len(batch) < writeBatch {
		it := w.fifo[n]
		w.fifo[n] = writeItem{}
		n++
		if it.msg != nil {
			batch = append(batch, pendingWrite{msg: it.msg})
			w.depth--
			continue
		}
		op, ok := w.sessions[it.key]
		if !ok {
			continue // flushed meanwhile
		}
		if ch, busy := w.inflight[it.key]; busy {
			// An older write of it is under way (flush): keep this one, in
			// its place, for after it.
			n--
			w.fifo[n] = it
			if len(batch) == 0 {
				wait = ch
			}
			break
		}
		delete(w.sessions, it.key)
		w.inflight[it.key] = make(chan struct{})
		keys = append(keys, it.key)
		batch = append(batch, pendingWrite{key: it.key, op: op})
		w.depth--
	}
	w.fifo = w.fifo[n:]
	if len(w.fifo) == 0 {
		w.fifo = nil
	}
	if len(batch) == 0 && wait == nil {
		w.running = false
	}
	return batch, keys, wait
}

type pendingWrite struct {
	key string
	op  *sessionOp
	msg *outMessage
}

// write carries out a batch in one pipeline, bounded by publishTimeout.
func (w *streamWriter) write(batch []pendingWrite) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	_, err := w.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, b := range batch {
			switch {
			case b.msg != nil:
				values, err := b.msg.l.entryValues(b.msg.typ, b.msg.data)
				if err != nil {
					w.onError(err)
					continue
				}
				r := b.msg.l.r
				p.XAdd(ctx, &redis.XAddArgs{Stream: r.stream, MaxLen: r.maxLen, Approx: true, Values: values})
			case b.op.del:
				p.Del(ctx, b.key)
			default:
				p.Set(ctx, b.key, b.op.value, b.op.ttl)
			}
		}
		return nil
	})
	if err != nil {
		w.onError(fmt.Errorf("cluster: %d redis writes: %w", len(batch), err))
	}
}

// flush carries out at once the pending write of session key, if any,
// after the one under way (bounded: each write waits publishTimeout at
// most): what a caller reads or writes of that session next comes after.
func (w *streamWriter) flush(key string) {
	for range 3 {
		w.mu.Lock()
		if ch, busy := w.inflight[key]; busy {
			w.mu.Unlock()
			select {
			case <-ch:
			case <-time.After(2 * publishTimeout):
			}
			continue
		}
		op, ok := w.sessions[key]
		if !ok {
			w.mu.Unlock()
			return
		}
		delete(w.sessions, key)
		w.depth--
		ch := make(chan struct{})
		w.inflight[key] = ch
		w.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		var err error
		if op.del {
			err = w.c.Del(ctx, key).Err()
		} else {
			err = w.c.Set(ctx, key, op.value, op.ttl).Err()
		}
		cancel()
		if err != nil {
			w.onError(err)
		}
		w.mu.Lock()
		close(ch)
		delete(w.inflight, key)
		w.mu.Unlock()
		return
	}
}

// queued is the number of writes waiting.
func (w *streamWriter) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.depth
}

// entryValues are the fields of a message of this node on the stream.
func (l *streamLink) entryValues(typ int, data any) ([]any, error) {
	values := []any{"uid", l.r.uid, "nsp", l.nsp, "type", strconv.Itoa(typ)}
	if data != nil {
		enc, err := encodeMessage(typ, data)
		if err != nil {
			return nil, err
		}
		values = append(values, "data", enc)
	}
	return values, nil
}

// WriteQueueDepth is the number of Redis writes this node has queued
// (session writes and answers to other nodes; a gauge, capped at 16384).
func (r *RedisStreamsCluster) WriteQueueDepth() int { return r.writer.queued() }

// WriteQueueDropped counts the Redis writes dropped because the queue was
// full.
func (r *RedisStreamsCluster) WriteQueueDropped() uint64 { return r.writer.dropped.Load() }
