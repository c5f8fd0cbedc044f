package adapter

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/sio"
)

// What both Redis clusters share to ask the other nodes (sio.Requester) and
// to answer them: pending requests, the ordering of the receive loop while a
// disconnectSockets request is carried out, and small helpers.

// RequestsTimeout bounds a request's wait for the other nodes' answers when
// its context has no deadline (Node's requestsTimeout default).
const RequestsTimeout = 5 * time.Second

// Disconnect batches: see requestCore.disconnect.
const (
	barrierTimeout = 500 * time.Millisecond // one socket's broadcasts coming back
	holdMax        = 2 * time.Second        // other nodes' messages held back, at most
)

func requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, RequestsTimeout)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// marshalJSON encodes as Node's JSON.stringify does (no HTML escaping).
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// requestCore is embedded by both clusters.
type requestCore struct {
	uid     string
	onError func(error)

	inbox   inbox
	batches serial    // disconnect batches, one at a time, off the receive loop
	seen    watermark // how far the receive loop got (barriers)

	decodeErrs atomic.Uint64 // other nodes' messages dropped: they did not decode (decode.go)

	serialRefused atomic.Uint64 // disconnect batches and server-side calls refused: their queue was full

	pmu     sync.Mutex
	pending map[string]*pendingRequest
	acking  map[string]*ackRequest // this node's broadcasts with acks, by request id
}

func newRequestCore(onError func(error)) requestCore {
	return requestCore{uid: randomUID(), onError: onError, pending: map[string]*pendingRequest{}, acking: map[string]*ackRequest{}}
}

// ackRequest is one of this node's broadcasts with acks: the other nodes
// answer with their number of recipients, then each recipient's ack, until
// the request's context ends (Node keeps it for the broadcast's timeout).
type ackRequest struct {
	counted map[string]bool // streams: the nodes expected to count, by uid (nil: any)
	onCount func(int)
	onAck   func(any)
}

// registerAck records a broadcast with acks before it is sent, until ctx
// ends; from (streams) names the nodes expected to answer. drop forgets it
// at once (not sent).
func (c *requestCore) registerAck(ctx context.Context, from map[string]bool, onCount func(int), onAck func(any)) (id string, drop func()) {
	id = randomID()
	a := &ackRequest{counted: from, onCount: onCount, onAck: onAck}
	c.pmu.Lock()
	c.acking[id] = a
	c.pmu.Unlock()
	forget := func() {
		c.pmu.Lock()
		delete(c.acking, id)
		c.pmu.Unlock()
	}
	stop := context.AfterFunc(ctx, forget)
	return id, func() {
		stop()
		forget()
	}
}

// ackCount applies a node's number of recipients (from: its uid, streams only).
func (c *requestCore) ackCount(id, from string, n int) {
	c.pmu.Lock()
	a := c.acking[id]
	if a != nil && a.counted != nil {
		if seen, expected := a.counted[from]; !expected || seen {
			a = nil // not asked, or counted already
		} else {
			a.counted[from] = true
		}
	}
	c.pmu.Unlock()
	if a != nil {
		a.onCount(n)
	}
}

// ackArg applies one recipient's ack argument.
func (c *requestCore) ackArg(id, from string, arg any) {
	c.pmu.Lock()
	a := c.acking[id]
	if a != nil && a.counted != nil {
		if _, expected := a.counted[from]; !expected {
			a = nil
		}
	}
	c.pmu.Unlock()
	if a != nil {
		a.onAck(arg)
	}
}

// pendingRequest collects the answers to one of this node's requests.
type pendingRequest struct {
	what     string // "fetchSockets" or "serverSideEmit"
	expected int    // answers expected (classic: counted with NUMSUB)
	got      int
	missing  map[string]bool // streams: the nodes yet to answer, by uid
	sockets  []sio.SocketInfo
	acks     []any
	done     chan struct{}
}

func (p *pendingRequest) complete() bool {
	if p.missing != nil {
		return len(p.missing) == 0
	}
	return p.got >= p.expected
}

// register records a request before it is sent; missing (streams) names the
// nodes expected to answer, else expected counts them.
func (c *requestCore) register(what string, expected int, missing map[string]bool) (string, *pendingRequest) {
	id := randomID()
	p := &pendingRequest{what: what, expected: expected, missing: missing, done: make(chan struct{}), acks: []any{}}
	c.pmu.Lock()
	c.pending[id] = p
	c.pmu.Unlock()
	return id, p
}

func (c *requestCore) forget(id string) {
	c.pmu.Lock()
	delete(c.pending, id)
	c.pmu.Unlock()
}

// answer applies one node's answer (from: its uid, streams only) to the
// request id, if it is ours and still waiting.
func (c *requestCore) answer(id, from string, apply func(p *pendingRequest)) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	p := c.pending[id]
	if p == nil {
		return
	}
	if p.missing != nil {
		if !p.missing[from] {
			return
		}
		delete(p.missing, from)
	}
	p.got++
	apply(p)
	if p.complete() {
		delete(c.pending, id)
		close(p.done)
	}
}

// nodeGone stops waiting for uid's answers (streams: the node left).
func (c *requestCore) nodeGone(uid string) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	for id, p := range c.pending {
		if p.missing != nil && p.missing[uid] {
			delete(p.missing, uid)
			if p.complete() {
				delete(c.pending, id)
				close(p.done)
			}
		}
	}
}

// await waits for every answer or ctx; it returns what arrived, as copies.
func (c *requestCore) await(ctx context.Context, id string, p *pendingRequest) ([]sio.SocketInfo, []any, error) {
	var err error
	select {
	case <-p.done:
	case <-ctx.Done():
		c.pmu.Lock()
		if _, ok := c.pending[id]; ok {
			delete(c.pending, id)
			if p.missing != nil {
				err = fmt.Errorf("%s: timeout reached: missing %d responses", p.what, len(p.missing))
			} else {
				err = fmt.Errorf("%s: timeout reached: only %d responses received out of %d", p.what, p.got, p.expected)
			}
		}
		c.pmu.Unlock()
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return append([]sio.SocketInfo(nil), p.sockets...), append([]any{}, p.acks...), err
}

// disconnect carries out a disconnectSockets request (or a one-socket
// disconnect) on this node's sockets, as Node does: one socket at a time, in
// Node's order, each after what the previous one's disconnect hooks
// broadcast reached the sockets still connected. Our broadcasts reach this
// node's sockets through the cluster (one cluster-wide order), so after
// each socket the batch waits (barrier, bounded) until this node's
// publications came back through the receive loop and were delivered.
//
// Called on the receive loop, it holds back from then on the other nodes'
// messages (this node's own, responses and barriers go on), so that
// whatever was sent after the request reaches this node after the whole
// batch, as in Node where a node disconnects the batch at once; bounded by
// holdMax. then (may be nil) runs after the batch.
func (c *requestCore) disconnect(local sio.Local, opts sio.BroadcastOpts, close bool, barrier func(ctx context.Context) error, mark func(), then func()) {
	ids := sio.SelectSockets(local, opts)
	if len(ids) == 0 {
		if then != nil {
			then()
		}
		return
	}
	c.inbox.hold()
	ok := c.batches.do(func() {
		start := time.Now()
		held, waits := true, true
		release := func() {
			if held {
				held = false
				c.inbox.release()
				mark() // wakes the receive loop up to let the held messages through
			}
		}
		defer func() {
			release()
			if then != nil {
				then()
			}
		}()
		for i, id := range ids {
			local.Disconnect(sio.BroadcastOpts{Rooms: []string{id}}, close)
			if i == len(ids)-1 {
				break
			}
			if waits {
				ctx, cancel := context.WithTimeout(context.Background(), barrierTimeout)
				if err := barrier(ctx); err != nil {
					waits = false // the loop is stalled or Redis is down: waiting more is pointless
				}
				cancel()
			}
			if time.Since(start) > holdMax {
				release()
			}
		}
	})
	if !ok { // the queue is full: the request is dropped, as if lost (a one-socket requester times out)
		c.inbox.release()
		c.serialRefused.Add(1)
		c.onError(errBatchRefused)
	}
}

// Caps of the work queued on behalf of other nodes.
const (
	inboxMax  = 8192 // messages held back in an inbox's backlog
	serialMax = 1024 // functions waiting in a serial queue
)

// inbox orders what a receive loop dispatches: while a disconnect batch
// holds it, messages of other nodes wait in the backlog, in order.
//
// The backlog is capped (max). When it is full the inbox gives up the
// hold rather than a message: it runs the backlog and what follows at once,
// in order, until no batch holds it any more (bypass). Only the ordering
// of those messages after the batch is lost, as when a hold outlasts
// holdMax; dropping them would lose them for every socket. Each time it
// happens is counted (overflows).
type inbox struct {
	holds     atomic.Int32
	queued    atomic.Int32 // len(backlog), for other goroutines
	overflows atomic.Uint64
	backlog   []func() // receive loop only
	bypass    bool     // receive loop only: the backlog overflowed, holds are ignored until none is left
	max       int      // backlog cap (0: inboxMax); set before the receive loop starts
}

func (b *inbox) hold()    { b.holds.Add(1) }
func (b *inbox) release() { b.holds.Add(-1) }

// held reports whether other nodes' messages must wait. Receive loop only.
func (b *inbox) held() bool {
	if b.holds.Load() == 0 {
		b.bypass = false
		return false
	}
	return !b.bypass
}

// handle runs fn now (always when pass: this node's own messages, responses)
// or, while held, once released. Receive loop only.
func (b *inbox) handle(pass bool, fn func()) {
	b.drain()
	if !pass && (b.held() || len(b.backlog) > 0) {
		max := b.max
		if max <= 0 {
			max = inboxMax
		}
		if len(b.backlog) < max {
			b.backlog = append(b.backlog, fn)
			b.queued.Store(int32(len(b.backlog)))
			return
		}
		b.bypass = true
		b.overflows.Add(1)
		b.drain()
	}
	fn()
}

// open reports whether nothing is held: messages run at once. Receive loop only.
func (b *inbox) open() bool { return len(b.backlog) == 0 && !b.held() }

// drain runs the backlog once released (it may hold again). Receive loop only.
func (b *inbox) drain() {
	for len(b.backlog) > 0 && !b.held() {
		fn := b.backlog[0]
		b.backlog[0] = nil
		b.backlog = b.backlog[1:]
		b.queued.Store(int32(len(b.backlog)))
		fn()
	}
	if len(b.backlog) == 0 {
		b.backlog = nil
	}
}

// serial runs functions one at a time, in order, off the caller's goroutine
// (one goroutine while there is work, none after).
type serial struct {
	mu      sync.Mutex
	q       []func()
	running bool
	onPanic func(any)
	max     int // functions waiting beyond the running one (0: serialMax)
}

// do runs fn after those queued before it; false (fn dropped) when max
// functions wait already.
func (s *serial) do(fn func()) bool {
	s.mu.Lock()
	if s.running {
		max := s.max
		if max <= 0 {
			max = serialMax
		}
		if len(s.q) >= max {
			s.mu.Unlock()
			return false
		}
		s.q = append(s.q, fn)
		s.mu.Unlock()
		return true
	}
	s.running = true
	s.mu.Unlock()
	go s.run(fn)
	return true
}

// depth is the number of functions waiting (the running one aside).
func (s *serial) depth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q)
}

func (s *serial) run(fn func()) {
	for {
		s.call(fn)
		s.mu.Lock()
		if len(s.q) == 0 {
			s.running = false
			s.q = nil
			s.mu.Unlock()
			return
		}
		fn = s.q[0]
		s.q[0] = nil
		s.q = s.q[1:]
		s.mu.Unlock()
	}
}

func (s *serial) call(fn func()) {
	defer func() {
		if r := recover(); r != nil && s.onPanic != nil {
			s.onPanic(r)
		}
	}()
	fn()
}

// watermark is how far a receive loop got, as a stream id ("ms-seq"; the
// classic adapter numbers its barriers "0-n"), for barriers to wait on.
type watermark struct {
	mu sync.Mutex
	at string
	ch chan struct{}
}

func (w *watermark) set(id string) {
	w.mu.Lock()
	if w.at == "" || idLess(w.at, id) {
		w.at = id
	}
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	w.mu.Unlock()
}

// wait returns nil once the loop got to id.
func (w *watermark) wait(ctx context.Context, id string) error {
	for {
		w.mu.Lock()
		if w.at != "" && !idLess(w.at, id) {
			w.mu.Unlock()
			return nil
		}
		if w.ch == nil {
			w.ch = make(chan struct{})
		}
		ch := w.ch
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// serverSide holds a namespace's server-side handler and runs it in order,
// off the receive loop.
type serverSide struct {
	h      atomic.Pointer[sio.ServerSideHandler]
	queue  serial
	onFull func() // may be nil: an event dropped, its queue full (the requester times out)
}

func (s *serverSide) set(h sio.ServerSideHandler) {
	if h == nil {
		s.h.Store(nil)
		return
	}
	s.h.Store(&h)
}

// receive hands event to the handler, if any; answer (nil: none expected)
// sends its result.
func (s *serverSide) receive(data []any, answer func(ack any)) {
	hp := s.h.Load()
	if hp == nil || len(data) == 0 {
		return
	}
	event, ok := data[0].(string)
	if !ok {
		return
	}
	args := append([]any{}, data[1:]...)
	h := *hp
	queued := s.queue.do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), RequestsTimeout)
		defer cancel()
		ack := h(ctx, event, args)
		if answer != nil {
			answer(ack)
		}
	})
	if !queued && s.onFull != nil {
		s.onFull()
	}
}

var (
	errNoEvent      = errors.New("cluster: serverSideEmit needs an event name")
	errRequestsDown = errors.New("cluster: redis unavailable, request not sent")
	errBatchRefused = errors.New("cluster: too many disconnect batches queued, disconnectSockets request dropped")
	errSSERefused   = errors.New("cluster: too many server-side events queued, event dropped")
)

// InboxBacklog is the number of other nodes' messages held back while a
// disconnect batch runs (a gauge; capped at inboxMax).
func (c *requestCore) InboxBacklog() int { return int(c.inbox.queued.Load()) }

// InboxOverflows counts the times the inbox backlog was full, so that the
// messages after it were let through without waiting for the batch.
func (c *requestCore) InboxOverflows() uint64 { return c.inbox.overflows.Load() }

// SerialQueueDepth is the number of disconnect batches waiting (a gauge;
// RedisCluster adds its server-side event queues).
func (c *requestCore) SerialQueueDepth() int { return c.batches.depth() }

// SerialRefused counts the disconnectSockets requests and server-side
// events dropped because their queue was full (serialMax).
func (c *requestCore) SerialRefused() uint64 { return c.serialRefused.Load() }
