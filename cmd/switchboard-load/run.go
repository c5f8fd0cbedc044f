package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/loadclient"
)

// runner holds one process's share of a scenario: its connections and
// everything measured about them.
type runner struct {
	o      *Options
	dialer *loadclient.Dialer
	hc     *http.Client
	tokens []string

	clients []*vclient
	mine    []int // client indices this process owns

	cnt         loadclient.Counters
	sent        atomic.Int64
	acked       atomic.Int64
	ackErrs     atomic.Int64
	expected    atomic.Int64 // deliveries owed for acked messages (fan-out counts them in the coordinator)
	disconnects atomic.Int64
	connectErrs atomic.Int64
	joined      atomic.Int64
	connected   atomic.Int64

	mu        sync.Mutex
	ackCodes  map[string]int64
	errSample []string

	ackRTT  loadclient.Hist // µs
	lat     loadclient.Hist // µs, delivery latency from the text's timestamp
	connLat loadclient.Hist // µs, dial to CONNECT ack

	sweeper  *loadclient.Sweeper   // bulk receivers (nil: every connection has its reader)
	reactors []*loadclient.Reactor // the light receive path (nil: a reader goroutine per connection)

	stopping atomic.Bool // disconnects from now on are ours
	// membersOf returns how many deliveries one acked message from sender owes.
	membersOf func(sender int) int64
}

func newRunner(o *Options) (*runner, error) {
	r := &runner{o: o, ackCodes: map[string]int64{}}
	r.dialer = &loadclient.Dialer{Impl: o.wsImpl, Timeout: 15 * time.Second}
	host, _, _ := net.SplitHostPort(o.hostport)
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.To4()[0] == 127 && o.srcIPs > 1 {
		for i := 0; i < o.srcIPs; i++ {
			r.dialer.LocalIPs = append(r.dialer.LocalIPs, net.IPv4(127, 0, 0, byte(1+i)))
		}
	}
	if o.scenario == "polling" {
		r.hc = loadclient.NewPollingHTTPClient(o.clients)
	}
	r.tokens = make([]string, o.users)
	for u := range r.tokens {
		tok, err := loadclient.Token([]byte(o.secret), userID(u), "User "+strconv.Itoa(u), 6*time.Hour)
		if err != nil {
			return nil, err
		}
		r.tokens[u] = tok
	}
	r.clients = make([]*vclient, o.clients)
	for i := 0; i < o.clients; i++ {
		if i%o.shards == o.shard {
			r.mine = append(r.mine, i)
		}
	}
	r.membersOf = func(int) int64 { return 1 }
	// Idle connections are always swept (they only get pings); fan-out
	// receivers only when asked: lazy reading changes the server's cost
	// (Node's CPU per delivery rose by a third in our runs, Switchboard's did not).
	if sweep := o.sweep; o.wsImpl == "raw" && (o.scenario == "idle" || (o.scenario == "fanout" && sweep > 0)) {
		if sweep <= 0 {
			sweep = 100 * time.Millisecond
		}
		s, err := loadclient.NewSweeper(sweep)
		if err != nil {
			return nil, err
		}
		r.sweeper = s
	}
	if o.reader == "reactor" && o.wsImpl == "raw" && r.sweeper == nil {
		for k := 0; k < o.reactors; k++ {
			rx, err := loadclient.NewReactor()
			if err != nil {
				r.closeReactors()
				return nil, err
			}
			r.reactors = append(r.reactors, rx)
		}
	}
	return r, nil
}

func (r *runner) closeReactors() {
	for _, rx := range r.reactors {
		rx.Close()
	}
	r.reactors = nil
}

// readerStats sums the reactors' counters.
func (r *runner) readerStats() loadclient.ReactorStats {
	var s loadclient.ReactorStats
	for _, rx := range r.reactors {
		st := rx.Stats()
		s.Reads += st.Reads
		s.Bytes += st.Bytes
		s.Rounds += st.Rounds
	}
	return s
}

func userID(u int) string { return "load-" + strconv.Itoa(u) }

func (r *runner) noteErr(format string, args ...any) {
	r.mu.Lock()
	if len(r.errSample) < 10 {
		r.errSample = append(r.errSample, fmt.Sprintf(format, args...))
	}
	r.mu.Unlock()
}

// eager reports whether client i gets its own reader goroutine (and
// measures latency) rather than being read by the sweeper.
func (r *runner) eager(i int) bool {
	if r.sweeper == nil || i == 0 {
		return true
	}
	if r.o.eager <= 0 {
		return false
	}
	step := max(1, r.o.clients/r.o.eager)
	return i%step == 0
}

// vclient is one simulated client.
type vclient struct {
	idx int
	r   *runner
	cl  loadclient.Client

	mu     sync.Mutex
	nextID uint64
	waits  map[uint64]chan ackResult
	sentAt map[uint64]int64
	recv   loadclient.Receiver
	acked  chan struct{} // signalled on every data ack (fan-out window)

	seq uint64 // sender's next sequence number (sender goroutine only)
	buf []byte
	txt []byte
}

type ackResult struct {
	ok   bool
	code string
}

// handlers: eager receivers measure delivery latency; swept ones read in
// batches (up to one sweep late) and only count.
func (c *vclient) handlers(eager bool) loadclient.Handlers {
	r := c.r
	var hint int // where the text was in this connection's last message
	event := func(p []byte, now int64) {
		sender, seq, nanos, isMsg, ok := loadclient.ParseMessageHint(p, &hint)
		if !isMsg {
			r.cnt.OtherEvts.Add(1)
			return
		}
		r.cnt.Delivered.Add(1)
		if !ok {
			r.cnt.Foreign.Add(1)
			return
		}
		r.cnt.Note(now)
		if eager {
			r.lat.Record((now - nanos) / 1000)
		}
		switch c.recv.Add(sender, seq) {
		case loadclient.Unique:
			r.cnt.Unique.Add(1)
		case loadclient.Reordered:
			r.cnt.Unique.Add(1)
			r.cnt.Reordered.Add(1)
		case loadclient.Duplicate:
			r.cnt.Duplicated.Add(1)
		}
	}
	return loadclient.Handlers{
		Event:   func(p []byte) { event(p, time.Now().UnixNano()) },
		EventAt: event,
		Ack: func(id uint64, p []byte) {
			c.mu.Lock()
			if ch, ok := c.waits[id]; ok {
				delete(c.waits, id)
				c.mu.Unlock()
				ok, code := loadclient.AckOK(p)
				ch <- ackResult{ok, code}
				return
			}
			t, ok := c.sentAt[id]
			if ok {
				delete(c.sentAt, id)
			}
			c.mu.Unlock()
			if !ok {
				return
			}
			if good, code := loadclient.AckOK(p); good {
				r.ackRTT.Record((time.Now().UnixNano() - t) / 1000)
				r.acked.Add(1)
				r.expected.Add(r.membersOf(c.idx))
			} else {
				r.ackErrs.Add(1)
				r.mu.Lock()
				r.ackCodes[code]++
				r.mu.Unlock()
			}
			select {
			case c.acked <- struct{}{}:
			default:
			}
		},
		Closed: func(err error) {
			if r.stopping.Load() {
				return
			}
			r.disconnects.Add(1)
			if err != nil {
				r.noteErr("client %d disconnected: %s", c.idx, trimErr(err))
			} else {
				r.noteErr("client %d disconnected", c.idx)
			}
		},
	}
}

// call sends an event and waits for its ack (setup: join-room).
func (c *vclient) call(ctx context.Context, event string, payload []byte) (ackResult, error) {
	ch := make(chan ackResult, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.waits[id] = ch
	c.mu.Unlock()
	if err := c.cl.Emit(id, event, payload); err != nil {
		return ackResult{}, err
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case res := <-ch:
		return res, nil
	case <-t.C:
		return ackResult{}, fmt.Errorf("%s: no ack in 30s", event)
	case <-ctx.Done():
		return ackResult{}, ctx.Err()
	}
}

// sendMessage emits a `message` to room with a text carrying the sender,
// its sequence number and the time; the ack is timed by the Ack handler.
func (c *vclient) sendMessage(room string) error {
	now := time.Now().UnixNano()
	c.txt = loadclient.AppendText(c.txt[:0], c.idx, c.seq, now, c.r.o.textBytes)
	c.seq++
	b := append(c.buf[:0], `{"roomId":"`...)
	b = append(b, room...)
	b = append(b, `","text":"`...)
	b = append(b, c.txt...)
	b = append(b, `"}`...)
	c.buf = b
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.sentAt[id] = now
	c.mu.Unlock()
	c.r.sent.Add(1)
	if err := c.cl.Emit(id, "message", b); err != nil {
		c.mu.Lock()
		delete(c.sentAt, id)
		c.mu.Unlock()
		return err
	}
	return nil
}

func (c *vclient) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sentAt)
}

// connectAll opens this process's connections with bounded parallelism and
// runs setup (join a room) on each. It returns when all are done or the
// connect phase's time bound is reached.
func (r *runner) connectAll(ctx context.Context, roomOf func(i int) string) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, r.o.connectMax)
	defer cancel()
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	conc := min(r.o.connectConc, len(r.mine))
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r.connectOne(ctx, i, roomOf)
			}
		}()
	}
	stopProgress := r.progressLoop(func() string {
		return fmt.Sprintf("connect %d/%d joined %d errors %d", r.connected.Load(), len(r.mine), r.joined.Load(), r.connectErrs.Load())
	})
feed:
	for _, i := range r.mine {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	stopProgress()
	took := time.Since(start)
	if r.o.progress > 0 {
		logf("connected %d/%d (joined %d, errors %d) in %s", r.connected.Load(), len(r.mine), r.joined.Load(), r.connectErrs.Load(), took.Round(time.Millisecond))
	}
	return took
}

func (r *runner) connectOne(ctx context.Context, i int, roomOf func(int) string) {
	c := &vclient{idx: i, r: r, waits: map[uint64]chan ackResult{}, sentAt: map[uint64]int64{}, acked: make(chan struct{}, 1)}
	tok := r.tokens[i%r.o.users]
	t0 := time.Now()
	fail := func(what string, err error) {
		r.connectErrs.Add(1)
		r.noteErr("%s %d: %s", what, i, trimErr(err))
	}
	if r.o.scenario == "polling" {
		pc, err := loadclient.ConnectPolling(ctx, r.hc, "http://"+r.o.hostport, r.o.path, tok)
		if err != nil {
			fail("connect", err)
			return
		}
		r.connLat.Record(time.Since(t0).Microseconds())
		r.connected.Add(1)
		c.cl = pc
		pc.Start(c.handlers(true))
		r.clients[i] = c
		if roomOf == nil {
			return
		}
		res, err := c.call(ctx, "join-room", []byte(strconv.Quote(roomOf(i))))
		if err == nil && !res.ok {
			err = errors.New(res.code)
		}
		if err != nil {
			fail("join", err)
			return
		}
		r.joined.Add(1)
		return
	}
	wc, err := loadclient.Connect(ctx, r.dialer, r.o.hostport, r.o.path, tok)
	if err != nil {
		fail("connect", err)
		return
	}
	r.connLat.Record(time.Since(t0).Microseconds())
	r.connected.Add(1)
	c.cl = wc
	if roomOf != nil {
		// Join inline, before the connection gets its reader.
		c.nextID++
		ack, _, err := wc.CallSync(ctx, c.nextID, "join-room", []byte(strconv.Quote(roomOf(i))))
		if err == nil {
			if ok, code := loadclient.AckOK(ack); !ok {
				err = errors.New(code)
			}
		}
		if err != nil {
			wc.Close(true)
			fail("join", err)
			return
		}
		r.joined.Add(1)
	}
	eager := r.eager(i)
	switch {
	case !eager && r.sweeper != nil:
		if err := wc.StartSwept(r.sweeper, c.handlers(false)); err != nil {
			wc.Close(true)
			fail("sweep", err)
			return
		}
	case len(r.reactors) > 0:
		if err := wc.StartOn(r.reactors[i%len(r.reactors)], c.handlers(true), r.o.scenario == "fanout" && i == 0); err != nil {
			wc.Close(true)
			fail("reactor", err)
			return
		}
	default:
		wc.Start(c.handlers(true))
	}
	r.clients[i] = c
}

// closeAll closes this process's connections (RST: no TIME_WAIT).
func (r *runner) closeAll() {
	r.stopping.Store(true)
	for _, i := range r.mine {
		if c := r.clients[i]; c != nil {
			c.cl.Close(true)
		}
	}
	if r.hc != nil {
		r.hc.CloseIdleConnections()
	}
	if r.sweeper != nil {
		r.sweeper.Close()
	}
	r.closeReactors()
}

// outstandingAcks counts data acks not yet received in this process.
func (r *runner) outstandingAcks() int {
	n := 0
	for _, i := range r.mine {
		if c := r.clients[i]; c != nil {
			n += c.outstanding()
		}
	}
	return n
}

// progressLoop prints line() every --progress until the returned func is called.
func (r *runner) progressLoop(line func() string) func() {
	if r.o.progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.o.progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				logf("%s", line())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// periodicSenders runs one goroutine per owned client that posts a message
// to roomOf(i) every interval (random first phase) until end.
func (r *runner) periodicSenders(ctx context.Context, end time.Time, roomOf func(int) string) {
	var wg sync.WaitGroup
	for _, i := range r.mine {
		c := r.clients[i]
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := roomOf(c.idx)
			next := time.Now().Add(time.Duration(rand.Int64N(int64(r.o.interval))))
			for sent := 0; sent < r.o.maxMsgs; sent++ {
				if !sleepUntil(ctx, next) || !next.Before(end) {
					return
				}
				if err := c.sendMessage(room); err != nil {
					return
				}
				next = next.Add(r.o.interval)
				if now := time.Now(); next.Before(now) {
					next = now // fell behind: no catch-up burst
				}
			}
		}()
	}
	wg.Wait()
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitFor polls cond every 20 ms until true, ctx ends, max passes, or
// (stall > 0) the progress value stops moving for stall.
func waitFor(ctx context.Context, max, stall time.Duration, cond func() bool, progress func() int64) bool {
	end := time.Now().Add(max)
	last, lastMove := int64(math.MinInt64), time.Now()
	for {
		if cond() {
			return true
		}
		now := time.Now()
		if now.After(end) || ctx.Err() != nil {
			return false
		}
		if progress != nil && stall > 0 {
			if v := progress(); v != last {
				last, lastMove = v, now
			} else if now.Sub(lastMove) > stall {
				return false
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverMon samples the server process: CPU at window edges, RSS peak.
type serverMon struct {
	pid  int
	mu   sync.Mutex
	peak int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func startServerMon(pid int) *serverMon {
	m := &serverMon{pid: pid, stop: make(chan struct{})}
	if pid <= 0 {
		return m
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if s, err := loadclient.SampleProc(pid); err == nil {
				m.mu.Lock()
				m.peak = max(m.peak, s.RSS)
				m.mu.Unlock()
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *serverMon) sample() (loadclient.ProcSample, bool) {
	if m.pid <= 0 {
		return loadclient.ProcSample{At: time.Now()}, false
	}
	s, err := loadclient.SampleProc(m.pid)
	if err != nil {
		return loadclient.ProcSample{At: time.Now()}, false
	}
	m.mu.Lock()
	m.peak = max(m.peak, s.RSS)
	m.mu.Unlock()
	return s, true
}

func (m *serverMon) close() int64 {
	close(m.stop)
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}

var errNoServer = errors.New("no server pid")
