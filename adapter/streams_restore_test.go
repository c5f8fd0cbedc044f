package adapter

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/internal/sio"
)

// ---- helpers: a real Socket.IO server on a streams cluster ----

// slowHook delays the commands delay names (before sending them); after
// delays what a command returns (after it ran). Pipelines wait for their
// slowest command.
type slowHook struct {
	delay func(name string) time.Duration
	after func(name string) time.Duration
}

func (h slowHook) wait(f func(string) time.Duration, cmds ...redis.Cmder) {
	if f == nil {
		return
	}
	var d time.Duration
	for _, c := range cmds {
		d = max(d, f(c.Name()))
	}
	if d > 0 {
		time.Sleep(d)
	}
}

func (h slowHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h slowHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.wait(h.delay, cmd)
		err := next(ctx, cmd)
		h.wait(h.after, cmd)
		return err
	}
}

func (h slowHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.wait(h.delay, cmds...)
		err := next(ctx, cmds)
		h.wait(h.after, cmds...)
		return err
	}
}

type streamsNode struct {
	c   *RedisStreamsCluster
	ns  *sio.Namespace
	url string
}

type streamsNodeOpts struct {
	prefix string
	cmd    *redis.Client // commands; default a fresh client
	reader *redis.Client // the receive loop's client; default a fresh client
	mw     sio.ConnectFunc
	tune   func(c *RedisStreamsCluster) // before Run
}

// quietLog is an OnError that logs until the test ends (the cluster's
// goroutines may report the closed clients afterwards).
func quietLog(t *testing.T) func(error) {
	var mu sync.Mutex
	over := false
	t.Cleanup(func() {
		mu.Lock()
		over = true
		mu.Unlock()
	})
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if !over {
			t.Logf("streams: %v", err)
		}
	}
}

func startStreamsNode(t *testing.T, addr string, o streamsNodeOpts) *streamsNode {
	t.Helper()
	if o.cmd == nil {
		o.cmd = testClient(t, addr)
	}
	if o.reader == nil {
		o.reader = testClient(t, addr)
	}
	c := NewRedisStreamsCluster(o.cmd, o.reader, StreamsOptions{
		Prefix: o.prefix, HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second,
		OnError: quietLog(t),
	})
	if o.tune != nil {
		o.tune(c)
	}
	// Pings far apart: a client waits for its CONNECT through a slow
	// middleware without answering them.
	s := sio.NewServer(sio.Options{PingInterval: 10 * time.Second, PingTimeout: 5 * time.Second, Cluster: c})
	ns := s.Of("/")
	if o.mw != nil {
		ns.Use(o.mw)
	}
	runCluster(t, c.Run)
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	waitFor(t, 5*time.Second, "the cluster is reading", func() bool {
		last, _ := c.lastDelivered.Load().(string)
		return last != "" // it read a heartbeat: what is added from now on is delivered
	})
	return &streamsNode{c: c, ns: ns, url: ts.URL}
}

func (nd *streamsNode) dial(t *testing.T, auth any) *rawclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := rawclient.Dial(ctx, nd.url, "/socket.io/", "/", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func resumeAuth(cl *rawclient.Client) map[string]any {
	return map[string]any{"pid": cl.PID, "offset": cl.Offset()}
}

// slowRecovery is a connect middleware that takes d for recovered sessions.
func slowRecovery(d time.Duration) sio.ConnectFunc {
	return func(ctx context.Context, h *sio.Handshake) error {
		if h.Recovered {
			time.Sleep(d)
		}
		return nil
	}
}

// seqReader collects a client's events of one name, whose first argument
// is a number, in arrival order, until stopped.
type seqReader struct {
	mu   sync.Mutex
	seqs []int
	at   []time.Time
	done chan struct{}
}

func readSeqs(cl *rawclient.Client, name string) *seqReader {
	r := &seqReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case e := <-cl.Events:
				if e.Name != name || len(e.Args) == 0 {
					continue
				}
				var n int
				if json.Unmarshal(e.Args[0], &n) != nil {
					continue
				}
				r.mu.Lock()
				r.seqs = append(r.seqs, n)
				r.at = append(r.at, time.Now())
				r.mu.Unlock()
			case <-cl.Disconnected:
				// What was read before the close is in the channel still.
				for {
					select {
					case e := <-cl.Events:
						var n int
						if e.Name == name && len(e.Args) > 0 && json.Unmarshal(e.Args[0], &n) == nil {
							r.mu.Lock()
							r.seqs = append(r.seqs, n)
							r.at = append(r.at, time.Now())
							r.mu.Unlock()
						}
					default:
						return
					}
				}
			}
		}
	}()
	return r
}

func (r *seqReader) get() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs)
}

func (r *seqReader) wait(t *testing.T, what string, cond func([]int) bool) []int {
	t.Helper()
	var got []int
	waitFor(t, 15*time.Second, what, func() bool {
		got = r.get()
		return cond(got)
	})
	return got
}

// contiguous reports the first gap or duplicate of seqs, which must run
// from first to last by one.
func contiguous(seqs []int, first, last int) error {
	if len(seqs) == 0 {
		return fmt.Errorf("nothing received (want %d..%d)", first, last)
	}
	for i, n := range seqs {
		if n != first+i {
			return fmt.Errorf("at %d: got %d, want %d (around: %v)", i, n, first+i, seqs[max(0, i-3):min(len(seqs), i+4)])
		}
	}
	if seqs[len(seqs)-1] != last {
		return fmt.Errorf("ends at %d, want %d", seqs[len(seqs)-1], last)
	}
	return nil
}

// ---- recovery does not pause the receive loop ----

// While a client recovers with many missed broadcasts through a slow
// connect middleware (500 ms), broadcasts to another socket of the node keep
// arriving at once; the recovered socket gets everything exactly once, in
// order: what it missed, what came during its restore (a room it was made
// to join meanwhile included), then live.
func TestStreamsRecoveryDoesNotPauseDelivery(t *testing.T) {
	srv := redistest.Start(t)
	const slow = 500 * time.Millisecond
	nd := startStreamsNode(t, srv.Addr, streamsNodeOpts{prefix: testPrefix(t), mw: slowRecovery(slow)})
	ns := nd.ns
	ctx := tctx(t, 60*time.Second)

	rec, watcher := nd.dial(t, nil), nd.dial(t, nil)
	before := readSeqs(rec, "m")
	seq := 0
	emit := func(rooms ...string) {
		t.Helper()
		if err := ns.To(rooms...).Emit("m", seq); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	emit(rec.SID)
	before.wait(t, "the first broadcast", func(s []int) bool { return len(s) == 1 })
	rec.Close()
	waitFor(t, 5*time.Second, "the node let the client go", func() bool { return ns.LocalCount() == 1 })
	<-before.done
	const missed = 800
	for range missed {
		emit(rec.SID)
	}

	// Live traffic to the watcher every 10 ms, and to the recovering
	// session's room and to a room it joins during its restore.
	lat := readSeqs(watcher, "w")
	var sentMu sync.Mutex
	sentAt := map[int]time.Time{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			sentMu.Lock()
			sentAt[i] = time.Now()
			sentMu.Unlock()
			if err := ns.To(watcher.SID).Emit("w", i); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	joined := make(chan error, 1)
	go func() {
		time.Sleep(slow / 3) // during the restore
		for range 20 {
			emit(rec.SID)
		}
		joined <- ns.SocketsJoin(ctx, sio.BroadcastOpts{Rooms: []string{rec.SID}}, "late")
	}()
	start := time.Now()
	back := nd.dial(t, resumeAuth(rec))
	took := time.Since(start)
	if !back.Recovered(rec.SID) {
		t.Fatalf("not recovered (sid %s, was %s)", back.SID, rec.SID)
	}
	if took < slow {
		t.Fatalf("the recovery took %v, less than its middleware: the test measured nothing", took)
	}
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	after := readSeqs(back, "m")
	for range 10 {
		emit("late") // reaches it only through the join during the restore
	}
	close(stop)
	wg.Wait()

	got := after.wait(t, "everything reaches the recovered socket", func(s []int) bool { return len(s) >= seq-1 })
	time.Sleep(100 * time.Millisecond) // a duplicate would come by now
	if err := contiguous(after.get(), 1, seq-1); err != nil {
		t.Fatalf("recovered socket: %v (%d received)", err, len(got))
	}

	lat.mu.Lock()
	defer lat.mu.Unlock()
	sentMu.Lock()
	defer sentMu.Unlock()
	var worst time.Duration
	during := 0
	for i, n := range lat.seqs {
		sent := sentAt[n]
		if d := lat.at[i].Sub(sent); d > worst {
			worst = d
		}
		if sent.After(start) && sent.Before(start.Add(took)) {
			during++
		}
	}
	t.Logf("recovery of %d missed took %v; %d watcher broadcasts during it, worst latency %v", missed, took, during, worst)
	if during < 10 {
		t.Fatalf("only %d watcher broadcasts during the recovery", during)
	}
	if worst > 200*time.Millisecond {
		t.Fatalf("a broadcast to another socket took %v during a recovery (middleware %v): the receive loop paused", worst, slow)
	}
	if n := nd.c.Restoring(); n != 0 {
		t.Fatalf("%d restores still open", n)
	}
}

// 50 clients recover at once, each through a middleware of its own length
// (one longer than 3 s), while a broadcast to all goes out every 5 ms:
// every one gets every broadcast exactly once, in order, across its
// disconnection.
// Restores replay from the tail in memory when it has their offset, from
// the stream in Redis otherwise: both exactly once, in order.
var tailModes = []struct {
	name      string
	tune      func(c *RedisStreamsCluster)
	fromRedis bool
}{
	{"tail", nil, false},
	{"no-tail", func(c *RedisStreamsCluster) { c.tail.maxBytes = -1 }, true},
	// The tail keeps 5 entries: every offset has left it by the time its
	// client comes back.
	{"evicted", func(c *RedisStreamsCluster) { c.tail.maxEntries = 5 }, true},
}

func TestStreamsConcurrentRecoveriesExactlyOnce(t *testing.T) {
	for _, m := range tailModes {
		t.Run(m.name, func(t *testing.T) {
			srv := redistest.Start(t)
			var delays sync.Map // pid -> middleware delay
			nd := startStreamsNode(t, srv.Addr, streamsNodeOpts{prefix: testPrefix(t), tune: m.tune, mw: func(ctx context.Context, h *sio.Handshake) error {
				if h.Recovered {
					pid, _ := h.Auth["pid"].(string)
					if d, ok := delays.Load(pid); ok {
						time.Sleep(d.(time.Duration))
					}
				}
				return nil
			}})
			runConcurrentRecoveries(t, nd, 50, &delays, 3500*time.Millisecond)
			checkRestoreReads(t, nd.c, 50, m.fromRedis)
		})
	}
}

// The same while the receive loop lags 200 ms behind the stream: a replay
// from Redis then reads entries the loop delivers only after the socket is
// back; one from the tail has only what the loop delivered. (Not
// "evicted": a loop this far behind has delivered few entries past the
// offsets, which may still be in a 5-entry tail.)
func TestStreamsRecoveryWhileTheLoopLags(t *testing.T) {
	for _, m := range tailModes[:2] {
		t.Run(m.name, func(t *testing.T) {
			srv := redistest.Start(t)
			reader := testClient(t, srv.Addr)
			var lag atomic.Bool
			reader.AddHook(slowHook{after: func(name string) time.Duration {
				if name == "xread" && lag.Load() {
					return 200 * time.Millisecond
				}
				return 0
			}})
			var delays sync.Map
			nd := startStreamsNode(t, srv.Addr, streamsNodeOpts{prefix: testPrefix(t), reader: reader, tune: m.tune})
			lag.Store(true)
			runConcurrentRecoveries(t, nd, 10, &delays, 0)
			checkRestoreReads(t, nd.c, 10, m.fromRedis)
		})
	}
}

func checkRestoreReads(t *testing.T, c *RedisStreamsCluster, n int, fromRedis bool) {
	t.Helper()
	mem, red := c.RestoreReads()
	want := [2]uint64{uint64(n), 0}
	if fromRedis {
		want = [2]uint64{0, uint64(n)}
	}
	if got := [2]uint64{mem, red}; got != want {
		t.Errorf("restores read from memory, Redis: %v, want %v", got, want)
	}
}

func runConcurrentRecoveries(t *testing.T, nd *streamsNode, n int, delays *sync.Map, longest time.Duration) {
	t.Helper()
	ns := nd.ns
	clients := make([]*rawclient.Client, n)
	readers := make([]*seqReader, n)
	for i := range clients {
		clients[i] = nd.dial(t, nil)
		readers[i] = readSeqs(clients[i], "s")
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if err := ns.To().Emit("s", int(sent.Load())); err != nil {
				t.Error(err)
				return
			}
			sent.Add(1)
		}
	}()
	for i, r := range readers {
		r.wait(t, fmt.Sprintf("client %d receives", i), func(s []int) bool { return len(s) >= 5 })
	}
	for i, cl := range clients {
		d := time.Duration(i%7) * 40 * time.Millisecond
		if i == 0 {
			d = longest
		}
		delays.Store(cl.PID, d)
		cl.Close()
	}
	waitFor(t, 10*time.Second, "the node let them go", func() bool { return ns.LocalCount() == 0 })
	for _, r := range readers {
		<-r.done
	}
	time.Sleep(100 * time.Millisecond) // they miss some

	backs := make([]*rawclient.Client, n)
	after := make([]*seqReader, n)
	var dials sync.WaitGroup
	for i, cl := range clients {
		dials.Add(1)
		go func() {
			defer dials.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b, err := rawclient.Dial(ctx, nd.url, "/socket.io/", "/", resumeAuth(cl), nil)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			backs[i] = b
			after[i] = readSeqs(b, "s")
		}()
	}
	dials.Wait()
	for _, b := range backs {
		if b != nil {
			t.Cleanup(func() { b.Close() })
		}
	}
	if t.Failed() {
		close(stop)
		wg.Wait()
		return
	}
	time.Sleep(200 * time.Millisecond) // live traffic after the recoveries too
	close(stop)
	wg.Wait()
	last := int(sent.Load()) - 1
	for i := range clients {
		if !backs[i].Recovered(clients[i].SID) {
			t.Errorf("client %d not recovered", i)
			continue
		}
		before := readers[i].get()
		first := before[len(before)-1] + 1
		if err := contiguous(before, before[0], first-1); err != nil {
			t.Errorf("client %d before its disconnection: %v", i, err)
		}
		after[i].wait(t, fmt.Sprintf("client %d gets the last broadcast", i), func(s []int) bool { return len(s) > 0 && s[len(s)-1] >= last })
	}
	time.Sleep(100 * time.Millisecond) // a duplicate would come by now
	for i := range clients {
		if backs[i] == nil || !backs[i].Recovered(clients[i].SID) {
			continue
		}
		before := readers[i].get()
		first := before[len(before)-1] + 1
		if err := contiguous(after[i].get(), first, last); err != nil {
			t.Errorf("client %d after its recovery: %v", i, err)
		}
	}
	if c := nd.c.RestoreOverflows(); c != 0 {
		t.Errorf("%d restores overflowed", c)
	}
	waitFor(t, 5*time.Second, "every restore closed", func() bool { return nd.c.Restoring() == 0 })
}

// A restore whose buffer overflows while its middleware runs fails: the
// client gets a fresh session (counted), never a partial history.
func TestStreamsRestoreBufferOverflowGivesAFreshSession(t *testing.T) {
	srv := redistest.Start(t)
	const slow = 300 * time.Millisecond
	nd := startStreamsNode(t, srv.Addr, streamsNodeOpts{prefix: testPrefix(t), mw: slowRecovery(slow),
		tune: func(c *RedisStreamsCluster) { c.restoreBufEntries = 5 }})
	ns := nd.ns
	rec := nd.dial(t, nil)
	if err := ns.To(rec.SID).Emit("m", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "an offset", func() bool { return rec.Offset() != "" })
	rec.Close()
	waitFor(t, 5*time.Second, "the node let the client go", func() bool { return ns.LocalCount() == 0 })
	go func() {
		time.Sleep(slow / 3)
		for i := range 10 {
			_ = ns.To(rec.SID).Emit("m", 1+i)
		}
	}()
	back := nd.dial(t, resumeAuth(rec))
	if back.Recovered(rec.SID) {
		t.Fatal("recovered although its restore buffer overflowed")
	}
	if back.PID == "" || back.PID == rec.PID {
		t.Fatalf("pid %q: want a fresh one", back.PID)
	}
	if n := nd.c.RestoreOverflows(); n != 1 {
		t.Fatalf("RestoreOverflows = %d, want 1", n)
	}
	if n := nd.c.Restoring(); n != 0 {
		t.Fatalf("Restoring = %d, want 0", n)
	}
	// Within the buffer, the same restore succeeds, with all of it.
	if err := ns.To(back.SID).Emit("m", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "an offset", func() bool { return back.Offset() != "" })
	back.Close()
	waitFor(t, 5*time.Second, "the node let the client go", func() bool { return ns.LocalCount() == 0 })
	go func() {
		time.Sleep(slow / 3)
		for i := range 5 {
			_ = ns.To(back.SID).Emit("m", 1+i)
		}
	}()
	again := nd.dial(t, resumeAuth(back))
	if !again.Recovered(back.SID) {
		t.Fatal("not recovered within the buffer")
	}
	if err := contiguous(readSeqs(again, "m").wait(t, "the buffered broadcasts", func(s []int) bool { return len(s) >= 5 }), 1, 5); err != nil {
		t.Fatal(err)
	}
	if n := nd.c.RestoreOverflows(); n != 1 {
		t.Fatalf("RestoreOverflows = %d, want 1", n)
	}
}

// ---- Redis writes leave the receive loop ----

// A socketsJoin applied by the receive loop saves the session through the
// write queue: while Redis takes 600 ms per SET, broadcasts right after it
// still arrive at once, and the session is saved after all.
func TestStreamsRemoteJoinDoesNotWaitForRedis(t *testing.T) {
	srv := redistest.Start(t)
	cmd := testClient(t, srv.Addr)
	var slowSet atomic.Bool
	cmd.AddHook(slowHook{delay: func(name string) time.Duration {
		if name == "set" && slowSet.Load() {
			return 600 * time.Millisecond
		}
		return 0
	}})
	prefix := testPrefix(t)
	nd := startStreamsNode(t, srv.Addr, streamsNodeOpts{prefix: prefix, cmd: cmd})
	ns := nd.ns
	ctx := tctx(t, 30*time.Second)
	target, watcher := nd.dial(t, nil), nd.dial(t, nil)
	got := readSeqs(watcher, "w")
	slowSet.Store(true)

	var worst time.Duration
	for i := range 5 {
		if err := ns.SocketsJoin(ctx, sio.BroadcastOpts{Rooms: []string{target.SID}}, fmt.Sprintf("room%d", i)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := ns.To(watcher.SID).Emit("w", i); err != nil {
			t.Fatal(err)
		}
		got.wait(t, "the broadcast after the join", func(s []int) bool { return len(s) == i+1 })
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst broadcast latency after a remote join, SET taking 600 ms: %v (queue depth %d)", worst, nd.c.WriteQueueDepth())
	if worst > 200*time.Millisecond {
		t.Fatalf("a broadcast after a remote join took %v: the receive loop waited for the session's SET", worst)
	}
	// The joins were applied and the session saved, later.
	if err := ns.To("room4").Emit("w", 100); err != nil {
		t.Fatal(err)
	}
	if e, err := target.Next(ctx); err != nil || e.Name != "w" {
		t.Fatalf("the joined socket: %v %v", e, err)
	}
	key := prefix + ":sio:session:" + target.PID
	waitFor(t, 10*time.Second, "the session saved with its rooms", func() bool {
		raw, err := srv.Client(t).Get(ctx, key).Result()
		return err == nil && raw != "" && sessionHasRoom(raw, "room4")
	})
	if n := nd.c.WriteQueueDropped(); n != 0 {
		t.Fatalf("%d writes dropped", n)
	}
	waitFor(t, 10*time.Second, "the queue drained", func() bool { return nd.c.WriteQueueDepth() == 0 })
}

func sessionHasRoom(raw, room string) bool {
	s, ok := decodeSessionForTest(raw)
	return ok && slices.Contains(s.Rooms, room)
}

// The write queue is bounded: past its cap a write is dropped and counted;
// repeated saves of one session take one place.
func TestStreamsWriteQueueBoundedAndCoalesced(t *testing.T) {
	srv := redistest.Start(t)
	cmd := testClient(t, srv.Addr)
	release := make(chan struct{})
	cmd.AddHook(slowHook{delay: func(name string) time.Duration {
		if name == "set" {
			<-release
		}
		return 0
	}})
	w := newStreamWriter(cmd, func(error) {})
	w.max = 4
	w.session("k0", &sessionOp{value: []byte("a"), ttl: time.Minute}) // taken by the worker, which stalls on it
	waitFor(t, 5*time.Second, "the worker took it", func() bool { return w.queued() == 0 })
	for i := range 3 {
		for v := range 10 { // coalesced: one place each
			w.session(fmt.Sprintf("k%d", 1+i), &sessionOp{value: []byte(fmt.Sprint(v)), ttl: time.Minute})
		}
	}
	if d := w.queued(); d != 3 {
		t.Fatalf("depth %d after 30 saves of 3 sessions, want 3", d)
	}
	w.session("k4", &sessionOp{value: []byte("x"), ttl: time.Minute})
	w.session("k5", &sessionOp{value: []byte("y"), ttl: time.Minute}) // over the cap
	if d, n := w.queued(), w.dropped.Load(); d != 4 || n != 1 {
		t.Fatalf("depth %d, dropped %d: want 4 and 1", d, n)
	}
	close(release)
	waitFor(t, 5*time.Second, "the queue drained", func() bool { return w.queued() == 0 })
	rc := srv.Client(t)
	waitFor(t, 5*time.Second, "the writes done", func() bool {
		v, _ := rc.Get(context.Background(), "k3").Result()
		return v == "9"
	})
	for k, want := range map[string]string{"k1": "9", "k2": "9", "k4": "x", "k5": ""} {
		if v, _ := rc.Get(context.Background(), k).Result(); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
}

// ---- a broadcast with acks costs a bounded number of goroutines ----

// Node 2 has N sockets that answer a broadcast with acks from node 1; its
// Redis takes 50 ms per command. The counts and acks it sends back go
// through its write queue: the process's goroutines stay within a bound
// meanwhile (one per ack before), and every ack arrives.
func TestStreamsBroadcastWithAckBoundedGoroutines(t *testing.T) {
	srv := redistest.Start(t)
	prefix := testPrefix(t)
	cmd := testClient(t, srv.Addr)
	var slow atomic.Bool
	cmd.AddHook(slowHook{delay: func(name string) time.Duration {
		if name == "xadd" && slow.Load() {
			return 50 * time.Millisecond
		}
		return 0
	}})
	n1 := startStreamsNode(t, srv.Addr, streamsNodeOpts{prefix: prefix})
	n2 := startStreamsNode(t, srv.Addr, streamsNodeOpts{prefix: prefix, cmd: cmd})
	for _, nd := range []*streamsNode{n1, n2} {
		waitFor(t, 5*time.Second, "both nodes count each other", func() bool {
			c, err := nd.ns.ServerCount(tctx(t, time.Second))
			return err == nil && c == 2
		})
	}
	const n = 300
	for i := range n {
		cl := n2.dial(t, nil)
		cl.AckEvents(func(e rawclient.Event) any { return i })
	}
	time.Sleep(200 * time.Millisecond)
	base, baseAll := adapterGoroutines(), runtime.NumGoroutine()
	slow.Store(true)

	var peak, peakAll atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			peak.Store(max(peak.Load(), int64(adapterGoroutines())))
			peakAll.Store(max(peakAll.Load(), int64(runtime.NumGoroutine())))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	acks, err := n1.ns.To().EmitWithAck(ctx, "q", 1)
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != n {
		t.Fatalf("%d acks, want %d", len(acks), n)
	}
	extra := int(peak.Load()) - base
	t.Logf("broadcast with acks to %d sockets: %d adapter goroutines at most above the %d before (all goroutines: %d above %d, the handler workers of the sockets included)",
		n, extra, base, int(peakAll.Load())-baseAll, baseAll)
	if extra > 5 {
		t.Fatalf("%d more adapter goroutines during a broadcast with acks to %d sockets: not bounded", extra, n)
	}
}

// adapterGoroutines counts the goroutines running code of this package.
func adapterGoroutines() int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	total := 0
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		var n int
		if _, err := fmt.Sscanf(rec, "%d @", &n); err != nil {
			continue
		}
		if strings.Contains(rec, "switchboard/switchboard/adapter.") {
			total += n
		}
	}
	return total
}

func decodeSessionForTest(raw string) (wireSession, bool) {
	var ws wireSession
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return ws, false
	}
	return ws, msgpack.Unmarshal(b, &ws) == nil
}
