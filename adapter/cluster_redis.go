package adapter

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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
type RedisCluster struct {
	c       redis.UniversalClient
	prefix  string
	uid     string
	onError func(error)

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
	r := &RedisCluster{c: c, prefix: prefix, uid: randomUID(), onError: onError, links: map[string]*redisLink{}}
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
	if err := ps.Subscribe(ctx, chans...); err != nil {
		r.onError(err)
	}
	var b backoff
	for ctx.Err() == nil {
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

func (r *RedisCluster) dispatch(m *redis.Message) {
	ch := m.Channel
	switch {
	case strings.HasPrefix(ch, r.prefix+"-request#"):
		if l := r.link(strings.TrimSuffix(strings.TrimPrefix(ch, r.prefix+"-request#"), "#")); l != nil {
			l.onRequest([]byte(m.Payload))
		}
	case strings.HasPrefix(ch, r.prefix+"-response#"):
		// We send no requests that expect responses yet.
	case strings.HasPrefix(ch, r.prefix+"#"):
		r.onBroadcast(ch, []byte(m.Payload))
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

func (r *RedisCluster) onBroadcast(channel string, payload []byte) {
	var msg []msgpack.RawMessage
	if err := msgpack.Unmarshal(payload, &msg); err != nil || len(msg) < 3 {
		return
	}
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
}

func (l *redisLink) onRequest(payload []byte) {
	var req request
	var err error
	if len(payload) > 0 && payload[0] == '{' {
		err = json.Unmarshal(payload, &req)
	} else {
		err = msgpack.Unmarshal(payload, &req)
	}
	if err != nil || req.UID == l.r.uid {
		return
	}
	var opts sio.BroadcastOpts
	if req.Opts != nil {
		opts = req.Opts.toOpts()
	}
	switch req.Type {
	case reqSockets:
		ids := l.local.Sockets(req.Rooms)
		l.respond(map[string]any{"requestId": req.RequestID, "sockets": nonNil(ids)})
	case reqAllRooms:
		l.respond(map[string]any{"requestId": req.RequestID, "rooms": nonNil(l.local.Rooms())})
	case reqRemoteJoin, reqRemoteLeave, reqRemoteDisconnect:
		if req.Opts == nil { // one socket by id
			if len(l.local.Sockets([]string{req.SID})) == 0 {
				return
			}
			opts = sio.BroadcastOpts{Rooms: []string{req.SID}}
			if req.Room != "" {
				req.Rooms = []string{req.Room}
			}
		}
		switch req.Type {
		case reqRemoteJoin:
			l.local.Join(opts, req.Rooms)
		case reqRemoteLeave:
			l.local.Leave(opts, req.Rooms)
		default:
			l.local.Disconnect(opts, req.Close)
		}
		if req.Opts == nil {
			l.respond(map[string]any{"requestId": req.RequestID})
		}
	case reqRemoteFetch:
		socks := l.local.Fetch(opts)
		if socks == nil {
			socks = []sio.SocketInfo{}
		}
		l.respond(map[string]any{"requestId": req.RequestID, "sockets": socks})
	case reqBroadcast: // a broadcast with acks from another node
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
	// SERVER_SIDE_EMIT: Switchboard registers no server-side listeners, and,
	// like a Node server without listeners, does not answer.
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (l *redisLink) respond(v any) {
	b, err := json.Marshal(v)
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

// ServerCount is the number of nodes subscribed to the namespace's requests.
func (l *redisLink) ServerCount(ctx context.Context) (int, error) {
	res, err := l.r.c.PubSubNumSub(ctx, l.requestChannel).Result()
	if err != nil {
		return 0, err
	}
	return int(res[l.requestChannel]), nil
}
