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
type RedisStreamsCluster struct {
	c       redis.UniversalClient // commands
	reader  redis.UniversalClient // the blocking XREAD loop (its own connection and timeouts)
	stream  string
	keyPfx  string // session keys: "<prefix>:sio:session:<pid>" (Node: "sio:session:")
	uid     string
	window  time.Duration // session lifetime after a disconnect (RECOVERY_WINDOW)
	maxLen  int64
	onError func(error)

	mu    sync.Mutex
	links map[string]*streamLink
	live  map[string][]byte // pid -> encoded session of connected sockets (refreshed)

	// deliverMu is held while the read loop delivers a batch, and by a
	// restore from its replay until the restored socket is registered, so
	// that every entry reaches it exactly once (replayed or live).
	deliverMu     sync.Mutex
	lastDelivered atomic.Value // string: id of the last entry delivered here
	restoring     map[string]*time.Timer

	healthy atomic.Bool
}

// StreamsOptions configures a RedisStreamsCluster; zero values are defaults.
type StreamsOptions struct {
	Prefix         string        // stream name and key prefix; default "socket.io"
	RecoveryWindow time.Duration // how long a session outlives its connection; default 2m
	MaxLen         int64         // approximate stream length kept; default 10000
	OnError        func(error)
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
	r := &RedisStreamsCluster{c: c, reader: reader, stream: o.Prefix, keyPfx: o.Prefix + ":sio:session:",
		uid: randomUID(), window: o.RecoveryWindow, maxLen: o.MaxLen, onError: o.OnError,
		links: map[string]*streamLink{}, live: map[string][]byte{}, restoring: map[string]*time.Timer{}}
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
	l := &streamLink{r: r, nsp: nsp, local: local}
	r.mu.Lock()
	r.links[nsp] = l
	r.mu.Unlock()
	return l
}

const blockTime = 2 * time.Second

// Run reads the stream from its end until ctx is done, refreshing the
// sessions of connected sockets; while Redis is down it backs off.
func (r *RedisStreamsCluster) Run(ctx context.Context) {
	go r.refreshLoop(ctx)
	last := "$"
	var b backoff
	for ctx.Err() == nil {
		res, err := r.reader.XRead(ctx, &redis.XReadArgs{Streams: []string{r.stream, last}, Count: 100, Block: blockTime}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return
			}
			r.healthy.Store(false)
			r.onError(err)
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
		if last != "$" {
			r.lastDelivered.Store(last)
		}
		r.deliverMu.Unlock()
	}
}

// onEntry delivers an entry to this node's sockets, our own broadcasts
// included: every node delivers in stream order.
func (r *RedisStreamsCluster) onEntry(m redis.XMessage) {
	nsp, _ := m.Values["nsp"].(string)
	r.mu.Lock()
	l := r.links[nsp]
	r.mu.Unlock()
	if l == nil {
		return
	}
	typ, _ := m.Values["type"].(string)
	if typ != "3" { // BROADCAST; other cluster messages are not used by Switchboard
		return
	}
	pkt, opts, err := decodeStreamData(m.Values["data"])
	if err != nil || pkt.Data == nil {
		return
	}
	if t := pkt.Type; t != 2 && t != 5 {
		return
	}
	l.local.Deliver(sio.Packet{Type: 2, Nsp: nsp, Data: pkt.Data, Offset: m.ID}, opts.toOpts())
}

type streamPacket struct {
	Type int     `json:"type" msgpack:"type"`
	Data []any   `json:"data" msgpack:"data"`
	Nsp  string  `json:"nsp" msgpack:"nsp"`
	ID   *uint64 `json:"id,omitempty" msgpack:"id,omitempty"`
}

type streamData struct {
	Packet streamPacket `json:"packet" msgpack:"packet"`
	Opts   wireOpts     `json:"opts" msgpack:"opts"`
}

// decodeStreamData reads an entry's data: JSON, or base64 msgpack when the
// packet has binary (as the Node adapter writes it).
func decodeStreamData(v any) (streamPacket, wireOpts, error) {
	s, _ := v.(string)
	var d streamData
	var err error
	if strings.HasPrefix(s, "{") {
		err = json.Unmarshal([]byte(s), &d)
	} else {
		var raw []byte
		if raw, err = base64.StdEncoding.DecodeString(s); err == nil {
			err = msgpack.Unmarshal(raw, &d)
		}
	}
	return d.Packet, d.Opts, err
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

func encodeStreamData(p sio.Packet, nsp string, opts sio.BroadcastOpts) (string, error) {
	d := streamData{
		Packet: streamPacket{Type: p.Type, Data: p.Data, Nsp: nsp},
		Opts:   wireOpts{Rooms: nonNil(opts.Rooms), Except: nonNil(opts.Except), Flags: map[string]any{}},
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
	data, err := encodeStreamData(p, l.nsp, opts)
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

// Close implements sio.Link.
func (l *streamLink) Close() {
	l.r.mu.Lock()
	delete(l.r.links, l.nsp)
	l.r.mu.Unlock()
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
// written now and refreshed while it stays connected.
func (l *streamLink) SaveSession(s sio.Session) {
	if s.Pid == "" {
		return
	}
	enc := encodeSession(s)
	l.r.mu.Lock()
	l.r.live[s.Pid] = enc
	l.r.mu.Unlock()
	l.r.set(s.Pid, enc)
}

// PersistSession implements sio.LogLink.
func (l *streamLink) PersistSession(s sio.Session) {
	if s.Pid == "" {
		return
	}
	l.r.mu.Lock()
	delete(l.r.live, s.Pid)
	l.r.mu.Unlock()
	l.r.set(s.Pid, encodeSession(s))
}

// DropSession implements sio.LogLink.
func (l *streamLink) DropSession(pid string) {
	if pid == "" {
		return
	}
	l.r.mu.Lock()
	delete(l.r.live, pid)
	l.r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := l.r.c.Del(ctx, l.r.keyPfx+pid).Err(); err != nil {
		l.r.onError(err)
	}
}

func (r *RedisStreamsCluster) set(pid string, enc []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := r.c.Set(ctx, r.keyPfx+pid, enc, r.window).Err(); err != nil {
		r.onError(err)
	}
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

// maxRestoreEntries bounds a restore's replay (Node bounds it too).
const maxRestoreEntries = 10000

// RestoreSession implements sio.LogLink.
func (l *streamLink) RestoreSession(pid, offset string) (*sio.Session, error) {
	if !offsetRE.MatchString(offset) {
		return nil, nil
	}
	r := l.r
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	raw, err := r.c.GetDel(ctx, r.keyPfx+pid).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore session: %w", err)
	}
	l.r.mu.Lock()
	delete(l.r.live, pid)
	l.r.mu.Unlock()
	if at, err := r.c.XRange(ctx, r.stream, offset, offset).Result(); err != nil || len(at) == 0 {
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
	rooms := map[string]bool{}
	for _, room := range ws.Rooms {
		rooms[room] = true
	}
	// Replay what this node's read loop has delivered since offset; what
	// comes after is delivered live once the socket is registered (Settle).
	end := r.hold(pid, offset)
	from := nextOffset(offset)
	for read := 0; read < maxRestoreEntries && end != "" && !idLess(end, from); {
		entries, err := r.c.XRangeN(ctx, r.stream, from, end, 500).Result()
		if err != nil {
			l.Settle(pid)
			return nil, err
		}
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			read++
			from = nextOffset(e.ID)
			if nsp, _ := e.Values["nsp"].(string); nsp != l.nsp {
				continue
			}
			if t, _ := e.Values["type"].(string); t != "3" {
				continue
			}
			pkt, opts, err := decodeStreamData(e.Values["data"])
			if err != nil || pkt.Type != 2 || pkt.ID != nil || opts.Flags["volatile"] == true || !includes(rooms, opts) {
				continue
			}
			s.Missed = append(s.Missed, append(pkt.Data, e.ID))
		}
		if len(entries) < 500 {
			break
		}
	}
	return s, nil
}

// settleAfter bounds how long a restore may hold live delivery.
const settleAfter = 3 * time.Second

// hold takes deliverMu for a restore (released by Settle), once the read
// loop has delivered at least up to offset (bounded wait), and returns the
// id of the last entry delivered here.
func (r *RedisStreamsCluster) hold(pid, offset string) string {
	deadline := time.Now().Add(time.Second)
	for {
		r.deliverMu.Lock()
		last, _ := r.lastDelivered.Load().(string)
		if (last != "" && !idLess(last, offset)) || time.Now().After(deadline) {
			break
		}
		r.deliverMu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	r.mu.Lock()
	r.restoring[pid] = time.AfterFunc(settleAfter, func() { r.settle(pid) })
	r.mu.Unlock()
	last, _ := r.lastDelivered.Load().(string)
	return last
}

// Settle implements sio.LogLink.
func (l *streamLink) Settle(pid string) { l.r.settle(pid) }

func (r *RedisStreamsCluster) settle(pid string) {
	r.mu.Lock()
	t, ok := r.restoring[pid]
	delete(r.restoring, pid)
	r.mu.Unlock()
	if ok {
		t.Stop()
		r.deliverMu.Unlock()
	}
}

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

func includes(rooms map[string]bool, o wireOpts) bool {
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

func nextOffset(id string) string {
	i := strings.IndexByte(id, '-')
	seq, _ := strconv.ParseUint(id[i+1:], 10, 64)
	return id[:i+1] + strconv.FormatUint(seq+1, 10)
}
