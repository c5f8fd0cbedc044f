package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/loadclient"
)

// Result is the JSON object printed for one scenario run.
type Result struct {
	Scenario string         `json:"scenario"`
	Label    string         `json:"label,omitempty"`
	Target   string         `json:"target"`
	Params   map[string]any `json:"params"`
	Started  time.Time      `json:"started"`

	Clients       int                 `json:"clients"`
	Connected     int64               `json:"connected"`
	Joined        int64               `json:"joined"`
	ConnectErrors int64               `json:"connect_errors"`
	ConnectS      float64             `json:"connect_s"`
	ConnectPerSec float64             `json:"connect_per_s"`
	ConnectMs     *loadclient.Summary `json:"connect_ms,omitempty"`

	WindowS       float64             `json:"window_s"` // the measured window (load plus drain)
	Sent          int64               `json:"sent"`
	Acked         int64               `json:"acked"`
	AckErrors     int64               `json:"ack_errors"`
	AckErrorCodes map[string]int64    `json:"ack_error_codes,omitempty"`
	AckedPerSec   float64             `json:"acked_per_s"`
	AckRTTMs      *loadclient.Summary `json:"ack_rtt_ms,omitempty"`

	Expected        int64               `json:"expected"`
	Delivered       int64               `json:"delivered"`
	Unique          int64               `json:"unique"`
	Lost            int64               `json:"lost"`
	Duplicated      int64               `json:"duplicated"`
	Reordered       int64               `json:"reordered"`
	Foreign         int64               `json:"foreign,omitempty"`
	OtherEvents     int64               `json:"other_events"`
	DeliveredPerSec float64             `json:"delivered_per_s"`
	LatencyMs       *loadclient.Summary `json:"latency_ms,omitempty"`
	Disconnects     int64               `json:"disconnects"`

	Server *ServerStats `json:"server,omitempty"`
	Client ClientStats  `json:"client"`
	Errors []string     `json:"errors,omitempty"`
	OK     bool         `json:"ok"` // everything connected, nothing lost, duplicated or disconnected
}

// ServerStats is what /proc/<server-pid> showed over the window.
type ServerStats struct {
	PID         int     `json:"pid"`
	CPUS        float64 `json:"cpu_s"`
	CPUPct      float64 `json:"cpu_pct"` // of one core
	CPUUsPerOp  float64 `json:"cpu_us_per_op,omitempty"`
	Op          string  `json:"op,omitempty"` // what one op is
	RSSMBBefore float64 `json:"rss_mb_before"`
	RSSMBAfter  float64 `json:"rss_mb_after"`
	RSSMBPeak   float64 `json:"rss_mb_peak"`
	RSSKBPerCon float64 `json:"rss_kb_per_conn,omitempty"`
	Threads     int     `json:"threads"`
}

// ClientStats is the load generator's own cost.
type ClientStats struct {
	Procs  int     `json:"procs"`
	WS     string  `json:"ws"`
	CPUS   float64 `json:"cpu_s"`
	CPUPct float64 `json:"cpu_pct"` // over the window, all load processes, of one core
	GOMAXP int     `json:"gomaxprocs"`
	// CPUs lists the CPUs the load processes were allowed to run on
	// (their affinity), one entry per distinct set.
	CPUs   []string `json:"cpus,omitempty"`
	Reader string   `json:"reader,omitempty"` // reactor or goroutine
	// With the reactor: read syscalls in the window, and deliveries per read.
	Reads        int64   `json:"reads,omitempty"`
	PerRead      float64 `json:"deliveries_per_read,omitempty"`
	UsPerDeliver float64 `json:"cpu_us_per_delivery,omitempty"` // client CPU per unique delivery
}

// partial is one process's share of the counts (children send theirs).
type partial struct {
	Connected, Joined, ConnectErrs  int64
	Sent, Acked, AckErrs, Expected  int64
	Delivered, Unique, Dup, Reorder int64
	Foreign, Other, Disconnects     int64
	FirstRecv, LastRecv             int64
	AckCodes                        map[string]int64
	Errors                          []string
	AckRTT, Lat, ConnLat            loadclient.Sparse
	CPUWindow                       float64 // seconds of CPU in the measured window
	ConnectSeconds                  float64
	Reads                           int64  // reactor reads in the window
	CPUs                            string // the process's CPU affinity
}

func (r *runner) export(cpuWindow float64, connectS float64, reads int64) partial {
	r.mu.Lock()
	codes := map[string]int64{}
	for k, v := range r.ackCodes {
		codes[k] = v
	}
	errs := append([]string(nil), r.errSample...)
	r.mu.Unlock()
	return partial{
		Connected: r.connected.Load(), Joined: r.joined.Load(), ConnectErrs: r.connectErrs.Load(),
		Sent: r.sent.Load(), Acked: r.acked.Load(), AckErrs: r.ackErrs.Load(), Expected: r.expected.Load(),
		Delivered: r.cnt.Delivered.Load(), Unique: r.cnt.Unique.Load(), Dup: r.cnt.Duplicated.Load(),
		Reorder: r.cnt.Reordered.Load(), Foreign: r.cnt.Foreign.Load(), Other: r.cnt.OtherEvts.Load(),
		Disconnects: r.disconnects.Load(), FirstRecv: r.cnt.FirstRecv.Load(), LastRecv: r.cnt.LastRecv.Load(),
		AckCodes: codes, Errors: errs,
		AckRTT: r.ackRTT.Export(), Lat: r.lat.Export(), ConnLat: r.connLat.Export(),
		CPUWindow: cpuWindow, ConnectSeconds: connectS, Reads: reads, CPUs: loadclient.CPUAffinity(),
	}
}

// scenario describes what differs between scenarios.
type scenario struct {
	roomOf  func(i int) string // room each client joins (nil: none)
	members func(sender int) int64
	// load runs this process's senders until end.
	load func(ctx context.Context, r *runner, end time.Time)
	op   string // what the server's CPU is divided by
}

func (o *Options) scenario_() scenario {
	switch o.scenario {
	case "echo", "polling":
		prefix := "e-"
		if o.scenario == "polling" {
			prefix = "p-"
		}
		roomOf := func(i int) string { return prefix + strconv.Itoa(i) }
		return scenario{
			roomOf:  roomOf,
			members: func(int) int64 { return 1 },
			load: func(ctx context.Context, r *runner, end time.Time) {
				r.periodicSenders(ctx, end, roomOf)
			},
			op: "acked message",
		}
	case "rooms":
		size := o.roomSize
		roomOf := func(i int) string { return "chat-" + strconv.Itoa(i/size) }
		return scenario{
			roomOf: roomOf,
			members: func(sender int) int64 {
				first := sender / size * size
				return int64(min(first+size, o.clients) - first)
			},
			load: func(ctx context.Context, r *runner, end time.Time) {
				r.periodicSenders(ctx, end, roomOf)
			},
			op: "delivered message",
		}
	case "fanout":
		return scenario{
			roomOf: func(int) string { return "fanout" },
			load:   fanoutSender,
			op:     "delivered message",
		}
	}
	return scenario{op: "connection"} // idle
}

func fanoutSender(ctx context.Context, r *runner, end time.Time) {
	c := r.clients[0]
	if c == nil || r.o.shard != 0 {
		return
	}
	const room = "fanout"
	o := r.o
	if o.rate > 0 {
		interval := time.Duration(float64(time.Second) / o.rate)
		next := time.Now()
		for i := 0; i < o.maxMsgs; i++ {
			if !sleepUntil(ctx, next) || !next.Before(end) {
				return
			}
			for c.outstanding() > 10000 { // server stuck: do not pile up unboundedly
				if !sleepUntil(ctx, time.Now().Add(10*time.Millisecond)) || time.Now().After(end) {
					return
				}
			}
			if c.sendMessage(room) != nil {
				return
			}
			next = next.Add(interval)
		}
		return
	}
	timer := time.NewTimer(time.Until(end))
	defer timer.Stop()
	for i := 0; i < o.maxMsgs && time.Now().Before(end); i++ {
		for c.outstanding() >= o.window {
			select {
			case <-c.acked:
			case <-timer.C:
				return
			case <-ctx.Done():
				return
			}
		}
		if c.sendMessage(room) != nil {
			return
		}
	}
}

func runScenario(ctx context.Context, o *Options) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	r, err := newRunner(o)
	if err != nil {
		return nil, err
	}
	sc := o.scenario_()
	var fanMembers atomic.Int64
	switch {
	case o.scenario == "fanout":
		r.membersOf = func(int) int64 { return fanMembers.Load() }
	case sc.members != nil:
		r.membersOf = sc.members
	}
	if o.shard > 0 {
		return nil, childMain(ctx, r, sc)
	}

	res := &Result{Scenario: o.scenario, Label: o.label, Target: "http://" + o.hostport, Started: time.Now().UTC(),
		Clients: o.clients, Params: o.params()}
	mon := startServerMon(o.pid)
	before, haveServer := mon.sample()

	var kids *children
	if o.shards > 1 {
		if kids, err = startChildren(ctx, o); err != nil {
			return nil, err
		}
		defer kids.kill()
	}
	cpu0 := loadclient.SelfCPU()
	connectTook := r.connectAll(ctx, sc.roomOf)
	joined := r.joined.Load()
	if kids != nil {
		kidsJoined, err := kids.waitReady(ctx, o.connectMax+10*time.Second)
		if err != nil {
			return nil, err
		}
		joined += kidsJoined
		connectTook = max(connectTook, time.Since(res.Started))
	}
	fanMembers.Store(joined)

	var s1, s2 loadclient.ProcSample
	var cpu1, cpu2 time.Duration
	var reads1, reads2 int64
	if o.scenario == "idle" {
		if kids != nil {
			kids.send("GO") // children hold their connections until STOP
		}
		if o.progress > 0 {
			logf("settling %s, then holding %s", o.settle, o.hold)
		}
		sleepUntil(ctx, time.Now().Add(o.settle))
		s1, _ = mon.sample()
		cpu1 = loadclient.SelfCPU()
		stop := r.progressLoop(func() string {
			s, _ := mon.sample()
			return fmt.Sprintf("holding %d connections; server rss %.1f MB", r.connected.Load(), mb(s.RSS))
		})
		sleepUntil(ctx, time.Now().Add(o.hold))
		stop()
		s2, _ = mon.sample()
		cpu2 = loadclient.SelfCPU()
	} else {
		s1, _ = mon.sample()
		cpu1 = loadclient.SelfCPU()
		reads1 = r.readerStats().Reads
		if kids != nil {
			kids.send("GO")
		}
		t0 := time.Now()
		end := t0.Add(o.duration)
		totalUnique := func() int64 {
			u := r.cnt.Unique.Load()
			if kids != nil {
				u += kids.unique()
			}
			return u
		}
		stop := r.progressLoop(func() string {
			s, _ := mon.sample()
			el := time.Since(t0).Seconds()
			return fmt.Sprintf("t=%.0fs sent %d acked %d errs %d delivered %d (%.0f/s) disconnects %d server rss %.1f MB",
				el, r.sent.Load(), r.acked.Load(), r.ackErrs.Load(), totalUnique(), float64(totalUnique())/el,
				r.disconnects.Load(), mb(s.RSS))
		})
		sc.load(ctx, r, end)
		sleepUntil(ctx, end)
		// Drain: acks outstanding and deliveries owed (bounded; gives up when stalled).
		waitFor(ctx, o.drain, 3*time.Second, func() bool {
			exp := r.expected.Load()
			if kids != nil {
				exp += kids.expected()
			}
			return r.outstandingAcks() == 0 && totalUnique() >= exp && (kids == nil || kids.drained())
		}, func() int64 { return totalUnique() + r.acked.Load() })
		stop()
		s2, _ = mon.sample()
		cpu2 = loadclient.SelfCPU()
		reads2 = r.readerStats().Reads
		res.WindowS = s2.At.Sub(s1.At).Seconds()
	}
	_ = cpu0
	parts := []partial{r.export((cpu2 - cpu1).Seconds(), connectTook.Seconds(), reads2-reads1)}
	if kids != nil {
		kp, err := kids.stop(ctx, o.drain+10*time.Second)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
		parts = append(parts, kp...)
	}
	r.closeAll()
	peak := mon.close()

	// Merge.
	var ackRTT, lat, connLat loadclient.Hist
	var cpuWindow float64
	var reads int64
	cpuSets := map[string]bool{}
	var cpus []string
	res.AckErrorCodes = map[string]int64{}
	var first, last int64
	for _, p := range parts {
		res.Connected += p.Connected
		res.Joined += p.Joined
		res.ConnectErrors += p.ConnectErrs
		res.Sent += p.Sent
		res.Acked += p.Acked
		res.AckErrors += p.AckErrs
		res.Expected += p.Expected
		res.Delivered += p.Delivered
		res.Unique += p.Unique
		res.Duplicated += p.Dup
		res.Reordered += p.Reorder
		res.Foreign += p.Foreign
		res.OtherEvents += p.Other
		res.Disconnects += p.Disconnects
		for k, v := range p.AckCodes {
			res.AckErrorCodes[k] += v
		}
		res.Errors = append(res.Errors, p.Errors...)
		ackRTT.Merge(p.AckRTT)
		lat.Merge(p.Lat)
		connLat.Merge(p.ConnLat)
		cpuWindow += p.CPUWindow
		reads += p.Reads
		if p.CPUs != "" && !cpuSets[p.CPUs] {
			cpuSets[p.CPUs] = true
			cpus = append(cpus, p.CPUs)
		}
		if p.FirstRecv > 0 && (first == 0 || p.FirstRecv < first) {
			first = p.FirstRecv
		}
		last = max(last, p.LastRecv)
	}
	if len(res.AckErrorCodes) == 0 {
		res.AckErrorCodes = nil
	}
	if len(res.Errors) > 10 {
		res.Errors = res.Errors[:10]
	}
	res.ConnectS = round3(connectTook.Seconds())
	if connectTook > 0 {
		res.ConnectPerSec = round1(float64(res.Connected) / connectTook.Seconds())
	}
	if connLat.Count() > 0 {
		s := connLat.SummaryMs()
		res.ConnectMs = &s
	}
	if o.scenario != "idle" {
		res.Lost = max(0, res.Expected-res.Unique)
		if ackRTT.Count() > 0 {
			s := ackRTT.SummaryMs()
			res.AckRTTMs = &s
		}
		if lat.Count() > 0 {
			s := lat.SummaryMs()
			res.LatencyMs = &s
		}
		if o.duration > 0 {
			res.AckedPerSec = round1(float64(res.Acked) / o.duration.Seconds())
		}
		// Delivered per second: from the start of sending to the last delivery.
		if last > 0 {
			span := float64(last-s1.At.UnixNano()) / 1e9
			if span > 0 {
				res.DeliveredPerSec = round1(float64(res.Unique) / span)
			}
		}
	}
	window := s2.At.Sub(s1.At).Seconds()
	res.Client = ClientStats{Procs: o.shards, WS: o.wsImpl, CPUS: round3(cpuWindow), GOMAXP: runtime.GOMAXPROCS(0),
		CPUs: cpus, Reader: o.reader}
	if o.scenario == "polling" {
		res.Client.WS = "polling"
		res.Client.Reader = ""
	}
	if o.reader == "reactor" && reads > 0 {
		res.Client.Reads = reads
		res.Client.PerRead = round3(float64(res.Delivered) / float64(reads))
	}
	if o.scenario != "idle" && res.Unique > 0 {
		res.Client.UsPerDeliver = round3(cpuWindow * 1e6 / float64(res.Unique))
	}
	if window > 0 {
		res.Client.CPUPct = round1(100 * cpuWindow / window)
	}
	if haveServer {
		cpu := (s2.CPU - s1.CPU).Seconds()
		ss := &ServerStats{PID: o.pid, CPUS: round3(cpu), RSSMBBefore: round1(mb(before.RSS)), RSSMBAfter: round1(mb(s2.RSS)),
			RSSMBPeak: round1(mb(peak)), Threads: s2.Threads, Op: sc.op}
		if window > 0 {
			ss.CPUPct = round1(100 * cpu / window)
		}
		var ops int64
		switch o.scenario {
		case "idle":
			ops = res.Connected
			if res.Connected > 0 {
				ss.RSSKBPerCon = round1(float64(s1.RSS-before.RSS) / 1024 / float64(res.Connected))
			}
			ss.Op = ""
		case "echo", "polling":
			ops = res.Acked
		default:
			ops = res.Unique
		}
		if ops > 0 && o.scenario != "idle" {
			ss.CPUUsPerOp = round3(cpu * 1e6 / float64(ops))
		}
		if o.scenario == "rooms" && res.Connected > 0 {
			ss.RSSKBPerCon = round1(float64(s2.RSS-before.RSS) / 1024 / float64(res.Connected))
		}
		res.Server = ss
	}
	res.OK = res.ConnectErrors == 0 && res.Connected == int64(o.clients) && res.Disconnects == 0 &&
		res.Lost == 0 && res.Duplicated == 0 && res.AckErrors == 0 && res.Foreign == 0
	if o.scenario != "idle" && o.scenario != "" && res.Acked == 0 {
		res.OK = false
	}
	if o.progress > 0 {
		logf("%s done: ok=%v connected %d sent %d acked %d delivered %d lost %d dup %d", o.scenario, res.OK,
			res.Connected, res.Sent, res.Acked, res.Unique, res.Lost, res.Duplicated)
	}
	return res, nil
}

func (o *Options) params() map[string]any {
	p := map[string]any{"clients": o.clients, "users": o.users, "procs": o.shards, "ws": o.wsImpl}
	switch o.scenario {
	case "idle":
		p["hold_s"] = o.hold.Seconds()
		p["settle_s"] = o.settle.Seconds()
	case "fanout":
		p["rate"] = o.rate
		if o.rate <= 0 {
			p["mode"] = "as-fast-as-acks"
			p["window"] = o.window
		} else {
			p["mode"] = "fixed-rate"
		}
		p["duration_s"] = o.duration.Seconds()
		p["text_bytes"] = o.textBytes
	case "rooms":
		p["room_size"] = o.roomSize
		fallthrough
	default:
		p["interval_ms"] = o.interval.Milliseconds()
		p["duration_s"] = o.duration.Seconds()
		p["text_bytes"] = o.textBytes
	}
	return p
}

func mb(b int64) float64       { return float64(b) / (1 << 20) }
func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
