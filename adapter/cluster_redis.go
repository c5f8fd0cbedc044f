package adapter

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	requestCore
	c      redis.UniversalClient
	prefix string

	mu    sync.Mutex
	links map[string]*redisLink // by namespace
	ps    *redis.PubSub

	healthy atomic.Bool
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
// to be down, broadcasts skip it at once (local delivery goes on).
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

// backoff spaces retries while Redis is unreachable: 100 ms, doubling to 5 s.
type backoff struct{ d time.Duration }

// wait sleeps the current delay and doubles it; false when ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	if b.d == 0 {
		b.d = 100 * time.Millisecond
	}
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(b.d*2, 5*time.Second)
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
		req, ok := decodeRequest([]byte(m.Payload))
		if !ok {
			return
		}
		r.inbox.handle(req.UID == r.uid, func() { l.onRequest(req) })
	case strings.HasPrefix(ch, r.prefix+"-response#"):
		r.inbox.handle(true, func() { r.onResponse([]byte(m.Payload)) })
	case strings.HasPrefix(ch, r.prefix+"#"):
		var msg []msgpack.RawMessage
		if err := msgpack.Unmarshal([]byte(m.Payload), &msg); err != nil || len(msg) < 3 {
			return
		}
		if r.inbox.open() { // the common case: no closure, no uid to read
			r.onBroadcast(ch, msg)
			return
		}
		var uid string
		_ = msgpack.Unmarshal(msg[0], &uid)
		r.inbox.handle(uid == r.uid, func() { r.onBroadcast(ch, msg) })
	}
}

func (r *RedisCluster) link(nsp string) *redisLink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.links[nsp]
}

// wireOpts is opts as the Node adapter encodes it.
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

func (r *RedisCluster) onBroadcast(channel string, msg []msgpack.RawMessage) {
	// Our own broadcasts come back too: delivering them from here gives every
	// node's members the same (Redis) order.
	var pkt map[string]any
	if err := msgpack.Unmarshal(msg[1], &pkt); err != nil || pkt == nil {
		return
	}
	var opts wireOpts
	_ = msgpack.Unmarshal(msg[2], &opts)
	nsp, _ := pkt["nsp"].(string)
	if nsp == "" {
		nsp = "/"
	}
	l := r.link(nsp)
	if l == nil {
		return
	}
	// Messages on a room channel only matter where that room has members.
	if room := strings.TrimSuffix(strings.TrimPrefix(channel, l.channel), "#"); room != "" && room != channel && !l.local.HasRoom(room) {
		return
	}
	data, ok := pkt["data"].([]any)
	if !ok || len(data) == 0 {
		return
	}
	if t := toInt(pkt["type"]); t != 2 && t != 5 { // EVENT or BINARY_EVENT
		return
	}
	l.local.Deliver(sio.Packet{Type: 2, Nsp: nsp, Data: data}, opts.toOpts())
}

func toInt(v any) int {
	switch x := v.(type) {
	case int8:
		return int(x)
	case int16:
		return int(x)
	case int32:
		return int(x)
	case int64:
		return int(x)
	case uint8:
		return int(x)
	case uint16:
		return int(x)
	case uint32:
		return int(x)
	case uint64:
		return int(x)
	case float64:
		return int(x)
	case int:
		return x
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
	if err := l.r.c.Publish(ctx, channel, payload).Err(); err != nil {
		l.r.healthy.Store(false)
		l.r.onError(err)
		return false
	}
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

type request struct {
	UID       string         `json:"uid" msgpack:"uid"`
	RequestID string         `json:"requestId" msgpack:"requestId"`
	Type      int            `json:"type" msgpack:"type"`
	Opts      *wireOpts      `json:"opts" msgpack:"opts"`
	Rooms     []string       `json:"rooms" msgpack:"rooms"`
	Room      string         `json:"room" msgpack:"room"`
	SID       string         `json:"sid" msgpack:"sid"`
	Close     bool           `json:"close" msgpack:"close"`
	Packet    map[string]any `json:"packet" msgpack:"packet"`
	Data      []any          `json:"data" msgpack:"data"` // SERVER_SIDE_EMIT: [event, ...args]
}

// decodeRequest reads a request as Node's adapter does: JSON when it starts
// with "{", msgpack otherwise.
func decodeRequest(payload []byte) (request, bool) {
	var req request
	var err error
	if len(payload) > 0 && payload[0] == '{' {
		err = json.Unmarshal(payload, &req)
	} else {
		err = msgpack.Unmarshal(payload, &req)
	}
	return req, err == nil
}

// onRequest answers another node's request. This node's own socketsJoin,
// socketsLeave and disconnectSockets come back here too and are applied
// then, as the Node adapter does: in order with the broadcasts around them.
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
		ids := l.local.Sockets(req.Rooms)
		l.respond(map[string]any{"requestId": req.RequestID, "sockets": nonNil(ids)})
	case reqAllRooms:
		if own {
			return
		}
		l.respond(map[string]any{"requestId": req.RequestID, "rooms": nonNil(l.local.Rooms())})
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
		socks := l.local.Fetch(opts)
		if socks == nil {
			socks = []sio.SocketInfo{}
		}
		l.respond(map[string]any{"requestId": req.RequestID, "sockets": socks})
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
		l.local.DeliverWithAck(sio.Packet{Type: 2, Nsp: l.nsp, Data: data}, opts,
			func(n int) {
				l.respond(map[string]any{"type": reqBroadcastClientCount, "requestId": req.RequestID, "clientCount": n})
			},
			func(arg any) {
				b, err := msgpack.Marshal(map[string]any{"type": reqBroadcastAck, "requestId": req.RequestID, "packet": arg})
				if err == nil {
					l.publishResponse(b)
				}
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

func (l *redisLink) respond(v any) {
	b, err := marshalJSON(v)
	if err != nil {
		l.r.onError(err)
		return
	}
	l.publishResponse(b)
}

func (l *redisLink) publishResponse(b []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := l.r.c.Publish(ctx, l.responseChannel, b).Err(); err != nil {
		l.r.onError(err)
	}
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

// response is what a node answers on the response channels: JSON, but
// broadcast acks (BROADCAST_ACK) in msgpack, as Node writes them.
type response struct {
	Type        int             `json:"type" msgpack:"type"`
	RequestID   string          `json:"requestId" msgpack:"requestId"`
	Sockets     json.RawMessage `json:"sockets" msgpack:"-"`
	Data        any             `json:"data" msgpack:"data"`
	ClientCount int             `json:"clientCount" msgpack:"clientCount"`
	Packet      any             `json:"packet" msgpack:"packet"`
}

var barrierPrefix = []byte("sb-barrier:")

func (r *RedisCluster) onResponse(payload []byte) {
	if bytes.HasPrefix(payload, barrierPrefix) {
		r.seen.set(string(payload[len(barrierPrefix):]))
		return
	}
	if len(payload) == 0 {
		return
	}
	var res response
	var err error
	if payload[0] == '{' {
		err = json.Unmarshal(payload, &res)
	} else {
		err = msgpack.Unmarshal(payload, &res)
	}
	if err != nil || res.RequestID == "" {
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
			var socks []sio.SocketInfo
			if json.Unmarshal(res.Sockets, &socks) == nil {
				p.sockets = append(p.sockets, socks...)
			}
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
