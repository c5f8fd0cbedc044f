package adapter

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/sio"
)

// RedisStreamsCluster shares broadcasts through a Redis stream, in the
// format of Node's @socket.io/redis-streams-adapter 0.3 (entries {uid, nsp,
// type:"3", data: JSON {packet, opts}}, stream "<prefix>"), which makes every
// broadcast's stream id its recovery offset on every node. Unlike the Node
// adapter it also keeps each connected session (id, rooms) in Redis as it
// changes, so a client recovers on another node even when its own node was
// killed, not only when it disconnected cleanly.
//
// Requests between nodes (fetchSockets, serverSideEmit, socketsJoin/Leave,
// disconnectSockets) go through the stream too, with heartbeats counting
// the servers, as Node's ClusterAdapterWithHeartbeat (socket.io-adapter
// 2.5) does; its links are sio.Requesters.
type RedisStreamsCluster struct {
	requestCore
	c         redis.UniversalClient // commands
	reader    redis.UniversalClient // the blocking XREAD loop (its own connection and timeouts)
	recovery  redis.UniversalClient // session restores' reads (their own pool; c when none)
	stream    string
	keyPfx    string        // session keys: "<prefix>:sio:session:<pid>" (Node: "sio:session:")
	window    time.Duration // session lifetime after a disconnect (RECOVERY_WINDOW)
	maxLen    int64
	heartbeat time.Duration
	nodeTTL   time.Duration

	mu    sync.Mutex
	links map[string]*streamLink
	live  map[string][]byte // pid -> encoded session of connected sockets (refreshed)

	// deliverMu is held while the read loop delivers a batch, and briefly
	// by a restore as it starts (streams_restore.go): a broadcast is
	// delivered either before (the replay reads it) or after (it is
	// buffered for the restore), never half.
	deliverMu     sync.Mutex
	lastDelivered atomic.Value // string: id of the last entry delivered here
	rstats        restoreStats
	// restoreBufEntries and restoreBufBytes bound a restore's buffer
	// (0: restoreBufferEntries, restoreBufferBytes).
	restoreBufEntries, restoreBufBytes int

	writer *streamWriter // Redis writes, off the receive loop
	tail   streamTail    // recent broadcasts, for restores (deliverMu)

	healthy atomic.Bool
}

// StreamsOptions configures a RedisStreamsCluster; zero values are defaults.
type StreamsOptions struct {
	Prefix         string        // stream name and key prefix; default "socket.io"
	RecoveryWindow time.Duration // how long a session outlives its connection; default 2m
	MaxLen         int64         // approximate stream length kept; default 10000
	// HeartbeatInterval and HeartbeatTimeout: how often this node announces
	// itself on the stream, and after how long without a message another
	// node no longer counts (Node's defaults: 5s and 10s).
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// Recovery serves the session restores' reads (GETDEL, XRANGE). Give it
	// its own small pool: a storm of reconnecting clients then queues
	// there, and never holds the connections that live publishes and
	// dedupe claims wait for. nil: the commands client.
	Recovery redis.UniversalClient
	// TailBytes bounds the memory of the stream's tail kept decoded for
	// restores (streams_tail.go); 0: 16 MiB, < 0: none (every restore reads
	// Redis).
	TailBytes int64
	OnError   func(error)
}

// NewRedisStreamsCluster returns a streams cluster. c serves commands;
// reader is a second client (its ReadTimeout above the 2s XREAD block)
// for the receive loop. Call Run.
func NewRedisStreamsCluster(c, reader redis.UniversalClient, o StreamsOptions) *RedisStreamsCluster {
	if o.Prefix == "" {
		o.Prefix = "socket.io"
	}
	if o.RecoveryWindow <= 0 {
		o.RecoveryWindow = 2 * time.Minute
	}
	if o.MaxLen <= 0 {
		o.MaxLen = 10000
	}
	if o.OnError == nil {
		o.OnError = func(error) {}
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 5 * time.Second
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 10 * time.Second
	}
	if o.Recovery == nil {
		o.Recovery = c
	}
	r := &RedisStreamsCluster{requestCore: newRequestCore(o.OnError), c: c, reader: reader, recovery: o.Recovery, stream: o.Prefix, keyPfx: o.Prefix + ":sio:session:",
		window: o.RecoveryWindow, maxLen: o.MaxLen, heartbeat: o.HeartbeatInterval, nodeTTL: o.HeartbeatTimeout,
		links: map[string]*streamLink{}, live: map[string][]byte{}}
	r.writer = newStreamWriter(c, o.OnError)
	r.tail.maxEntries, r.tail.maxBytes = int(o.MaxLen), int(o.TailBytes)
	if o.TailBytes == 0 {
		r.tail.maxBytes = defaultTailBytes
	}
	r.batches.onPanic = func(v any) { o.OnError(fmt.Errorf("cluster: disconnect batch panicked: %v", v)) }
	r.lastDelivered.Store("")
	r.healthy.Store(true)
	return r
}

// Healthy reports whether Redis answered the last time it was used.
func (r *RedisStreamsCluster) Healthy() bool { return r.healthy.Load() }

// Attach implements sio.Cluster.
func (r *RedisStreamsCluster) Attach(nsp string, local sio.Local) sio.Link {
	return r.AttachLog(nsp, local)
}

// AttachLog implements sio.LogCluster.
func (r *RedisStreamsCluster) AttachLog(nsp string, local sio.Local) sio.LogLink {
	l := &streamLink{r: r, nsp: nsp, local: local, nodes: map[string]time.Time{}}
	l.sse.queue.onPanic = func(v any) { r.onError(fmt.Errorf("cluster: server-side handler of %s panicked: %v", nsp, v)) }
	l.sse.onFull = func() {
		r.serialRefused.Add(1)
		r.onError(errSSERefused)
	}
	r.mu.Lock()
	r.links[nsp] = l
	r.mu.Unlock()
	// Announce this node: the others answer with a heartbeat, and count it.
	l.publishAsync(msgInitialHeartbeat, nil)
	return l
}

const blockTime = 2 * time.Second

// Run reads the stream from its end until ctx is done, refreshing the
// sessions of connected sockets; while Redis is down it backs off.
func (r *RedisStreamsCluster) Run(ctx context.Context) {
	go r.refreshLoop(ctx)
	go r.heartbeatLoop(ctx)
	last := "$"
	var b backoff
	for ctx.Err() == nil {
		if len(r.inbox.backlog) > 0 { // a disconnect batch may have ended meanwhile
			r.deliverMu.Lock()
			r.inbox.drain()
			r.delivered(last)
			r.deliverMu.Unlock()
		}
		res, err := r.reader.XRead(ctx, &redis.XReadArgs{Streams: []string{r.stream, last}, Count: 100, Block: blockTime}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return
			}
			r.healthy.Store(false)
			r.onError(err)
			r.deliverMu.Lock()
			r.tail.reset() // entries may be missed meanwhile (trimmed, or Redis restarted)
			r.deliverMu.Unlock()
			if !b.wait(ctx) {
				return
			}
			continue
		}
		b.reset()
		r.healthy.Store(true)
		r.deliverMu.Lock()
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				r.onEntry(m)
			}
		}
		r.delivered(last)
		r.sweepRestores()
		r.deliverMu.Unlock()
		if last != "$" {
			r.seen.set(last)
		}
	}
}

// delivered records that every entry up to last was delivered here, unless
// some wait in the inbox's backlog (then the mark stays before them).
func (r *RedisStreamsCluster) delivered(last string) {
	if last != "$" && len(r.inbox.backlog) == 0 {
		r.lastDelivered.Store(last)
	}
}

// Message types of socket.io-adapter's ClusterAdapter (the stream's "type").
const (
	msgInitialHeartbeat = iota + 1
	msgHeartbeat
	msgBroadcast
	msgSocketsJoin
	msgSocketsLeave
	msgDisconnectSockets
	msgFetchSockets
	msgFetchSocketsResponse
	msgServerSideEmit
	msgServerSideEmitResponse
	msgBroadcastClientCount
	msgBroadcastAck
	msgAdapterClose
)

// emitterUID is the uid of @socket.io/redis-streams-emitter (not a server).
const emitterUID = "emitter"

// onEntry handles an entry on the receive loop. Broadcasts are delivered to
// this node's sockets, our own included: every node delivers in stream
// order. While a disconnect batch holds the loop, other nodes' entries
// wait (requestCore.disconnect).
func (r *RedisStreamsCluster) onEntry(m redis.XMessage) {
	nsp, _ := m.Values["nsp"].(string)
	r.mu.Lock()
	l := r.links[nsp]
	r.mu.Unlock()
	if l == nil {
		return // another namespace's, or none (ignored, as in Node)
	}
	e, err := decodeEntry(m.Values)
	if err != nil {
		r.dropUndecodable("stream "+r.stream+" entry "+m.ID, err)
		return
	}
	uid, typ := e.UID, e.Type
	own := uid == r.uid
	if !own && uid != "" && uid != emitterUID {
		l.sawNode(uid)
	}
	switch typ {
	case msgInitialHeartbeat:
		if !own {
			l.publishAsync(msgHeartbeat, nil)
		}
		return
	case msgHeartbeat:
		return
	case msgAdapterClose:
		if !own {
			l.dropNode(uid)
		}
		return
	case msgFetchSockets, msgServerSideEmit, msgFetchSocketsResponse, msgServerSideEmitResponse, msgBroadcastClientCount, msgBroadcastAck:
		if own {
			return // this node's own requests and answers
		}
	}
	d, err := decodeStreamMessage(typ, e.Data, nsp)
	if err != nil {
		r.dropUndecodable("stream "+r.stream+" entry "+m.ID+" (type "+strconv.Itoa(typ)+")", err)
		return
	}
	switch typ {
	case msgFetchSocketsResponse, msgServerSideEmitResponse, msgBroadcastClientCount, msgBroadcastAck:
		r.onResponse(uid, typ, d)
		return
	}
	if r.inbox.open() {
		l.onMessage(m, typ, own, d)
		return
	}
	r.inbox.handle(own, func() { l.onMessage(m, typ, own, d) })
}

// onMessage handles a broadcast or a request (receive loop), its data d
// decoded (decodeStreamMessage).
func (l *streamLink) onMessage(m redis.XMessage, typ int, own bool, d anyMessage) {
	switch typ {
	case msgBroadcast:
		opts := d.Opts.toOpts()
		if d.RequestID != "" { // a broadcast with acks from another node
			if !own {
				l.deliverWithAck(d, opts)
			}
			return
		}
		if d.Packet.Type == 2 && d.Packet.ID == nil && !opts.Volatile { // what a restore replays
			l.r.tail.add(tailEntry{id: m.ID, nsp: l.nsp, data: d.Packet.Data, opts: d.Opts})
		}
		l.deliver(sio.Packet{Type: 2, Nsp: l.nsp, Data: d.Packet.Data, Offset: m.ID}, opts)
	case msgSocketsJoin, msgSocketsLeave, msgDisconnectSockets:
		// Our own come back here too and are applied then: in stream order.
		opts := d.Opts.toOpts()
		switch typ {
		case msgSocketsJoin:
			l.join(opts, d.Rooms)
		case msgSocketsLeave:
			l.leave(opts, d.Rooms)
		default:
			l.r.disconnect(l.local, opts, d.Close, l.barrier, l.mark, nil)
		}
	case msgFetchSockets:
		if own {
			return
		}
		socks := l.local.Fetch(d.Opts.toOpts())
		if socks == nil {
			socks = []sio.SocketInfo{}
		}
		l.publishAsync(msgFetchSocketsResponse, fetchResponseData{RequestID: d.RequestID, Sockets: socks})
	case msgServerSideEmit:
		if own {
			return
		}
		var answer func(any)
		if d.RequestID != "" {
			answer = func(ack any) {
				l.publishAsync(msgServerSideEmitResponse, packetData{RequestID: d.RequestID, Packet: ack})
			}
		}
		l.sse.receive(d.PacketArgs, answer)
	}
}

// deliverWithAck delivers a broadcast with acks of another node here (not
// to the sockets being restored: it is not recovered). The count and each
// ack go to the node's write queue: no goroutine per recipient.
func (l *streamLink) deliverWithAck(d anyMessage, opts sio.BroadcastOpts) {
	opts = withExcept(opts, l.restoringSockets())
	l.local.DeliverWithAck(sio.Packet{Type: 2, Nsp: l.nsp, Data: d.Packet.Data}, opts,
		func(n int) {
			l.publishAsync(msgBroadcastClientCount, clientCountData{RequestID: d.RequestID, ClientCount: n})
		},
		func(arg any) {
			l.publishAsync(msgBroadcastAck, packetData{RequestID: d.RequestID, Packet: arg})
		})
}

// onResponse applies another node's answer, its data d decoded.
func (r *RedisStreamsCluster) onResponse(uid string, typ int, d anyMessage) {
	switch typ {
	case msgBroadcastClientCount:
		r.ackCount(d.RequestID, uid, d.ClientCount)
		return
	case msgBroadcastAck:
		r.ackArg(d.RequestID, uid, d.PacketAck)
		return
	}
	r.answer(d.RequestID, uid, func(p *pendingRequest) {
		switch typ {
		case msgFetchSocketsResponse:
			p.sockets = append(p.sockets, d.Sockets...)
		case msgServerSideEmitResponse:
			p.acks = append(p.acks, d.PacketAck)
		}
	})
}

type streamPacket struct {
	Type int     `json:"type" msgpack:"type"`
	Data []any   `json:"data" msgpack:"data"`
	Nsp  string  `json:"nsp" msgpack:"nsp"`
	ID   *uint64 `json:"id,omitempty" msgpack:"id,omitempty"`
}

type streamData struct {
	Packet    streamPacket `json:"packet" msgpack:"packet"`
	RequestID string       `json:"requestId,omitempty" msgpack:"requestId,omitempty"` // a broadcast with acks
	Opts      wireOpts     `json:"opts" msgpack:"opts"`
}

// anyMessage is the data of any message type, decoded (decodeStreamMessage).
type anyMessage struct {
	Packet      streamPacket // a broadcast's packet
	PacketArgs  []any        // a serverSideEmit's packet: [event, ...args]
	PacketAck   any          // an answer's packet
	Opts        wireOpts
	RequestID   string
	Rooms       []string
	Close       bool
	Sockets     []sio.SocketInfo
	ClientCount int
}

func hasBinary(v any) bool {
	switch x := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range x {
			if hasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasBinary(e) {
				return true
			}
		}
	}
	return false
}

func encodeStreamData(p sio.Packet, nsp string, opts sio.BroadcastOpts, requestID string) (string, error) {
	d := streamData{
		Packet:    streamPacket{Type: p.Type, Data: p.Data, Nsp: nsp},
		RequestID: requestID,
		Opts:      wireOpts{Rooms: nonNil(opts.Rooms), Except: nonNil(opts.Except), Flags: map[string]any{}},
	}
	if opts.Volatile {
		d.Opts.Flags["volatile"] = true
	}
	if hasBinary(p.Data) {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetCustomStructTag("msgpack")
		enc.UseCompactInts(true)
		if err := enc.Encode(d); err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
	}
	b, err := json.Marshal(d)
	return string(b), err
}

type streamLink struct {
	r     *RedisStreamsCluster
	nsp   string
	local sio.Local
	sse   serverSide

	nmu   sync.Mutex
	nodes map[string]time.Time // other servers of the namespace, by uid: when last heard of

	rs restoreSet // sessions being restored (streams_restore.go)
}

// Publish implements sio.Link.
func (l *streamLink) Publish(p sio.Packet, opts sio.BroadcastOpts) bool {
	_, err := l.Append(p, opts)
	return err == nil
}

// Append implements sio.LogLink: XADD, returning the entry id.
func (l *streamLink) Append(p sio.Packet, opts sio.BroadcastOpts) (string, error) {
	r := l.r
	if !r.healthy.Load() {
		return "", errClusterDown
	}
	data, err := encodeStreamData(p, l.nsp, opts, "")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	id, err := r.c.XAdd(ctx, &redis.XAddArgs{Stream: r.stream, MaxLen: r.maxLen, Approx: true,
		Values: []any{"uid", r.uid, "nsp", l.nsp, "type", "3", "data", data}}).Result()
	if err != nil {
		r.healthy.Store(false)
		r.onError(err)
		return "", err
	}
	return id, nil
}

// Close implements sio.Link: the other servers stop counting this one.
func (l *streamLink) Close() {
	l.r.mu.Lock()
	delete(l.r.links, l.nsp)
	l.r.mu.Unlock()
	if l.r.healthy.Load() {
		_, _ = l.publish(context.Background(), msgAdapterClose, nil)
	}
}

// wireSession is Node's session encoding: base64 of msgpack {sid,pid,rooms,data}.
type wireSession struct {
	Sid   string   `msgpack:"sid"`
	Pid   string   `msgpack:"pid"`
	Rooms []string `msgpack:"rooms"`
	Data  any      `msgpack:"data"`
}

func encodeSession(s sio.Session) []byte {
	b, _ := msgpack.Marshal(wireSession{Sid: s.Sid, Pid: s.Pid, Rooms: s.Rooms, Data: s.Data})
	return []byte(base64.StdEncoding.EncodeToString(b))
}

// SaveSession implements sio.LogLink: the session of a connected socket,
// written soon (the write queue: a join applied by the receive loop does
// not wait for Redis) and refreshed while it stays connected.
func (l *streamLink) SaveSession(s sio.Session) {
	if s.Pid == "" {
		return
	}
	enc := encodeSession(s)
	l.r.mu.Lock()
	l.r.live[s.Pid] = enc
	l.r.mu.Unlock()
	l.r.writer.session(l.r.keyPfx+s.Pid, &sessionOp{value: enc, ttl: l.r.window})
}

// PersistSession implements sio.LogLink: written before it returns
// (bounded by publishTimeout), after the session's queued writes.
func (l *streamLink) PersistSession(s sio.Session) {
	if s.Pid == "" {
		return
	}
	l.r.mu.Lock()
	delete(l.r.live, s.Pid)
	l.r.mu.Unlock()
	key := l.r.keyPfx + s.Pid
	l.r.writer.session(key, &sessionOp{value: encodeSession(s), ttl: l.r.window})
	l.r.writer.flush(key)
}

// DropSession implements sio.LogLink: as PersistSession, a DEL.
func (l *streamLink) DropSession(pid string) {
	if pid == "" {
		return
	}
	l.r.mu.Lock()
	delete(l.r.live, pid)
	l.r.mu.Unlock()
	key := l.r.keyPfx + pid
	l.r.writer.session(key, &sessionOp{del: true})
	l.r.writer.flush(key)
}

// refreshLoop keeps connected sessions alive in Redis: a node that dies
// stops refreshing, and its sessions expire one window after its death.
func (r *RedisStreamsCluster) refreshLoop(ctx context.Context) {
	t := time.NewTicker(r.window / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		pids := make([]string, 0, len(r.live))
		for pid := range r.live {
			pids = append(pids, pid)
		}
		r.mu.Unlock()
		for i := 0; i < len(pids); i += 500 {
			batch := pids[i:min(i+500, len(pids))]
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := r.c.Pipelined(pctx, func(p redis.Pipeliner) error {
				for _, pid := range batch {
					p.PExpire(pctx, r.keyPfx+pid, r.window)
				}
				return nil
			})
			cancel()
			if err != nil {
				r.onError(err)
				break
			}
		}
	}
}

var offsetRE = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// maxRestoreEntries bounds a restore's replay to one client, as the memory
// store does (sio.maxReplayPackets): a session that missed more is not
// restored (a fresh session, as for an offset trimmed off the stream)
// rather than given a partial history. Node stops reading at 10000 entries
// too, but then recovers with what it read.
const maxRestoreEntries = 10000

// restoreScanLimit bounds the entries a restore reads: the stream is
// trimmed to about maxLen, so more means it is not; the restore is refused
// then too.
func (r *RedisStreamsCluster) restoreScanLimit() int { return int(2*r.maxLen) + maxRestoreEntries }

// idLess compares stream ids ("ms-seq") numerically.
func idLess(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am < bm || (am == bm && as < bs)
}

func splitID(id string) (uint64, uint64) {
	i := strings.IndexByte(id, '-')
	if i < 0 {
		return 0, 0
	}
	ms, _ := strconv.ParseUint(id[:i], 10, 64)
	seq, _ := strconv.ParseUint(id[i+1:], 10, 64)
	return ms, seq
}

// includes is selects for options as they come from the wire.
func includes(rooms map[string]bool, o wireOpts) bool {
	return selects(rooms, sio.BroadcastOpts{Rooms: o.Rooms, Except: o.Except})
}

func nextOffset(id string) string {
	i := strings.IndexByte(id, '-')
	seq, _ := strconv.ParseUint(id[i+1:], 10, 64)
	return id[:i+1] + strconv.FormatUint(seq+1, 10)
}

// ---- requests between nodes, as socket.io-adapter's ClusterAdapterWithHeartbeat ----

// Message data, field for field in Node's order.
type (
	roomsData struct { // SOCKETS_JOIN, SOCKETS_LEAVE
		Opts  wireOpts `json:"opts"`
		Rooms []string `json:"rooms"`
	}
	disconnectData struct {
		Opts  wireOpts `json:"opts"`
		Close bool     `json:"close"`
	}
	fetchData struct {
		Opts      wireOpts `json:"opts"`
		RequestID string   `json:"requestId"`
	}
	fetchResponseData struct {
		RequestID string           `json:"requestId"`
		Sockets   []sio.SocketInfo `json:"sockets"`
	}
	sseData struct {
		RequestID string `json:"requestId,omitempty"` // present: answers expected
		Packet    []any  `json:"packet"`
	}
	packetData struct { // SERVER_SIDE_EMIT_RESPONSE, BROADCAST_ACK
		RequestID string `json:"requestId"`
		Packet    any    `json:"packet"`
	}
	clientCountData struct {
		RequestID   string `json:"requestId"`
		ClientCount int    `json:"clientCount"`
	}
)

// mayHaveBinary: the message types Node encodes in msgpack when they carry binary.
func mayHaveBinary(typ int, data any) bool {
	switch d := data.(type) {
	case sseData:
		return hasBinary(d.Packet)
	case packetData:
		return hasBinary(d.Packet)
	case fetchResponseData:
		for _, s := range d.Sockets {
			if hasBinary(s.Data) || hasBinary(s.Handshake) {
				return true
			}
		}
	}
	return false
}

func encodeMessage(typ int, data any) (string, error) {
	if mayHaveBinary(typ, data) {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetCustomStructTag("json")
		enc.UseCompactInts(true)
		if err := enc.Encode(data); err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
	}
	b, err := marshalJSON(data)
	return string(b), err
}

// publish adds a message of this node to the stream (data nil: none) and
// returns its id.
func (l *streamLink) publish(ctx context.Context, typ int, data any) (string, error) {
	r := l.r
	values, err := l.entryValues(typ, data)
	if err != nil {
		return "", err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	id, err := r.c.XAdd(pctx, &redis.XAddArgs{Stream: r.stream, MaxLen: r.maxLen, Approx: true, Values: values}).Result()
	if err != nil {
		r.onError(err)
		return "", fmt.Errorf("cluster: not sent: %w", err)
	}
	return id, nil
}

// publishAsync queues a message of this node (the write queue: it never
// blocks, and costs no goroutine).
func (l *streamLink) publishAsync(typ int, data any) { l.r.writer.message(l, typ, data) }

// heartbeatLoop announces this node to the others on every namespace, and
// forgets the nodes not heard of for the heartbeat timeout.
func (r *RedisStreamsCluster) heartbeatLoop(ctx context.Context) {
	beat := time.NewTicker(r.heartbeat)
	defer beat.Stop()
	check := time.NewTicker(min(time.Second, r.heartbeat))
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			for _, l := range r.allLinks() {
				_, _ = l.publish(ctx, msgHeartbeat, nil)
			}
		case <-check.C:
			for _, l := range r.allLinks() {
				l.expireNodes()
			}
		}
	}
}

func (r *RedisStreamsCluster) allLinks() []*streamLink {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*streamLink, 0, len(r.links))
	for _, l := range r.links {
		out = append(out, l)
	}
	return out
}

func (l *streamLink) sawNode(uid string) {
	l.nmu.Lock()
	l.nodes[uid] = time.Now()
	l.nmu.Unlock()
}

func (l *streamLink) dropNode(uid string) {
	l.nmu.Lock()
	delete(l.nodes, uid)
	l.nmu.Unlock()
	l.r.nodeGone(uid)
}

func (l *streamLink) expireNodes() {
	var gone []string
	l.nmu.Lock()
	for uid, at := range l.nodes {
		if time.Since(at) > l.r.nodeTTL {
			gone = append(gone, uid)
		}
	}
	l.nmu.Unlock()
	for _, uid := range gone {
		l.dropNode(uid)
	}
}

// liveNodes are the other servers of the namespace, by uid.
func (l *streamLink) liveNodes() map[string]bool {
	l.nmu.Lock()
	defer l.nmu.Unlock()
	out := make(map[string]bool, len(l.nodes))
	for uid, at := range l.nodes {
		if time.Since(at) <= l.r.nodeTTL {
			out[uid] = true
		}
	}
	return out
}

// ServerCount implements sio.Requester: this node and the others heard of
// within the heartbeat timeout (as Node's ClusterAdapterWithHeartbeat).
func (l *streamLink) ServerCount(context.Context) (int, error) {
	return 1 + len(l.liveNodes()), nil
}

// FetchSockets implements sio.Requester.
func (l *streamLink) FetchSockets(ctx context.Context, opts sio.BroadcastOpts) ([]sio.SocketInfo, error) {
	if !l.r.healthy.Load() {
		return nil, errRequestsDown
	}
	missing := l.liveNodes()
	if len(missing) == 0 {
		return nil, nil
	}
	ctx, cancel := requestContext(ctx)
	defer cancel()
	id, p := l.r.register("fetchSockets", 0, missing)
	if _, err := l.publish(ctx, msgFetchSockets, fetchData{Opts: requestOpts(opts), RequestID: id}); err != nil {
		l.r.forget(id)
		return nil, err
	}
	socks, _, err := l.r.await(ctx, id, p)
	return socks, err
}

// BroadcastWithAck implements sio.AckBroadcaster as socket.io-adapter's
// ClusterAdapter does: a BROADCAST with a requestId on the stream; the
// other servers heard of answer with BROADCAST_CLIENT_COUNT, then a
// BROADCAST_ACK per recipient.
func (l *streamLink) BroadcastWithAck(ctx context.Context, p sio.Packet, opts sio.BroadcastOpts, onCount func(int), onAck func(any)) (int, error) {
	r := l.r
	if !r.healthy.Load() {
		return 0, errRequestsDown
	}
	live := l.liveNodes()
	if len(live) == 0 {
		return 0, nil
	}
	from := make(map[string]bool, len(live))
	for uid := range live {
		from[uid] = false // not counted yet
	}
	id, drop := r.registerAck(ctx, from, onCount, onAck)
	data, err := encodeStreamData(p, l.nsp, opts, id)
	if err != nil {
		drop()
		return 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := r.c.XAdd(pctx, &redis.XAddArgs{Stream: r.stream, MaxLen: r.maxLen, Approx: true,
		Values: []any{"uid", r.uid, "nsp", l.nsp, "type", strconv.Itoa(msgBroadcast), "data", data}}).Err(); err != nil {
		drop()
		r.onError(err)
		return 0, fmt.Errorf("cluster: broadcast with ack not sent: %w", err)
	}
	return len(live), nil
}

// ServerSideEmit implements sio.Requester.
func (l *streamLink) ServerSideEmit(ctx context.Context, event string, args []any) error {
	if event == "" {
		return errNoEvent
	}
	if !l.r.healthy.Load() {
		return errRequestsDown
	}
	_, err := l.publish(ctx, msgServerSideEmit, sseData{Packet: append([]any{event}, args...)})
	return err
}

// ServerSideEmitWithAck implements sio.Requester: one answer per other
// server heard of.
func (l *streamLink) ServerSideEmitWithAck(ctx context.Context, event string, args []any) ([]any, error) {
	if event == "" {
		return nil, errNoEvent
	}
	if !l.r.healthy.Load() {
		return nil, errRequestsDown
	}
	missing := l.liveNodes()
	if len(missing) == 0 {
		return []any{}, nil
	}
	ctx, cancel := requestContext(ctx)
	defer cancel()
	id, p := l.r.register("serverSideEmit", 0, missing)
	if _, err := l.publish(ctx, msgServerSideEmit, sseData{RequestID: id, Packet: append([]any{event}, args...)}); err != nil {
		l.r.forget(id)
		return nil, err
	}
	_, acks, err := l.r.await(ctx, id, p)
	return acks, err
}

func (l *streamLink) request(ctx context.Context, typ int, data any) error {
	if !l.r.healthy.Load() {
		return errRequestsDown
	}
	_, err := l.publish(ctx, typ, data)
	return err
}

// SocketsJoin implements sio.Requester.
func (l *streamLink) SocketsJoin(ctx context.Context, opts sio.BroadcastOpts, rooms []string) error {
	return l.request(ctx, msgSocketsJoin, roomsData{Opts: requestOpts(opts), Rooms: nonNil(rooms)})
}

// SocketsLeave implements sio.Requester.
func (l *streamLink) SocketsLeave(ctx context.Context, opts sio.BroadcastOpts, rooms []string) error {
	return l.request(ctx, msgSocketsLeave, roomsData{Opts: requestOpts(opts), Rooms: nonNil(rooms)})
}

// DisconnectSockets implements sio.Requester.
func (l *streamLink) DisconnectSockets(ctx context.Context, opts sio.BroadcastOpts, close bool) error {
	return l.request(ctx, msgDisconnectSockets, disconnectData{Opts: requestOpts(opts), Close: close})
}

// OnServerSideEmit implements sio.Requester.
func (l *streamLink) OnServerSideEmit(h sio.ServerSideHandler) { l.sse.set(h) }

// mark adds a heartbeat to the stream (harmless to every node) to wake the
// receive loop up.
func (l *streamLink) mark() { l.publishAsync(msgHeartbeat, nil) }

// barrier returns once the receive loop read past a heartbeat added now,
// so past everything this node added before (and delivered it here).
func (l *streamLink) barrier(ctx context.Context) error {
	id, err := l.publish(ctx, msgHeartbeat, nil)
	if err != nil {
		return err
	}
	return l.r.seen.wait(ctx, id)
}

// SerialQueueDepth is the disconnect batches and server-side events
// waiting to run on this node (a gauge).
func (r *RedisStreamsCluster) SerialQueueDepth() int {
	n := r.batches.depth()
	for _, l := range r.allLinks() {
		n += l.sse.queue.depth()
	}
	return n
}
