package eio

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Tests of the outbound byte budget: MaxBuffered, WriteTimeout, bounded control frames, and the
// deadlines of a hijacked connection.

// sndBufListener shrinks the send buffer of every accepted connection, so that a client that
// does not read blocks the server's writes after a few KB instead of a few MB.
type sndBufListener struct {
	net.Listener
	size int
}

func (l sndBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// limits counts what the server reports to OnLimit.
type limits struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *limits) add(name string) {
	l.mu.Lock()
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.n[name]++
	l.mu.Unlock()
}

func (l *limits) get(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[name]
}

// newSlowEnv is newEnv on a server whose connections have a small send buffer; srv configures
// the http.Server before it starts.
func newSlowEnv(t *testing.T, lim *limits, srv func(*http.Server), opts ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, conns: make(chan *rec, 64)}
	o := Options{PingInterval: 10 * time.Second, PingTimeout: 10 * time.Second, OnLimit: lim.add}
	for _, f := range opts {
		f(&o)
	}
	o.OnConnection = e.record
	e.srv = NewServer(o)
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", e.srv)
	e.ts = httptest.NewUnstartedServer(mux)
	e.ts.Listener = sndBufListener{e.ts.Listener, 4096}
	if srv != nil {
		srv(e.ts.Config)
	}
	e.ts.Start()
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: wait}
	liveEnvs.Add(1)
	t.Cleanup(e.close)
	return e
}

// dialNoRead opens a WebSocket session from a client with a small receive buffer that reads
// the open packet and nothing more.
func (e *env) dialNoRead() (*wsClient, *rec) {
	e.t.Helper()
	d := ws.Dialer{Timeout: wait, NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}
	u := "ws" + strings.TrimPrefix(e.url("EIO=4&transport=websocket"), "http")
	conn, br, _, err := d.Dial(context.Background(), u)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &wsClient{t: e.t, conn: conn, r: conn}
	if br != nil {
		c.r = br
	}
	parseOpen(e.t, c.text())
	return c, e.session()
}

// held samples what a session holds for its client: queued and in-flight bytes, pending
// control frames (but the close frame, the last) and their bytes.
func held(s *Socket) (buffered, ctrl, ctrlBytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buffered = s.queued + s.inflight
	if c := s.ws; c != nil {
		frames := c.ctrl
		if c.closeQueued && len(frames) > 0 {
			frames = frames[:len(frames)-1]
		}
		ctrl = len(frames)
		for _, f := range frames {
			ctrlBytes += len(f)
		}
	}
	return
}

// watch samples held every millisecond until stop is closed and returns the maxima.
func watch(s *Socket, stop <-chan struct{}) (get func() (buffered, ctrl, ctrlBytes int)) {
	var mu sync.Mutex
	var mb, mc, mcb int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, c, cb := held(s)
			mu.Lock()
			mb, mc, mcb = max(mb, b), max(mc, c), max(mcb, cb)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() (int, int, int) {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return mb, mc, mcb
	}
}

func TestOutboundDefaults(t *testing.T) {
	srv := NewServer(Options{OnConnection: func(*Socket) {}})
	if srv.o.MaxBuffered != 1<<20 || srv.o.WriteTimeout != 10*time.Second {
		t.Fatalf("MaxBuffered %d, WriteTimeout %v; want 1 MiB and 10s", srv.o.MaxBuffered, srv.o.WriteTimeout)
	}
}

// A client that sends messages and pings but never reads: the server's answers (under
// MaxBuffered) block its writer, which gives up after WriteTimeout and cuts the client off.
func TestWebSocketWriteTimeoutCutsOffSlowConsumer(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	const maxBuffered = 1 << 20
	var lim limits
	e := newSlowEnv(t, &lim, nil, func(o *Options) {
		o.WriteTimeout = writeTimeout
		o.MaxBuffered = maxBuffered
	})
	c, r := e.dialNoRead()
	stop := make(chan struct{})
	maxima := watch(r.s, stop)
	reply := TextMessage(bytes.Repeat([]byte("r"), 48<<10))
	start := time.Now()
	// 16 answers of 48 KB: 768 KB, under MaxBuffered, far over what the socket buffers take.
	for i := range 16 {
		c.send("4m" + fmt.Sprint(i))
		r.next()
		if !r.s.Send(reply) {
			t.Fatalf("Send %d refused under MaxBuffered", i)
		}
		for range 50 {
			c.write(ws.NewPingFrame(bytes.Repeat([]byte("p"), 125)))
		}
	}
	lastSend := time.Now()
	r.wantClosed("transport error")
	took := time.Since(start)
	close(stop)
	if took < writeTimeout {
		t.Errorf("cut off after %v, before WriteTimeout %v", took, writeTimeout)
	}
	if since := time.Since(lastSend); since > writeTimeout+time.Second {
		t.Errorf("cut off %v after the last send, want within WriteTimeout %v", since, writeTimeout)
	}
	waitFor(t, "slow_consumer reported", func() bool { return lim.get(LimitSlowConsumer) >= 1 })
	if n := lim.get(LimitSlowConsumer); n != 1 {
		t.Errorf("slow_consumer reported %d times, want 1", n)
	}
	b, ctrl, ctrlBytes := maxima()
	t.Logf("held at most %d buffered bytes, %d control frames (%d bytes) in %v", b, ctrl, ctrlBytes, took)
	if b > maxBuffered {
		t.Errorf("%d bytes buffered, over MaxBuffered %d", b, maxBuffered)
	}
	if ctrl > maxCtrl || ctrlBytes > maxCtrl*(125+ws.MaxHeaderSize) {
		t.Errorf("%d control frames (%d bytes) pending", ctrl, ctrlBytes)
	}
}

// Exceeding MaxBuffered is reported as a slow consumer too.
func TestMaxBufferedReportsSlowConsumer(t *testing.T) {
	var lim limits
	e := newSlowEnv(t, &lim, nil, func(o *Options) { o.MaxBuffered = 64 << 10 })
	_, r := e.dialNoRead()
	big := TextMessage(make([]byte, 16<<10))
	sent := 0
	for r.s.Send(big) {
		if sent++; sent > 1000 {
			t.Fatal("Send never refused")
		}
	}
	r.wantClosed("transport error")
	waitFor(t, "slow_consumer reported", func() bool { return lim.get(LimitSlowConsumer) >= 1 })
	if n := lim.get(LimitSlowConsumer); n != 1 {
		t.Errorf("slow_consumer reported %d times, want 1", n)
	}
}

// A client that sends nothing but pings and never reads: at most one pong waits while the
// writer is blocked. The client is cut off once a write blocks for WriteTimeout, or by the ping
// timeout: pongs are so small that the kernel's buffers may take all of them and the next
// heartbeat too (on loopback the flood throttles itself: the client's full receive buffer drops
// the segments that carry the server's ACKs, so its sending backs off).
func TestWebSocketPingFloodIsBounded(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	const pingInterval = 300 * time.Millisecond
	var lim limits
	e := newSlowEnv(t, &lim, nil, func(o *Options) {
		o.WriteTimeout = writeTimeout
		o.PingInterval = pingInterval
		o.PingTimeout = time.Second
	})
	c, r := e.dialNoRead()
	stop := make(chan struct{})
	maxima := watch(r.s, stop)
	ping := ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame(bytes.Repeat([]byte("p"), 125))))
	batch := bytes.Repeat(ping, 64)
	start := time.Now()
	deadline := start.Add(3 * time.Second)
	sent := 0
	_ = c.conn.SetWriteDeadline(deadline)
	for time.Now().Before(deadline) && lim.get(LimitSlowConsumer) == 0 {
		if _, err := c.conn.Write(batch); err != nil {
			break // cut off, or blocked by TCP (a partial frame: nothing more can be sent)
		}
		sent += 64
	}
	stopped := time.Now()
	why := r.reason()
	close(stop)
	switch why {
	case "transport error":
		waitFor(t, "slow_consumer reported", func() bool { return lim.get(LimitSlowConsumer) == 1 })
	case "ping timeout":
	default:
		t.Errorf("closed with %q, want a slow consumer or a ping timeout", why)
	}
	if d := time.Since(stopped); d > pingInterval+time.Second+writeTimeout+time.Second {
		t.Errorf("cut off %v after the flood stopped", d)
	}
	_, ctrl, ctrlBytes := maxima()
	t.Logf("%d pings sent in %v, closed with %q; at most %d control frames (%d bytes) pending",
		sent, stopped.Sub(start), why, ctrl, ctrlBytes)
	if ctrl > 1 || ctrlBytes > 125+ws.MaxHeaderSize {
		t.Errorf("%d control frames (%d bytes) pending, want one pong at most", ctrl, ctrlBytes)
	}
}

// Repeated probes on an upgrading connection that does not read are bounded the same way.
func TestProbeAnswersAreBounded(t *testing.T) {
	var lim limits
	e := newSlowEnv(t, &lim, nil)
	sid, r := e.handshake()
	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	var probe *wsConn
	waitFor(t, "the probe", func() bool {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		probe = r.s.probe
		return probe != nil && probe.conn != nil
	})
	for range 2000 {
		c.send("2probe")
	}
	r.s.mu.Lock()
	n := len(probe.ctrl)
	r.s.mu.Unlock()
	if n > maxCtrl {
		t.Errorf("%d probe answers pending", n)
	}
}

// A poll whose answer the client does not read is bounded by WriteTimeout too.
func TestPollingWriteTimeoutCutsOffSlowConsumer(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	var lim limits
	e := newSlowEnv(t, &lim, nil, func(o *Options) { o.WriteTimeout = writeTimeout })
	sid, r := e.handshake()
	for range 12 {
		if !r.s.Send(TextMessage(bytes.Repeat([]byte("d"), 64<<10))) {
			t.Fatal("Send refused")
		}
	}
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	start := time.Now()
	fmt.Fprintf(conn, "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", sid)
	r.wantClosed("transport error")
	took := time.Since(start)
	if took < writeTimeout || took > writeTimeout+time.Second {
		t.Errorf("cut off after %v, want about WriteTimeout %v", took, writeTimeout)
	}
	waitFor(t, "slow_consumer reported", func() bool { return lim.get(LimitSlowConsumer) >= 1 })
	if n := lim.get(LimitSlowConsumer); n != 1 {
		t.Errorf("slow_consumer reported %d times, want 1", n)
	}
}

// A poll answered in time leaves no deadline on the keep-alive connection: the next request on
// it (a POST long after the WriteTimeout) is answered.
func TestPollingDeadlineDoesNotOutliveTheAnswer(t *testing.T) {
	var lim limits
	e := newSlowEnv(t, &lim, nil, func(o *Options) { o.WriteTimeout = 100 * time.Millisecond })
	sid, r := e.handshake()
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	br := bufio.NewReader(conn)
	r.s.Send(TextMessage([]byte("hi")))
	fmt.Fprintf(conn, "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", sid)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	res.Body.Close()
	if body.String() != "4hi" {
		t.Fatalf("poll answered %q", body.String())
	}
	time.Sleep(300 * time.Millisecond)
	fmt.Fprintf(conn, "POST /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n4abc", sid)
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("POST on the same connection: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("POST: %d", res.StatusCode)
	}
	if got := r.next(); got.data != "abc" {
		t.Fatalf("got %+v", got)
	}
	if n := lim.get(LimitSlowConsumer); n != 0 {
		t.Errorf("slow_consumer reported %d times", n)
	}
}

// deadlineHijacker hands over connections with a read and a write deadline left on them, as a
// middleware or another HTTP stack may. (net/http clears its own on Hijack, and gobwas's
// upgrader clears them too; wsConn.attach does, so that neither is relied on.)
type deadlineHijacker struct{ http.ResponseWriter }

func (h deadlineHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(100 * time.Millisecond))
	}
	return conn, rw, err
}

// A deadline left on the connection handed over (a ReadTimeout, a middleware's) does not end a
// session idle for longer.
func TestHijackedConnectionHasNoDeadline(t *testing.T) {
	var lim limits
	e := newSlowEnv(t, &lim, func(s *http.Server) {
		s.ReadTimeout = 100 * time.Millisecond
		inner := s.Handler
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inner.ServeHTTP(deadlineHijacker{w}, r)
		})
	})
	c, _, r := e.openWS("")
	time.Sleep(300 * time.Millisecond)
	c.send("4still there")
	if got := r.next(); got.data != "still there" {
		t.Fatalf("got %+v", got)
	}
	r.s.Send(TextMessage([]byte("and you?")))
	if got := c.text(); got != "4and you?" {
		t.Fatalf("got %q", got)
	}
	r.stillOpen(10 * time.Millisecond)
}

// blocker is a Handler whose OnMessage waits for Done (as a handler applying backpressure does).
type blocker struct {
	s       atomic.Pointer[Socket]
	entered chan struct{}
	left    chan struct{}
	closed  chan string
}

func (b *blocker) OnMessage([]byte, bool) {
	close(b.entered)
	<-b.s.Load().Done()
	close(b.left)
}

func (b *blocker) OnClose(reason string) {
	select {
	case <-b.left:
	default:
		panic("OnClose before OnMessage returned")
	}
	b.closed <- reason
}

// Done is closed when the session ends, which releases an OnMessage blocked on it; OnClose
// follows once it has returned.
func TestDoneReleasesBlockedOnMessage(t *testing.T) {
	b := &blocker{entered: make(chan struct{}), left: make(chan struct{}), closed: make(chan string, 1)}
	got := make(chan *Socket, 1)
	e := newEnv(t, func(o *Options) {
		o.OnConnection = func(s *Socket) {
			b.s.Store(s)
			s.SetHandler(b)
			got <- s
		}
	})
	c := e.dialWS("EIO=4&transport=websocket")
	c.text()
	s := <-got
	select {
	case <-s.Done():
		t.Fatal("Done closed on an open session")
	default:
	}
	c.send("4x")
	<-b.entered
	s.CloseNow()
	select {
	case why := <-b.closed:
		if why != "forced close" {
			t.Errorf("reason %q", why)
		}
	case <-time.After(wait):
		t.Fatal("OnMessage not released")
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after the close")
	}
}
