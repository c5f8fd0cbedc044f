package adapter

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/sio"
)

// RedisCluster shares broadcasts between nodes over Redis PUB/SUB, speaking
// the protocol of Node's @socket.io/redis-adapter 8.3 byte for byte, so
// Switchboard nodes, Node socket.io servers and @socket.io/redis-emitter
// processes can share rooms:
//
//   - broadcasts: msgpack [uid, packet{type,data,nsp}, opts{rooms,except,flags}]
//     on "<prefix>#<nsp>#" or, for exactly one room, "<prefix>#<nsp>#<room>#";
//   - requests (socketsJoin/Leave, disconnectSockets, fetchSockets, ...): JSON
//     or msgpack on "<prefix>-request#<nsp>#", answered on
//     "<prefix>-response#<nsp>#";
//   - the server count: PUBSUB NUMSUB of the request channel.
//
// Its links are sio.Requesters: this node can ask the others too.
type RedisCluster struct {
	reach reach // how many servers the publishes reached (redis_reach.go)
	requestCore
	c      redis.UniversalClient
	prefix string

	mu    sync.Mutex
	links map[string]*redisLink // by namespace
	ps    *redis.PubSub

	healthy atomic.Bool

	writes writeQueue // answers to other nodes, off the receive loop
}

// Request types of the redis-adapter protocol.
const (
	reqSockets = iota
	reqAllRooms
	reqRemoteJoin
	reqRemoteLeave
	reqRemoteDisconnect
	reqRemoteFetch
	reqServerSideEmit
	reqBroadcast
	reqBroadcastClientCount
	reqBroadcastAck
)

// publishTimeout bounds a broadcast's wait for Redis; while Redis is known
// to be down, broadcasts fail at once (their senders are told unavailable).
const publishTimeout = time.Second

// NewRedisCluster returns a cluster over c with channel prefix (default
// "socket.io", the Node adapter's). onError (may be nil) receives Redis
// errors; rate-limit it when logging. Call Run to receive.
func NewRedisCluster(c redis.UniversalClient, prefix string, onError func(error)) *RedisCluster {
	if prefix == "" {
		prefix = "socket.io"
	}
	if onError == nil {
		onError = func(error) {}
	}
	r := &RedisCluster{requestCore: newRequestCore(onError), c: c, prefix: prefix, links: map[string]*redisLink{}}
	r.batches.onPanic = func(v any) { onError(fmt.Errorf("cluster: disconnect batch panicked: %v", v)) }
	r.writes.c, r.writes.onError = c, onError
	r.healthy.Store(true)
	return r
}

func randomUID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Healthy reports whether Redis answered the last time it was used.
func (r *RedisCluster) Healthy() bool { return r.healthy.Load() }

// UID is this node's id on the wire.
func (r *RedisCluster) UID() string { return r.uid }

func (r *RedisCluster) channels(nsp string) (patterns, channels []string) {
	return []string{r.prefix + "#" + nsp + "#*"},
		[]string{r.prefix + "-request#" + nsp + "#", r.prefix + "-response#" + nsp + "#", r.prefix + "-response#" + nsp + "#" + r.uid + "#"}
}

// Attach implements sio.Cluster.
func (r *RedisCluster) Attach(nsp string, local sio.Local) sio.Link {
	l := &redisLink{r: r, nsp: nsp, local: local,
		channel: r.prefix + "#" + nsp + "#", requestChannel: r.prefix + "-request#" + nsp + "#",
		responseChannel: r.prefix + "-response#" + nsp + "#"}
	l.ownChannel = l.responseChannel + r.uid + "#"
	l.sse.queue.onPanic = func(v any) { r.onError(fmt.Errorf("cluster: server-side handler of %s panicked: %v", nsp, v)) }
	l.sse.onFull = func() {
		r.serialRefused.Add(1)
		r.onError(errSSERefused)
	}
	r.mu.Lock()
	r.links[nsp] = l
	ps := r.ps
	r.mu.Unlock()
	if ps != nil { // attached after Run started
		pats, chans := r.channels(nsp)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ps.PSubscribe(ctx, pats...); err != nil {
			r.onError(err)
		}
		if err := ps.Subscribe(ctx, chans...); err != nil {
			r.onError(err)
		}
	}
	return l
}

// Run receives until ctx is done. While Redis is unreachable it retries
// with capped exponential backoff (no hot loop) and reports unhealthy.
func (r *RedisCluster) Run(ctx context.Context) {
	r.mu.Lock()
	var pats, chans []string
	for nsp := range r.links {
		p, c := r.channels(nsp)
		pats, chans = append(pats, p...), append(chans, c...)
	}
	r.ps = r.c.PSubscribe(ctx, pats...)
	ps := r.ps
	r.mu.Unlock()
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks Receive
	defer stop()
	if len(chans) > 0 { // SUBSCRIBE without channels is an error that would mark Redis down
		if err := ps.Subscribe(ctx, chans...); err != nil {
			r.onError(err)
		}
	}
	var b backoff
	for ctx.Err() == nil {
		r.inbox.drain() // a disconnect batch may have ended meanwhile
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.healthy.Store(false)
			r.onError(err)
			if !b.wait(ctx) {
				return
			}
			// A ping through the pub/sub connection reconnects and re-subscribes.
			_ = ps.Ping(ctx)
			continue
		}
		b.reset()
		switch m := msg.(type) {
		case *redis.Subscription:
			r.healthy.Store(true)
		case *redis.Pong:
			r.healthy.Store(true)
		case *redis.Message:
			r.healthy.Store(true)
			r.dispatch(m)
		}
	}
}

// backoff spaces retries while Redis is unreachable: 100 ms, doubling to
// 1 s. Short: a pub/sub node is deaf until it resubscribes (redis_reach.go).
type backoff struct{ d time.Duration }

// wait sleeps the current delay and doubles it; false when ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	if b.d == 0 {
		b.d = 100 * time.Millisecond
	}
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(b.d*2, time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (b *backoff) reset() { b.d = 0 }

// dispatch runs on the receive loop. While a disconnect batch holds the
// loop (requestCore.disconnect), other nodes' broadcasts and requests wait.
func (r *RedisCluster) dispatch(m *redis.Message) {
	ch := m.Channel
	switch {
	case strings.HasPrefix(ch, r.prefix+"-request#"):
		l := r.link(strings.TrimSuffix(strings.TrimPrefix(ch, r.prefix+"-request#"), "#"))
		if l == nil {
			return
		}
		req, err := decodeRequest([]byte(m.Payload), l.nsp)
		if err != nil {
			r.dropUndecodable(ch, err)
			return
		}
		r.inbox.handle(req.UID == r.uid, func() { l.onRequest(req) })
	case strings.HasPrefix(ch, r.prefix+"-response#"):
		r.inbox.handle(true, func() { r.onResponse(ch, []byte(m.Payload)) })
	case strings.HasPrefix(ch, r.prefix+"#"):
		// As in Node, the namespace's adapter takes the broadcasts on its
		// channels ("<prefix>#<nsp>#" and its rooms') whose packet is of
		// that namespace; anything else is dropped.
		b, err := decodeRedisBroadcast([]byte(m.Payload))
		if err != nil {
			r.dropUndecodable(ch, err)
			return
		}
		own := r.prefix + "#" + b.Nsp + "#"
		if !strings.HasPrefix(ch, own) {
			r.dropUndecodable(ch, fmt.Errorf("packet.nsp: not the namespace of the channel"))
			return
		}
		if m.Pattern != "" && m.Pattern != own+"*" {
			return // another namespace's pattern matched too ('#' in names): delivered through the right one
		}
		if r.inbox.open() { // the common case: no closure
			r.onBroadcast(ch, b)
			return
		}
		r.inbox.handle(b.UID == r.uid, func() { r.onBroadcast(ch, b) })
	}
}

func (r *RedisCluster) link(nsp string) *redisLink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.links[nsp]
}

// wireOpts is opts as the Node adapter encodes it (decoded by decodeOpts).
type wireOpts struct {
	Rooms  []string       `msgpack:"rooms" json:"rooms"`
	Except []string       `msgpack:"except" json:"except"`
	Flags  map[string]any `msgpack:"flags,omitempty" json:"flags,omitempty"`
}

func (o wireOpts) toOpts() sio.BroadcastOpts {
	out := sio.BroadcastOpts{Rooms: o.Rooms, Except: o.Except}
	if v, ok := o.Flags["volatile"].(bool); ok {
		out.Volatile = v
	}
	if v, ok := o.Flags["compress"].(bool); ok {
		out.Compress = v
	}
	return out
}

// onBroadcast delivers a broadcast of another node (decodeRedisBroadcast).
func (r *RedisCluster) onBroadcast(channel string, b redisBroadcast) {
	// Our own broadcasts come back too: delivering them from here gives every
	// node's members the same (Redis) order.
	l := r.link(b.Nsp)
	if l == nil {
		return
	}
	// Messages on a room channel only matter where that room has members.
	if room := strings.TrimSuffix(strings.TrimPrefix(channel, l.channel), "#"); room != "" && !l.local.HasRoom(room) {
		return
	}
	l.local.Deliver(sio.Packet{Type: 2, Nsp: b.Nsp, Data: b.Data}, b.Opts.toOpts())
}

// toInt reads a msgpack or JSON number as an int (-1: not a number).
func toInt(v any) int {
	if n, ok := integer(v); ok && n >= math.MinInt32 && n <= math.MaxInt32 {
		return int(n)
	}
	return -1
}

type redisLink struct {
	r               *RedisCluster
	nsp             string
	local           sio.Local
	channel         string
	requestChannel  string
	responseChannel string
	ownChannel      string // "<prefix>-response#<nsp>#<uid>#": answers for this node only, and barriers
	sse             serverSide
}

var errClusterDown = errors.New("cluster: redis unavailable, broadcast delivered on this node only")

// Publish implements sio.Link: the broadcast is on Redis when it returns
// (so a message acknowledged to its sender survives this node's death).
func (l *redisLink) Publish(p sio.Packet, opts sio.BroadcastOpts) bool {
	// A socket's private room lives on this node only: nothing to publish.
	if len(opts.Rooms) == 1 && len(opts.Except) == 0 && l.local.HasSocket(opts.Rooms[0]) {
		return false
	}
	if !l.r.healthy.Load() {
		l.r.onError(errClusterDown)
		return false
	}
	payload, err := l.encode(p, opts)
	if err != nil {
		l.r.onError(err)
		return false
	}
	channel := l.channel
	if len(opts.Rooms) == 1 {
		channel += opts.Rooms[0] + "#"
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	n, err := l.r.c.Publish(ctx, channel, payload).Result()
	if err != nil {
		l.r.healthy.Store(false)
		l.r.onError(err)
		return false
	}
	if n == 0 { // heard by no server, this one included: delivered nowhere
		l.r.onError(errNoReceivers)
		return false
	}
	l.r.reach.note(n)
	return true
}

func (l *redisLink) encode(p sio.Packet, opts sio.BroadcastOpts) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	enc.SetSortMapKeys(false)
	rooms, except := opts.Rooms, opts.Except
	if rooms == nil {
		rooms = []string{}
	}
	if except == nil {
		except = []string{}
	}
	flags := map[string]any{}
	if opts.Volatile {
		flags["volatile"] = true
	}
	if opts.Compress {
		flags["compress"] = true
	}
	err := enc.Encode([]any{
		l.r.uid,
		map[string]any{"type": p.Type, "data": p.Data, "nsp": l.nsp},
		map[string]any{"rooms": rooms, "except": except, "flags": flags},
	})
	return buf.Bytes(), err
}

// Close implements sio.Link.
func (l *redisLink) Close() {
	l.r.mu.Lock()
	delete(l.r.links, l.nsp)
	l.r.mu.Unlock()
}

// request is a request of another node (or this one), decoded by decodeRequest.
type request struct {
	UID       string
	RequestID string
	Type      int
	Opts      *wireOpts // nil: none (a one-socket request, by sid)
	Rooms     []string
	Room      string
	SID       string
	Close     bool
	Packet    map[string]any // BROADCAST: {type, data, nsp}
	Data      []any          // SERVER_SIDE_EMIT: [event, ...args]
}

// onRequest answers another node's request. This node's own socketsJoin,
// socketsLeave and disconnectSockets come back here too and are applied
// then, as the Node adapter does: in order with the broadcasts around them.
//
// It runs on the receive loop, which never waits for Redis: answers go to
// the write queue (respond), and the read-only ones (sockets, allRooms,
// fetchSockets) are even worked out there, just before they are sent. Such
// an answer sees everything that came before the request (applied on the
// loop already) and maybe some of what came after, as if the request had
// been a little later; a burst of them costs the loop a decode each.
func (l *redisLink) onRequest(req request) {
	own := req.UID == l.r.uid
	var opts sio.BroadcastOpts
	if req.Opts != nil {
		opts = req.Opts.toOpts()
	}
	switch req.Type {
	case reqSockets:
		if own {
			return
		}
		id, rooms := req.RequestID, req.Rooms
		l.respondWith(func() any {
			return map[string]any{"requestId": id, "sockets": nonNil(l.local.Sockets(rooms))}
		})
	case reqAllRooms:
		if own {
			return
		}
		id := req.RequestID
		l.respondWith(func() any { return map[string]any{"requestId": id, "rooms": nonNil(l.local.Rooms())} })
	case reqRemoteJoin, reqRemoteLeave:
		if req.Opts == nil { // one socket by id
			if !l.local.HasSocket(req.SID) {
				return
			}
			opts = sio.BroadcastOpts{Rooms: []string{req.SID}}
			if req.Room != "" {
				req.Rooms = []string{req.Room}
			}
		}
		if req.Type == reqRemoteJoin {
			l.local.Join(opts, req.Rooms)
		} else {
			l.local.Leave(opts, req.Rooms)
		}
		if req.Opts == nil {
			l.respond(map[string]any{"requestId": req.RequestID})
		}
	case reqRemoteDisconnect:
		var then func()
		if req.Opts == nil { // one socket by id
			if !l.local.HasSocket(req.SID) {
				return
			}
			opts = sio.BroadcastOpts{Rooms: []string{req.SID}}
			then = func() { l.respond(map[string]any{"requestId": req.RequestID}) }
		}
		l.r.disconnect(l.local, opts, req.Close, l.barrier, l.mark, then)
	case reqRemoteFetch:
		if own {
			return
		}
		id := req.RequestID
		l.respondWith(func() any {
			socks := l.local.Fetch(opts)
			if socks == nil {
				socks = []sio.SocketInfo{}
			}
			return map[string]any{"requestId": id, "sockets": socks}
		})
	case reqServerSideEmit:
		if own {
			return
		}
		var answer func(any)
		if req.RequestID != "" {
			answer = func(ack any) {
				l.respond(sseResponse{Type: reqServerSideEmit, RequestID: req.RequestID, Data: ack})
			}
		}
		l.sse.receive(req.Data, answer)
	case reqBroadcast: // a broadcast with acks from another node
		if own {
			return
		}
		data, ok := req.Packet["data"].([]any)
		if !ok || len(data) == 0 {
			return
		}
		// The count and every recipient's ack (on its connection's goroutine)
		// are queued (writeQueue): no goroutine and no wait on Redis per
		// recipient, whatever their number.
		id := req.RequestID
		l.local.DeliverWithAck(sio.Packet{Type: 2, Nsp: l.nsp, Data: data}, opts,
			func(n int) {
				l.respond(map[string]any{"type": reqBroadcastClientCount, "requestId": id, "clientCount": n})
			},
			func(arg any) {
				l.publishResponseWith(func() ([]byte, error) {
					return msgpack.Marshal(map[string]any{"type": reqBroadcastAck, "requestId": id, "packet": arg})
				})
			})
	}
}

// sseResponse is a serverSideEmit answer, as Node writes it.
type sseResponse struct {
	Type      int    `json:"type"`
	RequestID string `json:"requestId"`
	Data      any    `json:"data"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// respond queues v, as JSON, on the response channel (writeQueue).
func (l *redisLink) respond(v any) { l.respondWith(func() any { return v }) }

// respondWith queues the answer build makes, as JSON, when it is sent
// (on the write queue's worker).
func (l *redisLink) respondWith(build func() any) {
	l.publishResponseWith(func() ([]byte, error) { return marshalJSON(build()) })
}

// publishResponse queues b on the response channel.
func (l *redisLink) publishResponse(b []byte) {
	l.publishResponseWith(func() ([]byte, error) { return b, nil })
}

// publishResponseWith queues the payload encode makes when it is sent.
// Past the queue's cap the answer is dropped (counted, reported): for the
// requester it is lost, and its request times out.
func (l *redisLink) publishResponseWith(encode func() ([]byte, error)) {
	ok := l.r.writes.push(func(ctx context.Context, p redis.Pipeliner) {
		b, err := encode()
		if err != nil {
			l.r.onError(err)
			return
		}
		p.Publish(ctx, l.responseChannel, b)
	})
	if !ok {
		l.r.onError(errWritesFull)
	}
}

// Redis writes made for the receive loop and the connections (writeQueue).
const (
	responseQueueMax = 4096 // jobs waiting; more are dropped
	responseBatch    = 256  // jobs sent in one pipeline
)

var errWritesFull = errors.New("cluster: write queue full, answer to another node dropped")

// writeQueue takes the Redis writes that answer other nodes (responses to
// requests, broadcast acks) off the receive loop and the connections: a
// bounded FIFO, sent in order by one worker goroutine per node (started
// when jobs arrive, gone once none is left), in pipelines of up to
// responseBatch commands, each bounded by publishTimeout. A job refused
// because max jobs wait already, still unsent after RequestsTimeout (its
// requester gave up), or whose write failed, is dropped and counted: for
// the requester it is an answer lost on the way, and it times out as for
// one.
type writeQueue struct {
	c       redis.UniversalClient
	onError func(error)
	max     int // jobs waiting (0: responseQueueMax); set before use

	mu      sync.Mutex
	q       []writeJob
	running bool
	dropped atomic.Uint64
}

type writeJob struct {
	at  time.Time
	add func(ctx context.Context, p redis.Pipeliner) // queues its commands on p (maybe none)
}

// push queues add; false when the queue is full (add dropped).
func (w *writeQueue) push(add func(ctx context.Context, p redis.Pipeliner)) bool {
	max := w.max
	if max <= 0 {
		max = responseQueueMax
	}
	w.mu.Lock()
	if len(w.q) >= max {
		w.mu.Unlock()
		w.dropped.Add(1)
		return false
	}
	w.q = append(w.q, writeJob{at: time.Now(), add: add})
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.run()
	}
	return true
}

func (w *writeQueue) run() {
	batch := make([]writeJob, 0, responseBatch)
	for {
		w.mu.Lock()
		if len(w.q) == 0 {
			w.running = false
			w.q = nil
			w.mu.Unlock()
			return
		}
		n := min(len(w.q), responseBatch)
		batch = append(batch[:0], w.q[:n]...)
		clear(w.q[:n])
		w.q = w.q[n:]
		w.mu.Unlock()
		w.send(batch)
		clear(batch)
	}
}

// send writes one batch in a pipeline.
func (w *writeQueue) send(batch []writeJob) {
	pipe := w.c.Pipeline()
	stale := time.Now().Add(-RequestsTimeout)
	for _, j := range batch {
		if j.at.Before(stale) {
			w.dropped.Add(1)
			continue
		}
		w.build(pipe, j)
	}
	if pipe.Len() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return
	}
	for _, c := range cmds {
		if c.Err() != nil {
			w.dropped.Add(1)
		}
	}
	w.onError(fmt.Errorf("cluster: answers to other nodes not sent: %w", err))
}

func (w *writeQueue) build(pipe redis.Pipeliner, j writeJob) {
	defer func() {
		if v := recover(); v != nil {
			w.dropped.Add(1)
			w.onError(fmt.Errorf("cluster: answer to another node panicked: %v", v))
		}
	}()
	j.add(context.Background(), pipe)
}

func (w *writeQueue) depth() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.q)
}

// WriteQueueDepth is the number of answers to other nodes (responses,
// broadcast acks) waiting to be written to Redis (a gauge; capped at
// responseQueueMax).
func (r *RedisCluster) WriteQueueDepth() int { return r.writes.depth() }

// WriteQueueDropped counts the answers to other nodes never written: the
// queue was full, they waited past RequestsTimeout, or Redis failed them.
func (r *RedisCluster) WriteQueueDropped() uint64 { return r.writes.dropped.Load() }

// SerialQueueDepth is the number of disconnect batches and server-side
// events waiting for their turn (a gauge).
func (r *RedisCluster) SerialQueueDepth() int {
	n := r.batches.depth()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.links {
		n += l.sse.queue.depth()
	}
	return n
}

// ServerCount implements sio.Requester: the number of servers subscribed to
// the namespace's requests (PUBSUB NUMSUB), as Node counts them.
func (l *redisLink) ServerCount(ctx context.Context) (int, error) {
	res, err := l.r.c.PubSubNumSub(ctx, l.requestChannel).Result()
	if err != nil {
		return 0, err
	}
	return int(res[l.requestChannel]), nil
}

// ---- requests this node sends (sio.Requester), as @socket.io/redis-adapter 8.3 writes them ----

// Request payloads, field for field in Node's order (JSON).
type (
	fetchRequest struct {
		UID       string   `json:"uid"`
		RequestID string   `json:"requestId"`
		Type      int      `json:"type"`
		Opts      wireOpts `json:"opts"`
	}
	roomsRequest struct { // REMOTE_JOIN, REMOTE_LEAVE
		UID   string   `json:"uid"`
		Type  int      `json:"type"`
		Opts  wireOpts `json:"opts"`
		Rooms []string `json:"rooms"`
	}
	disconnectRequest struct {
		UID   string   `json:"uid"`
		Type  int      `json:"type"`
		Opts  wireOpts `json:"opts"`
		Close bool     `json:"close"`
	}
	sseRequest struct {
		UID       string `json:"uid"`
		RequestID string `json:"requestId,omitempty"` // present: answers expected
		Type      int    `json:"type"`
		Data      []any  `json:"data"`
	}
)

// requestOpts is opts as the Node adapter sends them with a request.
func requestOpts(o sio.BroadcastOpts) wireOpts {
	return wireOpts{Rooms: nonNil(o.Rooms), Except: nonNil(o.Except)}
}

func (l *redisLink) publishRequest(ctx context.Context, v any) error {
	if !l.r.healthy.Load() {
		return errRequestsDown
	}
	b, err := marshalJSON(v)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := l.r.c.Publish(pctx, l.requestChannel, b).Err(); err != nil {
		l.r.onError(err)
		return fmt.Errorf("cluster: request not sent: %w", err)
	}
	return nil
}

// FetchSockets implements sio.Requester.
func (l *redisLink) FetchSockets(ctx context.Context, opts sio.BroadcastOpts) ([]sio.SocketInfo, error) {
	ctx, cancel := requestContext(ctx)
	defer cancel()
	n, err := l.ServerCount(ctx)
	if err != nil || n <= 1 {
		return nil, err
	}
	id, p := l.r.register("fetchSockets", n-1, nil)
	if err := l.publishRequest(ctx, fetchRequest{UID: l.r.uid, RequestID: id, Type: reqRemoteFetch, Opts: requestOpts(opts)}); err != nil {
		l.r.forget(id)
		return nil, err
	}
	socks, _, err := l.r.await(ctx, id, p)
	return socks, err
}

// ServerSideEmit implements sio.Requester.
func (l *redisLink) ServerSideEmit(ctx context.Context, event string, args []any) error {
	if event == "" {
		return errNoEvent
	}
	return l.publishRequest(ctx, sseRequest{UID: l.r.uid, Type: reqServerSideEmit, Data: append([]any{event}, args...)})
}

// ServerSideEmitWithAck implements sio.Requester: one answer per other
// server subscribed to the namespace (NUMSUB - 1).
func (l *redisLink) ServerSideEmitWithAck(ctx context.Context, event string, args []any) ([]any, error) {
	if event == "" {
		return nil, errNoEvent
	}
	ctx, cancel := requestContext(ctx)
	defer cancel()
	n, err := l.ServerCount(ctx)
	if err != nil {
		return nil, err
	}
	if n <= 1 {
		return []any{}, nil
	}
	id, p := l.r.register("serverSideEmit", n-1, nil)
	if err := l.publishRequest(ctx, sseRequest{UID: l.r.uid, RequestID: id, Type: reqServerSideEmit, Data: append([]any{event}, args...)}); err != nil {
		l.r.forget(id)
		return nil, err
	}
	_, acks, err := l.r.await(ctx, id, p)
	return acks, err
}

// SocketsJoin implements sio.Requester (no answer, as in Node).
func (l *redisLink) SocketsJoin(ctx context.Context, opts sio.BroadcastOpts, rooms []string) error {
	return l.publishRequest(ctx, roomsRequest{UID: l.r.uid, Type: reqRemoteJoin, Opts: requestOpts(opts), Rooms: nonNil(rooms)})
}

// SocketsLeave implements sio.Requester.
func (l *redisLink) SocketsLeave(ctx context.Context, opts sio.BroadcastOpts, rooms []string) error {
	return l.publishRequest(ctx, roomsRequest{UID: l.r.uid, Type: reqRemoteLeave, Opts: requestOpts(opts), Rooms: nonNil(rooms)})
}

// DisconnectSockets implements sio.Requester.
func (l *redisLink) DisconnectSockets(ctx context.Context, opts sio.BroadcastOpts, close bool) error {
	return l.publishRequest(ctx, disconnectRequest{UID: l.r.uid, Type: reqRemoteDisconnect, Opts: requestOpts(opts), Close: close})
}

// OnServerSideEmit implements sio.Requester.
func (l *redisLink) OnServerSideEmit(h sio.ServerSideHandler) { l.sse.set(h) }

// broadcastAckRequest is a broadcast with acks as Node's adapter publishes
// it on the request channel (msgpack, field for field in Node's order).
type broadcastAckRequest struct {
	UID       string          `msgpack:"uid"`
	RequestID string          `msgpack:"requestId"`
	Type      int             `msgpack:"type"`
	Packet    broadcastPacket `msgpack:"packet"`
	Opts      wireOpts        `msgpack:"opts"`
}

type broadcastPacket struct {
	Type int    `msgpack:"type"`
	Data []any  `msgpack:"data"`
	Nsp  string `msgpack:"nsp"`
}

// BroadcastWithAck implements sio.AckBroadcaster as @socket.io/redis-adapter
// 8.3 does: a BROADCAST request with a requestId on the request channel; the
// other servers (NUMSUB - 1) answer on the response channel with their
// number of recipients (BROADCAST_CLIENT_COUNT, JSON), then each
// recipient's ack (BROADCAST_ACK, msgpack).
func (l *redisLink) BroadcastWithAck(ctx context.Context, p sio.Packet, opts sio.BroadcastOpts, onCount func(int), onAck func(any)) (int, error) {
	if !l.r.healthy.Load() {
		return 0, errRequestsDown
	}
	n, err := l.ServerCount(ctx)
	if err != nil {
		return 0, err
	}
	if n <= 1 {
		return 0, nil
	}
	flags := map[string]any{}
	if d, ok := ctx.Deadline(); ok {
		flags["timeout"] = max(time.Until(d).Milliseconds(), 0)
	}
	id, drop := l.r.registerAck(ctx, nil, onCount, onAck)
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	enc.SetSortMapKeys(false)
	err = enc.Encode(broadcastAckRequest{UID: l.r.uid, RequestID: id, Type: reqBroadcast,
		Packet: broadcastPacket{Type: p.Type, Data: p.Data, Nsp: l.nsp},
		Opts:   wireOpts{Rooms: nonNil(opts.Rooms), Except: nonNil(opts.Except), Flags: flags}})
	if err != nil {
		drop()
		return 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := l.r.c.Publish(pctx, l.requestChannel, buf.Bytes()).Err(); err != nil {
		drop()
		l.r.onError(err)
		return 0, fmt.Errorf("cluster: broadcast with ack not sent: %w", err)
	}
	return n - 1, nil
}

var barrierPrefix = []byte("sb-barrier:")

// onResponse applies an answer on a response channel (decodeResponse), or
// a barrier of this node on its own one.
func (r *RedisCluster) onResponse(channel string, payload []byte) {
	if bytes.HasPrefix(payload, barrierPrefix) && strings.HasSuffix(channel, "#"+r.uid+"#") {
		r.seen.set(string(payload[len(barrierPrefix):]))
		return
	}
	res, err := decodeResponse(payload)
	if err != nil {
		r.dropUndecodable(channel, err)
		return
	}
	switch res.Type {
	case reqBroadcastClientCount:
		r.ackCount(res.RequestID, "", res.ClientCount)
		return
	case reqBroadcastAck:
		r.ackArg(res.RequestID, "", res.Packet)
		return
	}
	r.answer(res.RequestID, "", func(p *pendingRequest) {
		switch p.what {
		case "fetchSockets":
			p.sockets = append(p.sockets, res.Sockets...)
		case "serverSideEmit":
			p.acks = append(p.acks, res.Data)
		}
	})
}

var barrierSeq atomic.Uint64

// mark publishes a barrier on this node's own response channel (no other
// server listens there) and returns its position: it comes back through
// the receive loop after every message this node published before it.
func (l *redisLink) markID(ctx context.Context) (string, error) {
	id := "0-" + strconv.FormatUint(barrierSeq.Add(1), 10)
	if err := l.r.c.Publish(ctx, l.ownChannel, append(append([]byte{}, barrierPrefix...), id...)).Err(); err != nil {
		return "", err
	}
	return id, nil
}

func (l *redisLink) mark() {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	_, _ = l.markID(ctx)
}

// barrier returns once what this node published so far came back through
// the receive loop (and was delivered here).
func (l *redisLink) barrier(ctx context.Context) error {
	id, err := l.markID(ctx)
	if err != nil {
		return err
	}
	return l.r.seen.wait(ctx, id)
}
