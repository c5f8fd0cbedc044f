package adapter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/internal/sio"
)

// Both clusters count what they drop (switchboard_cluster_decode_errors_total).
var (
	_ interface{ DecodeErrors() uint64 } = (*RedisCluster)(nil)
	_ interface{ DecodeErrors() uint64 } = (*RedisStreamsCluster)(nil)
)

// ---- what Node sends decodes ----

// corpus reads the seed files of a fuzz target (testdata/fuzz_seeds.cjs
// writes them from what Node's adapters and emitter publish): the values of
// each file, []byte(...) or string(...).
func corpus(t *testing.T, target string) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "seed-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds for %s (%v): run node adapter/testdata/fuzz_seeds.cjs", target, err)
	}
	out := map[string][]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a corpus file", f)
		}
		var vals []string
		for _, l := range lines[1:] {
			open := strings.IndexByte(l, '(')
			if open < 0 || !strings.HasSuffix(l, ")") {
				t.Fatalf("%s: %q", f, l)
			}
			v, err := strconv.Unquote(l[open+1 : len(l)-1])
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			vals = append(vals, v)
		}
		out[filepath.Base(f)] = vals
	}
	return out
}

// Everything in the seed corpora is what Node legitimately publishes: all
// of it decodes.
func TestNodeMessagesDecode(t *testing.T) {
	for name, v := range corpus(t, "FuzzRedisBroadcast") {
		if _, err := decodeRedisBroadcast([]byte(v[0])); err != nil {
			t.Errorf("broadcast %s: %v", name, err)
		}
	}
	for name, v := range corpus(t, "FuzzRedisRequest") {
		if _, err := decodeRequest([]byte(v[0]), "/"); err != nil {
			t.Errorf("request %s: %v", name, err)
		}
	}
	for name, v := range corpus(t, "FuzzRedisResponse") {
		if _, err := decodeResponse([]byte(v[0])); err != nil {
			t.Errorf("response %s: %v", name, err)
		}
	}
	types := map[int]int{}
	for name, v := range corpus(t, "FuzzStreamEntry") {
		values := map[string]any{"uid": v[0], "nsp": v[1], "type": v[2]}
		if v[3] != "" {
			values["data"] = v[3]
		}
		e, err := decodeEntry(values)
		if err == nil {
			_, err = decodeStreamMessage(e.Type, e.Data, e.Nsp)
		}
		if err != nil {
			t.Errorf("stream entry %s (type %s): %v", name, v[2], err)
		}
		types[e.Type]++
	}
	for typ := msgInitialHeartbeat; typ <= msgAdapterClose; typ++ {
		if types[typ] == 0 {
			t.Errorf("no stream entry of type %d in the corpus", typ)
		}
	}
	// And what this node writes.
	b, r, res, entries := goSeeds()
	for _, p := range b {
		if _, err := decodeRedisBroadcast(p); err != nil {
			t.Errorf("our broadcast %q: %v", p, err)
		}
	}
	for _, p := range r {
		if _, err := decodeRequest(p, "/"); err != nil {
			t.Errorf("our request %s: %v", p, err)
		}
	}
	for _, p := range res {
		if _, err := decodeResponse(p); err != nil {
			t.Errorf("our response %s: %v", p, err)
		}
	}
	for _, v := range entries {
		if _, err := decodeStreamMessage(atoi(t, v[2]), v[3], v[1]); err != nil {
			t.Errorf("our entry of type %s %s: %v", v[2], v[3], err)
		}
	}
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The fields a broadcast decodes to are the ones Node sent.
func TestDecodeRedisBroadcastFields(t *testing.T) {
	p := msgpackOf(t, []any{"emitter",
		map[string]any{"type": 2, "data": []any{"m", []byte{1}, map[string]any{"t": time.Unix(1, 0)}}, "nsp": "/chat"},
		map[string]any{"rooms": []any{"a", "b"}, "except": []any{"c"}, "flags": map[string]any{"volatile": true, "compress": true, "timeout": 1.5}}})
	b, err := decodeRedisBroadcast(p)
	if err != nil {
		t.Fatal(err)
	}
	o := b.Opts.toOpts()
	if b.UID != "emitter" || b.Nsp != "/chat" || len(b.Data) != 3 || strings.Join(o.Rooms, ",") != "a,b" ||
		strings.Join(o.Except, ",") != "c" || !o.Volatile || !o.Compress {
		t.Fatalf("decoded %+v, %+v", b, o)
	}
	// No nsp: "/", as in Node; no rooms or except (new Set(undefined)): everybody.
	b, err = decodeRedisBroadcast(msgpackOf(t, []any{"n", map[string]any{"type": 5, "data": []any{"m"}}, map[string]any{}}))
	if err != nil || b.Nsp != "/" || len(b.Opts.Rooms) != 0 {
		t.Fatalf("decoded %+v, %v", b, err)
	}
}

// What does not decode, and why.
func TestDecodeRejects(t *testing.T) {
	pkt := map[string]any{"type": 2, "data": []any{"m"}, "nsp": "/"}
	opts := map[string]any{"rooms": []any{}, "except": []any{}}
	with := func(m map[string]any, k string, v any) map[string]any {
		out := map[string]any{}
		for kk, vv := range m {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	deep := any("x")
	for range maxWireDepth {
		deep = []any{deep}
	}
	broadcasts := []struct {
		name string
		v    any
		want string
	}{
		{"rooms not an array", []any{"n", pkt, with(opts, "rooms", 12345)}, "opts.rooms: not an array"},
		{"rooms a string", []any{"n", pkt, with(opts, "rooms", "abc")}, "opts.rooms: not an array"},
		{"a room not a string", []any{"n", pkt, with(opts, "rooms", []any{"a", 1})}, "not an array of strings"},
		{"except not strings", []any{"n", pkt, with(opts, "except", []any{true})}, "opts.except"},
		{"flags not a map", []any{"n", pkt, with(opts, "flags", []any{})}, "opts.flags: not a map"},
		{"volatile not a boolean", []any{"n", pkt, with(opts, "flags", map[string]any{"volatile": 1})}, "flags.volatile"},
		{"timeout not a number", []any{"n", pkt, with(opts, "flags", map[string]any{"timeout": "1"})}, "flags.timeout"},
		{"unknown flag", []any{"n", pkt, with(opts, "flags", map[string]any{"everywhere": true})}, "unknown flag"},
		{"unknown option", []any{"n", pkt, with(opts, "room", "a")}, `unknown field "room"`},
		{"no opts", []any{"n", pkt, nil}, "opts: not a map"},
		{"opts a list", []any{"n", pkt, []any{}}, "opts: not a map"},
		{"type a string", []any{"n", with(pkt, "type", "2"), opts}, "packet.type: not an integer"},
		{"type a fraction", []any{"n", with(pkt, "type", 2.5), opts}, "packet.type: not an integer"},
		{"type not an event", []any{"n", with(pkt, "type", 1), opts}, "not an event"},
		{"no type", []any{"n", with(pkt, "type", nil), opts}, "packet.type"},
		{"data not an array", []any{"n", with(pkt, "data", "m"), opts}, "packet.data: not an event"},
		{"data empty", []any{"n", with(pkt, "data", []any{}), opts}, "packet.data: not an event"},
		{"reserved event", []any{"n", with(pkt, "data", []any{"disconnect"}), opts}, "reserved"},
		{"event name a map", []any{"n", with(pkt, "data", []any{map[string]any{}}), opts}, "event name"},
		{"nested too deep", []any{"n", with(pkt, "data", []any{"m", deep}), opts}, "too deep"},
		{"nsp not a string", []any{"n", with(pkt, "nsp", 1), opts}, "packet.nsp"},
		{"unknown packet field", []any{"n", with(pkt, "attachments", 1), opts}, "unknown field"},
		{"uid not a string", []any{1, pkt, opts}, "uid"},
		{"two elements", []any{"n", pkt}, "not [uid, packet, opts]"},
		{"four elements", []any{"n", pkt, opts, 1}, "not [uid, packet, opts]"},
	}
	for _, c := range broadcasts {
		_, err := decodeRedisBroadcast(msgpackOf(t, c.v))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("broadcast, %s: error %v, want %q", c.name, err, c.want)
		}
	}
	raw := []struct {
		name string
		b    []byte
		want string
	}{
		{"4G-element array", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"4G-entry map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"4 GB string", []byte{0x93, 0xdb, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"trailing bytes", append(msgpackOf(t, []any{"n", pkt, opts}), 0), "trailing"},
		{"unknown extension", []byte{0x93, 0xd4, 0x01, 0x00, 0x80, 0x80}, "extension"},
		{"0xc1", []byte{0xc1}, "0xc1"},
		{"a date in the year 300000", timestampBroadcast(t, 300000), "date out of range"},
		{"empty", nil, "truncated"},
		{"JSON", []byte(`["n",{"type":2,"data":["m"]},{}]`), "not"},
	}
	for _, c := range raw {
		_, err := decodeRedisBroadcast(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("broadcast, %s: error %v, want %q", c.name, err, c.want)
		}
	}

	requests := []struct {
		name, json, want string
	}{
		{"unknown type", `{"uid":"n","requestId":"r","type":42}`, "unknown type"},
		{"response type", `{"uid":"n","requestId":"r","type":8}`, "unknown type"},
		{"type a string", `{"uid":"n","requestId":"r","type":"5"}`, "request.type"},
		{"no type", `{"uid":"n","requestId":"r"}`, "request.type"},
		{"fetch without opts", `{"uid":"n","requestId":"r","type":5}`, "opts missing"},
		{"fetch without requestId", `{"uid":"n","type":5,"opts":{"rooms":[],"except":[]}}`, "requestId missing"},
		{"fetch, rooms 12345", `{"uid":"n","requestId":"r","type":5,"opts":{"rooms":12345,"except":[]}}`, "request.opts.rooms"},
		{"join, except not strings", `{"type":2,"opts":{"rooms":[],"except":[1]},"rooms":["x"]}`, "request.opts.except"},
		{"join, rooms not strings", `{"type":2,"opts":{"rooms":[],"except":[]},"rooms":"x"}`, "request.rooms"},
		{"join by sid without sid", `{"uid":"n","requestId":"r","type":2,"room":"x"}`, "sid missing"},
		{"disconnect, close a string", `{"type":4,"opts":{"rooms":[],"except":[]},"close":"yes"}`, "request.close"},
		{"serverSideEmit without data", `{"uid":"n","type":6}`, "request.data"},
		{"serverSideEmit, event a number", `{"uid":"n","type":6,"data":[1]}`, "event name"},
		{"unknown field", `{"uid":"n","type":6,"data":["e"],"extra":1}`, `unknown field "extra"`},
		{"uid a number", `{"uid":1,"type":6,"data":["e"]}`, "request.uid"},
		{"data on a join", `{"type":2,"opts":{"rooms":[],"except":[]},"rooms":[],"data":["e"]}`, "unexpected data"},
		{"not JSON", `{"uid":`, "not JSON"},
	}
	for _, c := range requests {
		_, err := decodeRequest([]byte(c.json), "/")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("request, %s: error %v, want %q", c.name, err, c.want)
		}
	}
	bcast := func(p map[string]any, o any) []byte {
		return msgpackOf(t, map[string]any{"uid": "n", "requestId": "r", "type": reqBroadcast, "packet": p, "opts": o})
	}
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"broadcast of another namespace", bcast(with(pkt, "nsp", "/admin"), opts), "packet.nsp"},
		{"broadcast without opts", bcast(pkt, nil), "opts missing"},
		{"broadcast, data not an array", bcast(with(pkt, "data", 1), opts), "request.packet.data"},
		{"broadcast, rooms 12345", bcast(pkt, with(opts, "rooms", 12345)), "request.opts.rooms"},
	} {
		_, err := decodeRequest(c.b, "/")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("request, %s: error %v, want %q", c.name, err, c.want)
		}
	}

	for _, c := range []struct{ name, json, want string }{
		{"no requestId", `{"sockets":[]}`, "requestId"},
		{"unknown type", `{"type":2,"requestId":"r"}`, "response.type"},
		{"clientCount a string", `{"type":8,"requestId":"r","clientCount":"3"}`, "clientCount"},
		{"clientCount negative", `{"type":8,"requestId":"r","clientCount":-1}`, "clientCount"},
		{"sockets not an array", `{"requestId":"r","sockets":{}}`, "response.sockets"},
		{"a socket without id", `{"requestId":"r","sockets":[{"rooms":[]}]}`, "id: missing"},
		{"a socket's rooms not strings", `{"requestId":"r","sockets":[{"id":"s","rooms":[1]}]}`, "rooms"},
		{"a socket's unknown field", `{"requestId":"r","sockets":[{"id":"s","x":1}]}`, "unknown field"},
		{"rooms not strings", `{"requestId":"r","rooms":[1]}`, "response.rooms"},
		{"unknown field", `{"requestId":"r","extra":1}`, "unknown field"},
	} {
		_, err := decodeResponse([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("response, %s: error %v, want %q", c.name, err, c.want)
		}
	}

	for _, c := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown type", map[string]any{"uid": "n", "nsp": "/", "type": "99"}, "unknown type"},
		{"type not a number", map[string]any{"uid": "n", "nsp": "/", "type": "3a"}, "unknown type"},
		{"no type", map[string]any{"uid": "n", "nsp": "/"}, "type: missing"},
		{"unknown field", map[string]any{"uid": "n", "nsp": "/", "type": "2", "x": "1"}, "unknown field"},
	} {
		_, err := decodeEntry(c.values)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("entry, %s: error %v, want %q", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		name string
		typ  int
		data string
		want string
	}{
		{"broadcast, rooms 12345", msgBroadcast, `{"packet":{"type":2,"data":["m"]},"opts":{"rooms":12345,"except":[]}}`, "data.opts.rooms"},
		{"broadcast without opts", msgBroadcast, `{"packet":{"type":2,"data":["m"]}}`, "data.opts: missing"},
		{"broadcast of another namespace", msgBroadcast, `{"packet":{"type":2,"data":["m"],"nsp":"/admin"},"opts":{}}`, "packet.nsp"},
		{"broadcast, data not an array", msgBroadcast, `{"packet":{"type":2,"data":{}},"opts":{}}`, "packet.data"},
		{"broadcast, type 0", msgBroadcast, `{"packet":{"type":0,"data":["m"]},"opts":{}}`, "not an event"},
		{"broadcast, unknown field", msgBroadcast, `{"packet":{"type":2,"data":["m"]},"opts":{},"rooms":["a"]}`, "unknown field"},
		{"broadcast, flags wrong", msgBroadcast, `{"packet":{"type":2,"data":["m"]},"opts":{"flags":{"volatile":"x"}}}`, "flags.volatile"},
		{"join, rooms not strings", msgSocketsJoin, `{"opts":{},"rooms":[1]}`, "data.rooms"},
		{"disconnect, close a number", msgDisconnectSockets, `{"opts":{},"close":1}`, "data.close"},
		{"fetch without requestId", msgFetchSockets, `{"opts":{}}`, "requestId"},
		{"fetch answer, sockets not an array", msgFetchSocketsResponse, `{"requestId":"r","sockets":1}`, "data.sockets"},
		{"serverSideEmit, no event", msgServerSideEmit, `{"packet":[]}`, "data.packet"},
		{"count, not a number", msgBroadcastClientCount, `{"requestId":"r","clientCount":"1"}`, "clientCount"},
		{"no data", msgBroadcast, "", "data: missing"},
		{"not base64", msgBroadcast, "!!", "neither JSON nor base64"},
		{"base64 of a 4G array", msgBroadcast, "3f////8=", "truncated"},
		{"not JSON", msgBroadcast, "{", "not JSON"},
	} {
		_, err := decodeStreamMessage(c.typ, c.data, "/")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("stream data, %s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// timestampBroadcast is a broadcast of ["m", <a Date in year>] (a msgpack
// timestamp 96).
func timestampBroadcast(t *testing.T, year int) []byte {
	b := msgpackOf(t, []any{"n", map[string]any{"type": 2, "data": []any{"m", time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)}}, map[string]any{}})
	if _, err := decodeMsgpack(b); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	return b
}

// ---- against real Redis: dropped, counted, reported ----

// errLog records what a cluster reports.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

// undecodable lists the decode errors reported.
func (l *errLog) undecodable() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, err := range l.errs {
		if errors.Is(err, ErrUndecodable) {
			out = append(out, err.Error())
		}
	}
	return out
}

// waitSubscribed waits until a RedisCluster of prefix listens to "/": its
// request channel and its pattern (the test's redis-server has no other).
func waitSubscribed(t *testing.T, c *redis.Client, prefix string) {
	t.Helper()
	waitFor(t, 5*time.Second, "the cluster is subscribed", func() bool {
		n, err := c.PubSubNumSub(tctx(t, time.Second), prefix+"-request#/#").Result()
		pats, perr := c.PubSubNumPat(tctx(t, time.Second)).Result()
		return err == nil && perr == nil && n[prefix+"-request#/#"] > 0 && pats > 0
	})
}

// Issue 11: a broadcast on "socket.io#/#" whose options do not decode
// (rooms: 12345), published as a Node server would, reached every socket,
// one in no room included. It is dropped, counted and reported; the next
// broadcast goes through as usual.
func TestRedisUndecodableBroadcastDropped(t *testing.T) {
	r := redistest.Start(t)
	prefix := testPrefix(t)
	var log errLog
	c := NewRedisCluster(testClient(t, r.Addr), prefix, log.add)
	runCluster(t, c.Run)
	f := newFakeLocal()
	f.add("alone")        // in no room
	f.add("member", "r1") // in the room
	f.link = c.Attach("/", f)
	pub := testClient(t, r.Addr)
	waitSubscribed(t, pub, prefix)

	publish := func(channel string, v any) {
		t.Helper()
		if err := pub.Publish(tctx(t, 2*time.Second), channel, msgpackOf(t, v)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	packet := func(ev string) map[string]any { return map[string]any{"type": 2, "data": []any{ev, "x"}, "nsp": "/"} }
	publish(prefix+"#/#", []any{"nodeuid", packet("widened"), map[string]any{"rooms": 12345, "except": []any{}, "flags": map[string]any{}}})
	publish(prefix+"#/#", []any{"nodeuid", packet("bad-except"), map[string]any{"rooms": []any{"r1"}, "except": "alone"}})
	publish(prefix+"#/#", []any{"nodeuid", packet("bad-flags"), map[string]any{"rooms": []any{}, "except": []any{}, "flags": map[string]any{"volatile": "no"}}})
	publish(prefix+"#/#", []any{"nodeuid", map[string]any{"type": "2", "data": []any{"bad-type", "x"}, "nsp": "/"}, map[string]any{"rooms": []any{}, "except": []any{}}})
	publish(prefix+"#/#", []any{"nodeuid", map[string]any{"type": 2, "data": []any{"other-nsp", "x"}, "nsp": "/admin"}, map[string]any{"rooms": []any{}, "except": []any{}}})
	publish(prefix+"#/#r1#", []any{"nodeuid", packet("room-bad"), map[string]any{"rooms": 12345}})
	if err := pub.Publish(tctx(t, 2*time.Second), prefix+"#/#", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}).Err(); err != nil {
		t.Fatal(err)
	}
	// Then well-formed ones, as Node's adapter writes them: they arrive after the others.
	publish(prefix+"#/#r1#", []any{"nodeuid", packet("to-room"), map[string]any{"rooms": []any{"r1"}, "except": []any{}, "flags": map[string]any{}}})
	publish(prefix+"#/#", []any{"nodeuid", packet("to-all"), map[string]any{"rooms": []any{}, "except": []any{}, "flags": map[string]any{}}})
	waitFor(t, 5*time.Second, "the well-formed broadcast", func() bool { return len(f.events("alone")) > 0 })

	if got := strings.Join(f.events("alone"), " "); got != "to-all:x" {
		t.Errorf("the socket in no room got %q, want only to-all:x", got)
	}
	if got := strings.Join(f.events("member"), " "); got != "to-room:x to-all:x" {
		t.Errorf("the room member got %q, want to-room:x to-all:x", got)
	}
	if n := c.DecodeErrors(); n != 7 {
		t.Errorf("DecodeErrors() = %d, want 7", n)
	}
	errs := log.undecodable()
	if len(errs) != 7 {
		t.Fatalf("reported %d decode errors, want 7: %q", len(errs), errs)
	}
	for _, e := range errs {
		if !strings.Contains(e, prefix+"#/#") || strings.Contains(e, "widened") || strings.Contains(e, "12345") {
			t.Errorf("report %q: want the channel, not the payload", e)
		}
	}
	if !strings.Contains(errs[0], "opts.rooms: not an array") {
		t.Errorf("report %q: want what failed", errs[0])
	}
}

// Requests and responses that do not decode are dropped and counted: no
// answer, no action.
func TestRedisUndecodableRequestsDropped(t *testing.T) {
	r := redistest.Start(t)
	prefix := testPrefix(t)
	var log errLog
	c := NewRedisCluster(testClient(t, r.Addr), prefix, log.add)
	runCluster(t, c.Run)
	f := newFakeLocal()
	f.add("s1", "r1")
	f.link = c.Attach("/", f)
	pub := testClient(t, r.Addr)
	waitSubscribed(t, pub, prefix)

	rsub := testClient(t, r.Addr).Subscribe(context.Background(), prefix+"-response#/#")
	t.Cleanup(func() { _ = rsub.Close() })
	if _, err := rsub.Receive(tctx(t, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	send := func(channel, payload string) {
		t.Helper()
		if err := pub.Publish(tctx(t, 2*time.Second), channel, payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	req := prefix + "-request#/#"
	send(req, `{"uid":"n","requestId":"bad1","type":5,"opts":{"rooms":12345,"except":[]}}`) // fetch everything?
	send(req, `{"uid":"n","type":2,"opts":{"rooms":[],"except":"r1"},"rooms":["joined"]}`)  // join everybody?
	send(req, `{"uid":"n","type":4,"opts":{"rooms":"r1"},"close":true}`)                    // disconnect everybody?
	send(req, `{"uid":"n","requestId":"bad2","type":42}`)
	send(req, `{"uid":"n","requestId":"bad3","type":5}`)
	send(prefix+"-response#/#", `{"type":8,"requestId":"x","clientCount":"many"}`)
	send(prefix+"-response#/#", `not a response`)
	send(req, `{"uid":"n","requestId":"good","type":5,"opts":{"rooms":["r1"],"except":[]}}`)

	// The response channel carries our two bad responses, then the answer
	// to the well-formed request: none to the others.
	for i := 0; ; i++ {
		m, err := rsub.ReceiveMessage(tctx(t, 3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(m.Payload, `"requestId":"good"`) {
			break
		}
		if strings.Contains(m.Payload, `"requestId":"bad`) || i >= 2 {
			t.Fatalf("answer %s: want answers to the well-formed request only", m.Payload)
		}
	}
	if rooms := f.roomsOf("s1"); strings.Join(rooms, ",") != "r1" || len(f.gotGone()) != 0 {
		t.Fatalf("s1: rooms %v, gone %v: an undecodable request acted", rooms, f.gotGone())
	}
	if n := c.DecodeErrors(); n != 7 {
		t.Errorf("DecodeErrors() = %d, want 7 (reports: %q)", n, log.undecodable())
	}
}

// The streams adapter drops, counts and reports the entries that do not
// decode, Node's legitimate ones (what @socket.io/redis-streams-adapter
// XADDs) going through.
func TestStreamsUndecodableEntriesDropped(t *testing.T) {
	r := redistest.Start(t)
	prefix := testPrefix(t)
	var log errLog
	c := NewRedisStreamsCluster(testClient(t, r.Addr), testClient(t, r.Addr), StreamsOptions{
		Prefix: prefix, HeartbeatInterval: time.Second, HeartbeatTimeout: 5 * time.Second, OnError: log.add,
	})
	runCluster(t, c.Run)
	f := newFakeLocal()
	f.add("alone")
	f.add("member", "r1")
	f.link = c.AttachLog("/", f)
	waitFor(t, 5*time.Second, "the cluster is reading", c.Healthy)
	// The read loop starts at "$": wait until it reads (our own heartbeat comes back).
	time.Sleep(300 * time.Millisecond)

	add := func(values ...any) {
		t.Helper()
		if err := testClient(t, r.Addr).XAdd(tctx(t, 2*time.Second), &redis.XAddArgs{Stream: prefix, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(typ, data string) { add("uid", "nodeuid", "nsp", "/", "type", typ, "data", data) }
	entry("3", `{"packet":{"type":2,"data":["widened","x"]},"opts":{"rooms":12345,"except":[],"flags":{}}}`)
	entry("3", `{"packet":{"type":2,"data":["bad-except","x"]},"opts":{"rooms":["r1"],"except":"alone","flags":{}}}`)
	entry("3", `{"packet":{"type":2,"data":["other-nsp","x"],"nsp":"/admin"},"opts":{"rooms":[],"except":[]}}`)
	entry("3", `{"packet":{"type":2,"data":"not-an-event"},"opts":{"rooms":[],"except":[]}}`)
	entry("4", `{"opts":{"rooms":12345,"except":[]},"rooms":["joined"]}`)
	entry("99", `{}`)
	add("uid", "nodeuid", "nsp", "/", "type", "3", "data", `{"packet":{"type":2,"data":["m"]},"opts":{}}`, "extra", "1")
	entry("3", `{"packet":{"type":2,"data":["to-room","x"]},"opts":{"rooms":["r1"],"except":[],"flags":{}}}`)
	entry("3", `{"packet":{"type":2,"data":["to-all","x"]},"opts":{"rooms":[],"except":[],"flags":{}}}`)
	waitFor(t, 5*time.Second, "the well-formed broadcast", func() bool { return len(f.events("alone")) > 0 })

	if got := strings.Join(f.events("alone"), " "); got != "to-all:x" {
		t.Errorf("the socket in no room got %q, want only to-all:x", got)
	}
	if got := strings.Join(f.events("member"), " "); got != "to-room:x to-all:x" {
		t.Errorf("the room member got %q, want to-room:x to-all:x", got)
	}
	if rooms := f.roomsOf("alone"); len(rooms) != 0 {
		t.Errorf("the undecodable join acted: rooms %v", rooms)
	}
	if n := c.DecodeErrors(); n != 7 {
		t.Errorf("DecodeErrors() = %d, want 7 (reports: %q)", n, log.undecodable())
	}
	for _, e := range log.undecodable() {
		if !strings.Contains(e, "stream "+prefix+" entry ") || strings.Contains(e, "widened") {
			t.Errorf("report %q: want the stream and entry, not the payload", e)
		}
	}
}

// A msgpack broadcast with binary, as Node's adapter sends it, still
// reaches the sockets (what notepack.io writes: bin, timestamps, nil).
func TestRedisNodeBinaryBroadcastDelivered(t *testing.T) {
	r := redistest.Start(t)
	prefix := testPrefix(t)
	c := NewRedisCluster(testClient(t, r.Addr), prefix, nil)
	runCluster(t, c.Run)
	var mu sync.Mutex
	var got []sio.Packet
	l := &recordLocal{fakeLocal: newFakeLocal(), on: func(p sio.Packet) { mu.Lock(); got = append(got, p); mu.Unlock() }}
	l.add("s1")
	c.Attach("/", l)
	waitSubscribed(t, testClient(t, r.Addr), prefix)
	for name, v := range corpus(t, "FuzzRedisBroadcast") {
		if !strings.Contains(v[0], "\xa3bin") {
			continue
		}
		// Node's own channel and prefix: rewrite the channel only.
		b, err := decodeRedisBroadcast([]byte(v[0]))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ch := prefix + "#" + b.Nsp + "#"
		if len(b.Opts.Rooms) == 1 {
			ch += b.Opts.Rooms[0] + "#"
		}
		if err := testClient(t, r.Addr).Publish(tctx(t, 2*time.Second), ch, v[0]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the binary broadcast", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > 0 })
	mu.Lock()
	defer mu.Unlock()
	if bin, ok := got[0].Data[1].([]byte); !ok || string(bin) != "\x01\x02\x03" {
		t.Fatalf("delivered %#v", got[0].Data)
	}
}

// recordLocal records the packets delivered.
type recordLocal struct {
	*fakeLocal
	on func(sio.Packet)
}

func (r *recordLocal) Deliver(p sio.Packet, opts sio.BroadcastOpts) {
	r.on(p)
	r.fakeLocal.Deliver(p, opts)
}
