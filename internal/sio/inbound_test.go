package sio_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboard/switchboard/internal/sio"
)

// Tests of the per-connection byte budget: the input waiting for handlers (MaxInbound, with
// backpressure on the reader) and the output a client that does not read can hold up
// (MaxBuffered, WriteTimeout).

// limitCounter is an Observer that counts the limits reported.
type limitCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *limitCounter) Handshake(string, string)                    {}
func (o *limitCounter) Event(string, string, time.Duration, string) {}
func (o *limitCounter) Emitted(string, string)                      {}
func (o *limitCounter) Panic(string, string)                        {}
func (o *limitCounter) Limit(name string) {
	o.mu.Lock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[name]++
	o.mu.Unlock()
}

func (o *limitCounter) get(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[name]
}

// sndBufListener shrinks the send buffer of accepted connections, so that a client that does
// not read blocks the server's writes after a few KB.
type sndBufListener struct{ net.Listener }

func (l sndBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// startBudget starts a server with opts on a listener with small send buffers.
func startBudget(t *testing.T, opts sio.Options, setup func(s *sio.Server)) (*httptest.Server, *sio.Server) {
	t.Helper()
	s := sio.NewServer(opts)
	setup(s)
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewUnstartedServer(mux)
	ts.Listener = sndBufListener{ts.Listener}
	ts.Start()
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return ts, s
}

// maxHeld records the most input bytes any client held while the test ran.
func maxHeld(t *testing.T) *atomic.Int64 {
	var m atomic.Int64
	sio.SetInboundHook(func(held int) {
		for {
			cur := m.Load()
			if int64(held) <= cur || m.CompareAndSwap(cur, int64(held)) {
				return
			}
		}
	})
	t.Cleanup(func() { sio.SetInboundHook(nil) })
	return &m
}

// rawWS is a WebSocket Socket.IO client written frame by frame, that reads only when told to.
type rawWS struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
}

// dialRaw opens a session on ts with a small receive buffer and connects to "/".
func dialRaw(t *testing.T, ts *httptest.Server) *rawWS {
	t.Helper()
	d := ws.Dialer{Timeout: 5 * time.Second, NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}
	conn, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/socket.io/?EIO=4&transport=websocket")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawWS{t: t, conn: conn, r: conn}
	if br != nil {
		c.r = br
	}
	if m := c.read(); !strings.HasPrefix(m, "0{") {
		t.Fatalf("open packet %q", m)
	}
	if err := c.text([]byte("40")); err != nil {
		t.Fatal(err)
	}
	for {
		if m := c.read(); strings.HasPrefix(m, "40") {
			return c
		}
	}
}

// read returns the next data message (heartbeats answered).
func (c *rawWS) read() string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, p); err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if h.OpCode.IsControl() {
			continue
		}
		if string(p) == "2" {
			_ = c.text([]byte("3"))
			continue
		}
		return string(p)
	}
}

// closed tells whether the server has ended the connection (within d).
func (c *rawWS) closed(d time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			var ne net.Error
			return !(asNetErr(err, &ne) && ne.Timeout())
		}
		if h.OpCode == ws.OpClose {
			return true
		}
		if _, err := io.CopyN(io.Discard, c.r, h.Length); err != nil {
			return true
		}
	}
}

func asNetErr(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

// frame writes one masked frame (with a zero mask, so p is sent as it is, without a copy).
func (c *rawWS) frame(op ws.OpCode, p []byte) error {
	if err := ws.WriteHeader(c.conn, ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true}); err != nil {
		return err
	}
	_, err := c.conn.Write(p)
	return err
}

func (c *rawWS) text(p []byte) error   { return c.frame(ws.OpText, p) }
func (c *rawWS) binary(p []byte) error { return c.frame(ws.OpBinary, p) }

// event builds the Engine.IO message of an EVENT with ack id id and one string argument, padded
// to exactly size bytes.
func event(name string, id, size int) []byte {
	head := fmt.Sprintf(`42%d["%s","`, id, name)
	pad := size - len(head) - 2
	return []byte(head + strings.Repeat("x", pad) + `"]`)
}

// heapWatcher samples HeapInuse (after a GC) every 100 ms and keeps the highest.
func heapWatcher(stop <-chan struct{}) (base uint64, peak func() uint64) {
	sample := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	base = sample()
	var top atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if v := sample(); v > top.Load() {
				top.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return base, func() uint64 { <-done; return top.Load() }
}

// A client floods maximum-size events at a slow handler and never reads: its input held never
// exceeds MaxInbound (the reader pauses instead), the heap does not grow with the flood, it is
// cut off as a slow consumer once its unread acks block the writer for WriteTimeout, and a
// bystander on the same server keeps getting its acks throughout.
func TestInboundBackpressureBoundsAFlooder(t *testing.T) {
	const (
		maxPayload   = 256 << 10
		maxInbound   = 1 << 20
		maxBuffered  = 1 << 20
		writeTimeout = time.Second
	)
	var obs limitCounter
	var handled atomic.Int32
	ts, _ := startBudget(t, sio.Options{
		PingInterval: 10 * time.Second, PingTimeout: 10 * time.Second,
		MaxPayload: maxPayload, MaxInbound: maxInbound, MaxBuffered: maxBuffered, WriteTimeout: writeTimeout,
		Observer: &obs,
	}, func(s *sio.Server) {
		reply := strings.Repeat("r", 1<<10)
		sio.Handle(s.Of("/"), "big", func(context.Context, *sio.Conn, string) (map[string]string, error) {
			handled.Add(1)
			time.Sleep(50 * time.Millisecond)
			return map[string]string{"r": reply}, nil
		})
		sio.Handle(s.Of("/"), "echo", func(_ context.Context, _ *sio.Conn, v int) (map[string]int, error) {
			return map[string]int{"n": v}, nil
		})
	})
	held := maxHeld(t)
	bystander := dial(t, ts, "/", nil)
	flooder := dialRaw(t, ts)

	stop := make(chan struct{})
	base, peak := heapWatcher(stop)
	testEnd := time.Now().Add(15 * time.Second)

	// The bystander calls echo all along; each ack must come within a second.
	var calls atomic.Int32
	byDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				byDone <- nil
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			raw, err := bystander.Call(ctx, "echo", i)
			cancel()
			if err != nil || string(raw) != fmt.Sprintf(`{"ok":true,"n":%d}`, i) {
				byDone <- fmt.Errorf("bystander call %d: %s, %v", i, raw, err)
				return
			}
			calls.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// The flooder writes as fast as TCP lets it until it is cut off.
	sent := 0
	var werr error
	for time.Now().Before(testEnd) {
		_ = flooder.conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
		if werr = flooder.text(event("big", sent, maxPayload)); werr != nil {
			break
		}
		sent++
	}
	for obs.get(sio.LimitSlowConsumer) == 0 && time.Now().Before(testEnd) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the bystander goes on after the cut
	close(stop)
	if err := <-byDone; err != nil {
		t.Error(err)
	}
	top := peak()
	t.Logf("flooder sent %d events (%d handled) before %v; held at most %d input bytes; heap %d KB → peak %d KB; bystander made %d calls; paused %d times",
		sent, handled.Load(), werr, held.Load(), base>>10, top>>10, calls.Load(), obs.get(sio.LimitInboundPaused))

	if n := obs.get(sio.LimitSlowConsumer); n != 1 {
		t.Errorf("slow_consumer reported %d times, want 1", n)
	}
	if werr == nil {
		t.Error("the flooder was never cut off")
	}
	if h := held.Load(); h > maxInbound || h < maxInbound/2 {
		t.Errorf("held at most %d input bytes, want up to MaxInbound %d (and near it)", h, maxInbound)
	}
	if obs.get(sio.LimitInboundPaused) == 0 {
		t.Error("the reader never paused")
	}
	// Live heap: the input budget, the output budget, the read buffers of one message on each
	// side, and the test's own; far from the flood's volume.
	if grew := int64(top) - int64(base); grew > maxInbound+maxBuffered+8<<20 {
		t.Errorf("heap grew by %d KB during the flood", grew>>10)
	}
	if calls.Load() < 5 {
		t.Errorf("bystander made %d calls only", calls.Load())
	}
}

// A binary packet whose attachments would exceed MaxInbound is refused while they arrive: the
// client is cut off, and what it held never exceeded the budget. One that fits is handled.
func TestBinaryAssemblyIsBoundedByMaxInbound(t *testing.T) {
	const maxPayload, maxInbound = 64 << 10, 200 << 10
	ts, _ := startBudget(t, sio.Options{MaxPayload: maxPayload, MaxInbound: maxInbound}, func(s *sio.Server) {
		sio.Handle(s.Of("/"), "bin", func(context.Context, *sio.Conn, any) (any, error) { return nil, nil })
	})
	held := maxHeld(t)
	send := func(c *rawWS, id, n int) error {
		var ph []string
		for i := range n {
			ph = append(ph, fmt.Sprintf(`{"_placeholder":true,"num":%d}`, i))
		}
		if err := c.text(fmt.Appendf(nil, `45%d-%d["bin",%s]`, n, id, strings.Join(ph, ","))); err != nil {
			return err
		}
		for range n {
			if err := c.binary(bytes.Repeat([]byte{7}, 60<<10)); err != nil {
				return err
			}
		}
		return nil
	}
	c := dialRaw(t, ts)
	if err := send(c, 1, 3); err != nil { // 180 KB: fits
		t.Fatal(err)
	}
	if m := c.read(); m != `431[{"ok":true}]` {
		t.Fatalf("ack %q", m)
	}
	_ = send(c, 2, 10) // 600 KB announced
	if !c.closed(5 * time.Second) {
		t.Fatal("a binary packet over MaxInbound did not end the connection")
	}
	if h := held.Load(); h > maxInbound {
		t.Errorf("held %d input bytes, over MaxInbound %d", h, maxInbound)
	}
}

// goroutines counts the goroutines whose stack contains any of fns.
func goroutines(fns ...string) int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, fn := range fns {
			if strings.Contains(g, fn) {
				n++
				break
			}
		}
	}
	return n
}

var inputGoroutines = []string{"sio.(*client).reserve", "sio.(*client).OnMessage", "eio.(*wsConn).readLoop"}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdHandler registers "hold", which blocks until the returned release is called (at the end
// of the test at the latest).
func holdHandler(t *testing.T, s *sio.Server) (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	sio.Handle(s.Of("/"), "hold", func(context.Context, *sio.Conn, string) (any, error) {
		<-ch
		return nil, nil
	})
	return release
}

// holdServer starts a server whose "hold" handler blocks until release is called, and a
// client whose reader is then paused by backpressure.
func holdServer(t *testing.T, opts sio.Options) (*sio.Server, *rawWS, *limitCounter, func()) {
	t.Helper()
	obs := &limitCounter{}
	opts.Observer = obs
	opts.MaxPayload, opts.MaxInbound = 64<<10, 128<<10
	var release func()
	ts, s := startBudget(t, opts, func(s *sio.Server) { release = holdHandler(t, s) })
	c := dialRaw(t, ts)
	for i := range 10 { // the first is handled (and blocks), four wait, the sixth pauses the reader
		if err := c.text(event("hold", i, 30<<10)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the reader to pause", 5*time.Second, func() bool {
		return obs.get(sio.LimitInboundPaused) == 1 && goroutines("sio.(*client).reserve") == 1
	})
	return s, c, obs, release
}

// A session closed by the server while its reader waits for room releases the reader at once,
// although the handler still runs; nothing is left once the handler returns.
func TestCloseReleasesReaderPausedByBackpressure(t *testing.T) {
	before, all := goroutines(inputGoroutines...), runtime.NumGoroutine()
	s, c, _, release := holdServer(t, sio.Options{PingInterval: 10 * time.Second, PingTimeout: 10 * time.Second})
	if err := s.Drain(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the paused reader to go", 2*time.Second, func() bool { return goroutines("sio.(*client).reserve") == 0 })
	if !c.closed(5 * time.Second) {
		t.Fatal("connection not closed")
	}
	c.conn.Close()
	release()
	waitUntil(t, "the input goroutines to go", 5*time.Second, func() bool { return goroutines(inputGoroutines...) <= before })
	// Idle pool workers (they exit after 5 s idle) may remain of the goroutines started.
	if after := runtime.NumGoroutine(); after > all+4 {
		t.Errorf("%d goroutines before, %d after", all, after)
	}
}

// A client that goes away while its reader is paused is noticed without the reader (by the
// heartbeat), which releases it although the handler still runs.
func TestVanishedClientReleasesPausedReader(t *testing.T) {
	_, c, _, _ := holdServer(t, sio.Options{PingInterval: 200 * time.Millisecond, PingTimeout: 300 * time.Millisecond})
	c.conn.Close()
	waitUntil(t, "the paused reader to go", 3*time.Second, func() bool { return goroutines("sio.(*client).reserve") == 0 })
}

// On long-polling, a POST whose packets exceed the budget waits for the handlers. (A POST is
// at most MaxPayload, under the budget: it takes a queue holding input already.)
func TestPollingPostWaitsForRoom(t *testing.T) {
	obs := &limitCounter{}
	var release func()
	// MaxInbound is raised to MaxPayload (and the overhead of one message): 160 KB.
	ts, _ := startBudget(t, sio.Options{MaxPayload: 160 << 10, MaxInbound: 100 << 10, Observer: obs}, func(s *sio.Server) {
		release = holdHandler(t, s)
	})
	base := ts.URL + "/socket.io/?EIO=4&transport=polling"
	get := func(url string) string {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	post := func(url, body string) (int, error) {
		res, err := http.Post(url, "text/plain;charset=UTF-8", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	open := get(base)
	i := strings.Index(open, `"sid":"`)
	if i < 0 {
		t.Fatalf("handshake %q", open)
	}
	sid := open[i+7 : i+27]
	url := base + "&sid=" + sid
	if code, err := post(url, "40"); err != nil || code != 200 {
		t.Fatalf("CONNECT: %d %v", code, err)
	}
	if m := get(url); !strings.HasPrefix(m, "40") {
		t.Fatalf("CONNECT answer %q", m)
	}
	var pkts []string
	for id := range 5 { // 150 KB: the first is handled (and blocks), four wait
		pkts = append(pkts, string(event("hold", id, 30<<10)))
	}
	if code, err := post(url, strings.Join(pkts, "\x1e")); err != nil || code != 200 {
		t.Fatalf("first POST: %d %v", code, err)
	}
	if n := obs.get(sio.LimitInboundPaused); n != 0 {
		t.Fatalf("paused %d times with room left", n)
	}
	answered := make(chan int, 1)
	go func() { // 30 KB more: over the budget, until the handlers catch up
		code, err := post(url, string(event("hold", 5, 30<<10)))
		if err != nil {
			code = -1
		}
		answered <- code
	}()
	waitUntil(t, "the POST to pause", 5*time.Second, func() bool { return obs.get(sio.LimitInboundPaused) == 1 })
	select {
	case code := <-answered:
		t.Fatalf("POST answered %d while its packets wait for room", code)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	select {
	case code := <-answered:
		if code != 200 {
			t.Fatalf("POST answered %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("POST not answered once the handlers caught up")
	}
}
