package sio_test

// Issue 11: no server or namespace lock held across slow work (a cluster
// SUBSCRIBE, the encoding of a recovery replay), a handler worker pool per
// Server, and a failed polling answer recovered rather than dropped.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

// fakeLink is a Link that publishes nothing (the node delivers locally).
type fakeLink struct{}

func (fakeLink) Publish(sio.Packet, sio.BroadcastOpts) bool { return false }
func (fakeLink) Close()                                     {}

// slowCluster's Attach of the namespaces in slow blocks for delay, as a
// SUBSCRIBE to a slow Redis does; entered is told each slow attach begins.
type slowCluster struct {
	delay   time.Duration
	slow    map[string]bool
	entered chan string
}

func (c *slowCluster) Attach(nsp string, _ sio.Local) sio.Link {
	if c.slow[nsp] {
		c.entered <- nsp
		time.Sleep(c.delay)
	}
	return fakeLink{}
}

func serve(t *testing.T, s *sio.Server) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return ts
}

// A namespace whose SUBSCRIBE takes 500 ms delays neither the lookups of the
// other namespaces (Of, and a client connecting to "/") nor the creation of
// another namespace; a client connecting to the namespace being created
// waits for it and connects.
func TestSlowAttachBlocksNoOtherNamespace(t *testing.T) {
	const delay = 500 * time.Millisecond
	cl := &slowCluster{delay: delay, slow: map[string]bool{"/slow": true}, entered: make(chan string, 1)}
	s := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second, Cluster: cl})
	other := s.Of("/other")
	ts := serve(t, s)

	created := make(chan time.Time, 1)
	go func() {
		s.Of("/slow")
		created <- time.Now()
	}()
	select {
	case <-cl.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow attach did not start")
	}
	began := time.Now()

	// A client connects to the namespace being created meanwhile.
	slowDial := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := rawclient.Dial(ctx, ts.URL, "/socket.io/", "/slow", nil, nil)
		if err == nil {
			c.Close()
		}
		slowDial <- err
	}()

	const bound = 200 * time.Millisecond
	start := time.Now()
	if got := s.Of("/other"); got != other {
		t.Fatal("Of returned another namespace")
	}
	if d := time.Since(start); d > bound {
		t.Errorf("Of of an existing namespace took %v during a slow attach", d)
	}
	start = time.Now()
	s.Of("/fresh") // another creation, not slow itself
	if d := time.Since(start); d > bound {
		t.Errorf("creating another namespace took %v during a slow attach", d)
	}
	start = time.Now()
	c := dial(t, ts, "/", nil)
	if d := time.Since(start); d > bound {
		t.Errorf("connecting to / took %v during a slow attach", d)
	}
	if c.SID == "" {
		t.Fatal("no sid")
	}
	select {
	case at := <-created:
		t.Fatalf("the slow namespace was created after %v: the checks did not overlap its attach", at.Sub(began))
	default:
	}

	var at time.Time
	select {
	case at = <-created:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow namespace was never created")
	}
	if err := <-slowDial; err != nil {
		t.Fatalf("connecting to the namespace being created: %v", err)
	}
	if at.Sub(began) < delay-50*time.Millisecond {
		t.Fatalf("created %v after its attach began, before the attach's %v", at.Sub(began), delay)
	}
}

// logCluster restores every session with missed events, as the streams
// adapter does after reading them from Redis.
type logCluster struct {
	missed  []any
	local   chan sio.Local
	settled chan string
}

func (c *logCluster) Attach(string, sio.Local) sio.Link { panic("AttachLog expected") }

func (c *logCluster) AttachLog(_ string, l sio.Local) sio.LogLink {
	c.local <- l
	return &fakeLog{c: c}
}

type fakeLog struct {
	fakeLink
	c *logCluster
}

func (l *fakeLog) Append(sio.Packet, sio.BroadcastOpts) (string, error) {
	return "", fmt.Errorf("not used")
}
func (l *fakeLog) Settle(pid string) {
	select {
	case l.c.settled <- pid:
	default:
	}
}
func (l *fakeLog) SaveSession(sio.Session)    {}
func (l *fakeLog) PersistSession(sio.Session) {}
func (l *fakeLog) DropSession(string)         {}

func (l *fakeLog) Resume(string) ([]any, bool) { return nil, true }

func (l *fakeLog) RestoreSession(pid, _ string) (*sio.Session, error) {
	return &sio.Session{Sid: "recovered-sid", Pid: pid, Missed: l.c.missed}, nil
}

// missedEvent is a replayed event heavy enough to take a while to encode.
func missedEvent(i int) any {
	fields := map[string]any{}
	for k := range 3 {
		fields[fmt.Sprintf("field%02d", k)] = []any{float64(i), "some text to encode", true, map[string]any{"n": float64(k)}}
	}
	return []any{"tick", fields, fmt.Sprintf("offset-%d", i)}
}

// A recovery replaying 10k events encodes them outside the namespace lock:
// broadcasts delivered to the namespace meanwhile are not held up by it
// (beyond a fraction of what the encoding takes), and the replay still comes
// whole, after CONNECT and before any live broadcast.
func TestRecoveryReplayDoesNotStallBroadcasts(t *testing.T) {
	n := sio.MaxReplayPackets
	missed := make([]any, n)
	for i := range missed {
		missed[i] = missedEvent(i)
	}
	start := time.Now()
	for _, d := range missed {
		if _, _, err := sioparser.MarshalData(d); err != nil {
			t.Fatal(err)
		}
	}
	encoding := time.Since(start)
	if encoding < 40*time.Millisecond {
		t.Skipf("encoding the replay takes %v here: too fast to tell a stall", encoding)
	}

	cl := &logCluster{missed: missed, local: make(chan sio.Local, 1), settled: make(chan string, 1)}
	s := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second,
		Cluster: cl, MaxBuffered: 256 << 20, WriteTimeout: 30 * time.Second})
	local := <-cl.local
	ts := serve(t, s)
	watcher := dial(t, ts, "/", nil) // a live member the broadcasts go to

	// Broadcasts from the cluster, as the adapter's receive loop delivers
	// them, until the recovery is settled (bounded by the deadline).
	stop := make(chan struct{})
	var worst atomic.Int64
	var live atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			local.Deliver(sio.Packet{Type: 2, Nsp: "/", Data: []any{"live", float64(i)}}, sio.BroadcastOpts{})
			if d := int64(time.Since(t0)); d > worst.Load() {
				worst.Store(d)
			}
			live.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()

	// The recovering client reads every frame as it comes (rawclient's
	// event buffer would drop some of a 10k replay).
	type result struct {
		ticks   int
		outOrd  string
		liveAt  int // ticks received before the first live event; -1: none
		connErr error
		sid     string
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
		if err != nil {
			res <- result{connErr: err}
			return
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, m, err := ws.ReadMessage(); err != nil || !strings.HasPrefix(string(m), "0{") {
			res <- result{connErr: fmt.Errorf("open packet %q: %v", m, err)}
			return
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`40{"pid":"p1","offset":"o1"}`)); err != nil {
			res <- result{connErr: err}
			return
		}
		r := result{liveAt: -1}
		for r.ticks < n && r.outOrd == "" {
			_, b, err := ws.ReadMessage()
			if err != nil {
				r.outOrd = "waiting for the replay: " + err.Error()
				break
			}
			m := string(b)
			switch {
			case m == "2":
				_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
			case strings.HasPrefix(m, "40"):
				var v struct{ SID string }
				_ = json.Unmarshal(b[2:], &v)
				r.sid = v.SID
			case r.sid == "":
				r.outOrd = fmt.Sprintf("%.40q before CONNECT", m)
			case strings.HasPrefix(m, `42["tick",`):
				if want := fmt.Sprintf(`"offset-%d"]`, r.ticks); !strings.HasSuffix(m, want) {
					r.outOrd = fmt.Sprintf("replayed event %d is %.60q...", r.ticks, m)
				}
				if r.liveAt >= 0 {
					r.outOrd = fmt.Sprintf("tick %d after a live broadcast", r.ticks)
				}
				r.ticks++
			case strings.HasPrefix(m, `42["live",`):
				if r.liveAt < 0 {
					r.liveAt = r.ticks
				}
			}
		}
		res <- r
	}()

	select {
	case <-cl.settled:
	case <-time.After(20 * time.Second):
		t.Fatal("the recovery was never settled")
	}
	close(stop)
	wg.Wait()
	r := <-res
	if r.connErr != nil {
		t.Fatal(r.connErr)
	}
	if r.sid != "recovered-sid" {
		t.Fatalf("sid %q: not recovered", r.sid)
	}
	if r.outOrd != "" || r.ticks != n {
		t.Fatalf("replay: %d of %d events (%s)", r.ticks, n, r.outOrd)
	}
	w := time.Duration(worst.Load())
	t.Logf("encoding the replay: %v; worst broadcast delivery during the recovery: %v (%d broadcasts)", encoding, w, live.Load())
	if live.Load() < 5 {
		t.Fatalf("only %d broadcasts overlapped the recovery", live.Load())
	}
	if w > encoding/3 {
		t.Errorf("a broadcast waited %v during the recovery: the replay's encoding (%v) held the namespace", w, encoding)
	}
	_ = watcher
}

// Two Servers in one process have their own handler workers: one's clients
// never start (or reuse) the other's, and a Server's Close ends its idle
// workers at once rather than after the idle timeout.
func TestWorkerPoolsArePerServer(t *testing.T) {
	echo := func(s *sio.Server) {
		sio.Handle(s.Of("/"), "echo", func(_ context.Context, _ *sio.Conn, v string) (string, error) { return v, nil })
	}
	a := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second})
	b := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second})
	echo(a)
	echo(b)
	tsA, tsB := serve(t, a), serve(t, b)

	ca := dial(t, tsA, "/", nil)
	call(t, ca, "echo", "x")
	if a.HandlerWorkers() < 1 {
		t.Fatalf("a ran a handler with %d workers", a.HandlerWorkers())
	}
	if n := b.HandlerWorkers(); n != 0 {
		t.Fatalf("b has %d workers although none of its clients sent anything", n)
	}
	cb := dial(t, tsB, "/", nil)
	call(t, cb, "echo", "y")
	if b.HandlerWorkers() < 1 {
		t.Fatalf("b ran a handler with %d workers", b.HandlerWorkers())
	}

	start := time.Now()
	a.Close()
	waitUntil(t, "a's workers to exit", time.Second, func() bool { return a.HandlerWorkers() == 0 })
	if b.HandlerWorkers() < 1 {
		t.Fatalf("closing a ended b's workers (b has %d, %v after a's Close)", b.HandlerWorkers(), time.Since(start))
	}
	call(t, cb, "echo", "z") // b goes on
}

// pollClient is a minimal Engine.IO long-polling client.
type pollClient struct {
	t   *testing.T
	url string
	sid string
}

func (p *pollClient) get() []string {
	p.t.Helper()
	res, err := http.Get(p.url + "&sid=" + p.sid)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		p.t.Fatalf("poll: %d %s", res.StatusCode, b)
	}
	return strings.Split(string(b), "\x1e")
}

func (p *pollClient) post(packet string) {
	p.t.Helper()
	res, err := http.Post(p.url+"&sid="+p.sid, "text/plain;charset=UTF-8", strings.NewReader(packet))
	if err != nil {
		p.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		p.t.Fatalf("post: %d", res.StatusCode)
	}
}

// A long-polling answer that fails mid-way (the client's connection reset)
// closes the session at once, recoverably: the client's next connection,
// from the last offset it received, gets everything the failed answer held,
// once and in order.
func TestPollingFailedAnswerIsRecovered(t *testing.T) {
	var n *sio.Namespace
	ts, _ := startBudget(t, sio.Options{PingInterval: 5 * time.Second, PingTimeout: 5 * time.Second,
		MaxBuffered: 4 << 20, WriteTimeout: 30 * time.Second}, func(s *sio.Server) { n = s.Of("/") })
	p := &pollClient{t: t, url: ts.URL + "/socket.io/?EIO=4&transport=polling"}
	res, err := http.Get(p.url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var open struct {
		SID string `json:"sid"`
	}
	if len(b) < 2 || b[0] != '0' || json.Unmarshal(b[1:], &open) != nil {
		t.Fatalf("handshake: %q", b)
	}
	p.sid = open.SID
	p.post("40")
	var conn struct {
		SID string `json:"sid"`
		PID string `json:"pid"`
	}
	if got := p.get(); len(got) != 1 || !strings.HasPrefix(got[0], "40") || json.Unmarshal([]byte(got[0][2:]), &conn) != nil || conn.PID == "" {
		t.Fatalf("CONNECT: %q", got)
	}

	// One broadcast received: its offset is where the client is.
	if err := n.To().Emit("tick", "first"); err != nil {
		t.Fatal(err)
	}
	got := p.get()
	var first []string
	if len(got) != 1 || !strings.HasPrefix(got[0], "42") || json.Unmarshal([]byte(got[0][2:]), &first) != nil || len(first) != 3 {
		t.Fatalf("first broadcast: %q", got)
	}
	offset := first[2]

	// Broadcasts the next answer holds, more than the connection takes at once.
	const count = 24
	payload := strings.Repeat("p", 32<<10)
	for i := range count {
		if err := n.To().Emit("tick", fmt.Sprintf("%d:%s", i, payload)); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := raw.(*net.TCPConn)
	_ = tc.SetReadBuffer(4096)
	fmt.Fprintf(raw, "GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", p.sid)
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(raw)
	if _, err := io.ReadFull(br, make([]byte, 1024)); err != nil {
		t.Fatalf("reading the start of the answer: %v", err)
	}
	_ = tc.SetLinger(0) // reset: the rest of the answer fails
	raw.Close()

	// The session ends at once (no reconnection has taken it over yet).
	waitUntil(t, "the session to close after the failed answer", 2*time.Second, func() bool { return n.LocalCount() == 0 })

	c := dial(t, ts, "/", map[string]any{"pid": conn.PID, "offset": offset})
	if !c.Recovered(conn.SID) {
		t.Fatalf("not recovered: sid %s, was %s", c.SID, conn.SID)
	}
	for i := range count {
		e := nextEvent(t, c, "tick")
		var v string
		if len(e.Args) != 1 || json.Unmarshal(e.Args[0], &v) != nil || !strings.HasPrefix(v, fmt.Sprintf("%d:", i)) {
			t.Fatalf("replayed event %d: %.40s", i, e.Args)
		}
	}
	select {
	case e := <-c.Events:
		t.Fatalf("an extra event after the replay: %s", e.Name)
	case <-time.After(200 * time.Millisecond):
	}
}
