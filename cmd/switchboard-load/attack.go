package main

// attack: the hostile clients of issue 10 ("Hardening"), run against a
// server that is already running, so that its measurements can be redone
// with one command each. Like the other scenarios it targets loopback only,
// bounds every phase in time, prints progress on stderr and one JSON object
// on stdout.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/loadclient"
	"github.com/switchboard/switchboard/internal/rawclient"
)

const attackUsage = `usage: switchboard-load attack MODE [flags]
Hostile clients of issue 10 against a running server (loopback only). --from is the attacker's source
address (default 127.0.0.2), --user-from the well-behaved user's or probe's (default 127.0.0.3); every
phase is bounded by --duration; --server-pid PID samples the server's VmRSS every 100 ms (peak reported).
Tokens are HS256, signed with --secret (default env JWT_SECRET), as the other scenarios sign them.

modes:
  handshake-flood  --conns workers (default 32) open Engine.IO polling handshakes (no CONNECT) from --from as
                   fast as they can; counts 200 / 429 / 503 / other per second; every 500 ms a user from
                   --user-from connects over WebSocket with a token, joins a room and asks presence.
  recovery-flood   --sockets (default 4) authenticated WebSocket clients from --from join one room and send
                   message events of --size text bytes (default 3000) as fast as acks come back; reports
                   messages/s, server RSS and switchboard_recovery_log_bytes / _evictions_total from /metrics.
                   The server needs RATE_LIMIT=0 (otherwise the flood is refused and kicked), and --size at
                   most MESSAGE_MAX_BYTES (default 4096). Compare with RECOVERY_WINDOW=0.
  keepalive        --conns TCP connections (default 1250) from --from each send one GET /healthz with keep-alive
                   and then stay idle; reports when the server closed each (min/median/max s) and how many
                   connects were refused (429, reset, EOF); a probe from --user-from GETs /healthz on a fresh
                   connection every 250 ms (2 s timeout). --duration defaults to 15s here (HTTP_IDLE_TIMEOUT is
                   5s). --conns is capped by this process's fd limit. To reproduce the fd exhaustion run the
                   server under e.g. "prlimit --nofile=1200:1200".
  sid-theft        a victim from --from opens a polling session and CONNECTs; a thief from --user-from POSTs an
                   event with the victim's sid, polls it and tries a WebSocket upgrade with it; reports the
                   HTTP statuses (400 "Session ID unknown" with SESSION_BIND_IP=1) and whether the victim's
                   session still works.
  nonreader        one WebSocket client from --from (SO_RCVBUF 4096) sends --size byte event packets with acks
                   (default 900000, keep it under MAX_PAYLOAD) as fast as the socket takes them and never reads;
                   --payload message (default: a message of 4000 text bytes padded with an extra field the
                   server ignores, broadcast back to the sender's room, so every packet also queues ~4 KB for
                   the client) or unknown (an unknown event: only a ~100-byte bad_request ack per packet, so the
                   kernel buffers take ~40x longer to fill: not cut off within 10 s in our runs). Reports when the
                   server cut it off (metrics_delta says by which limit), bytes sent and server RSS; a bystander
                   from --user-from asks presence every 100 ms. The server needs RATE_LIMIT=0 to measure the byte
                   budget (otherwise the flood kick cuts it first); the cut comes WRITE_TIMEOUT after the server's
                   writes block, so use --duration above WRITE_TIMEOUT + 10s.

flags: --url --path --secret --server-pid --duration --conns --sockets --size --from --user-from
       --metrics-token (bearer for /metrics) --metrics-url (METRICS_ADDR, default --url) --progress --payload
run "switchboard-load attack MODE -h" for the defaults`

var attackModes = []string{"handshake-flood", "recovery-flood", "keepalive", "sid-theft", "nonreader"}

// attackOptions are the flags of one attack.
type attackOptions struct {
	mode         string
	target       string // http://host:port
	hostport     string
	path         string
	secret       string
	pid          int
	from         string
	userFrom     string
	duration     time.Duration
	conns        int
	sockets      int
	size         int
	payload      string
	metricsToken string
	metricsURL   string
	progress     time.Duration
	room         string
}

func parseAttack(args []string) (*attackOptions, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(os.Stderr, attackUsage)
		if len(args) == 0 {
			return nil, errors.New("attack: no mode")
		}
		return nil, flag.ErrHelp
	}
	o := &attackOptions{mode: args[0]}
	if !slices.Contains(attackModes, o.mode) {
		fmt.Fprintln(os.Stderr, attackUsage)
		return nil, fmt.Errorf("attack: unknown mode %q", o.mode)
	}
	fs := flag.NewFlagSet("switchboard-load attack "+o.mode, flag.ContinueOnError)
	fs.StringVar(&o.target, "url", "http://127.0.0.1:3000", "server base URL (loopback only)")
	fs.StringVar(&o.path, "path", "/socket.io/", "Socket.IO path")
	fs.StringVar(&o.secret, "secret", os.Getenv("JWT_SECRET"), "HS256 secret for tokens (default env JWT_SECRET)")
	fs.IntVar(&o.pid, "server-pid", 0, "server process id: VmRSS is sampled from /proc/PID/status every 100 ms")
	fs.StringVar(&o.from, "from", "127.0.0.2", "the attacker's source address (loopback)")
	fs.StringVar(&o.userFrom, "user-from", "127.0.0.3", "the user's / probe's / bystander's source address (loopback)")
	dur, conns, size := 5*time.Second, 32, 3000
	switch o.mode {
	case "keepalive":
		dur, conns = 15*time.Second, 1250
	case "nonreader":
		size = 900000
	}
	fs.DurationVar(&o.duration, "duration", dur, "bound on the attack phase")
	fs.IntVar(&o.conns, "conns", conns, "handshake-flood: concurrent workers; keepalive: idle connections")
	fs.IntVar(&o.sockets, "sockets", 4, "recovery-flood: flooding sockets")
	fs.IntVar(&o.size, "size", size, "recovery-flood: message text bytes; nonreader: bytes per packet")
	fs.StringVar(&o.payload, "payload", "message", "nonreader: message (padded, broadcast back) or unknown (an unknown event)")
	fs.StringVar(&o.metricsToken, "metrics-token", os.Getenv("METRICS_TOKEN"), "bearer token for /metrics (default env METRICS_TOKEN)")
	fs.StringVar(&o.metricsURL, "metrics-url", "", "base URL of /metrics when the server has METRICS_ADDR (default --url)")
	fs.DurationVar(&o.progress, "progress", time.Second, "progress line interval on stderr (0: none)")
	fs.StringVar(&o.room, "room", "attack-room", "room the clients join")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	hp, err := loopbackHostPort(o.target)
	if err != nil {
		return nil, err
	}
	o.hostport = hp
	o.target = "http://" + hp
	if o.metricsURL == "" {
		o.metricsURL = o.target
	} else {
		mhp, err := loopbackHostPort(o.metricsURL)
		if err != nil {
			return nil, fmt.Errorf("--metrics-url: %w", err)
		}
		o.metricsURL = "http://" + mhp
	}
	for _, a := range []struct{ flag, v string }{{"--from", o.from}, {"--user-from", o.userFrom}} {
		if ip := net.ParseIP(a.v); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("%s: %q is not a loopback address", a.flag, a.v)
		}
	}
	if o.secret == "" && o.mode != "keepalive" {
		return nil, errors.New("--secret (or JWT_SECRET) is required to sign tokens")
	}
	if o.duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	if o.conns < 1 || o.sockets < 1 || o.size < 1 {
		return nil, errors.New("--conns, --sockets and --size must be at least 1")
	}
	if o.payload != "message" && o.payload != "unknown" {
		return nil, fmt.Errorf("--payload: message or unknown, got %q", o.payload)
	}
	return o, nil
}

func attack(args []string) error {
	o, err := parseAttack(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runAttack(ctx, o)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// AttackResult is the JSON object one attack prints.
type AttackResult struct {
	Mode     string         `json:"mode"`
	Target   string         `json:"target"`
	From     string         `json:"from"`
	UserFrom string         `json:"user_from"`
	Params   map[string]any `json:"params"`
	Started  time.Time      `json:"started"`
	ElapsedS float64        `json:"elapsed_s"`

	RSS *RSSStats `json:"server_rss,omitempty"`
	// Metrics are the server's relevant series at the end; MetricsDelta the
	// counters' (…_total) growth during the run.
	Metrics      map[string]float64 `json:"metrics,omitempty"`
	MetricsDelta map[string]float64 `json:"metrics_delta,omitempty"`
	MetricsError string             `json:"metrics_error,omitempty"`

	Flood     *FloodResult     `json:"handshake_flood,omitempty"`
	Recovery  *RecoveryResult  `json:"recovery_flood,omitempty"`
	Keepalive *KeepaliveResult `json:"keepalive,omitempty"`
	Theft     *TheftResult     `json:"sid_theft,omitempty"`
	NonReader *NonReaderResult `json:"nonreader,omitempty"`
	// User is the well-behaved client from --user-from: the connecting user
	// (handshake-flood), the /healthz probe (keepalive), the bystander (nonreader).
	User   *ProbeResult `json:"user,omitempty"`
	Errors []string     `json:"errors,omitempty"`
}

// RSSStats is the server's VmRSS over the run.
type RSSStats struct {
	PID        int     `json:"pid"`
	BaselineMB float64 `json:"baseline_mb"` // first sample, before the attack
	PeakMB     float64 `json:"peak_mb"`
	EndMB      float64 `json:"end_mb"`
	GrowthMB   float64 `json:"growth_mb"` // peak - baseline
	PeakAtS    float64 `json:"peak_at_s"` // seconds after the start
	Samples    int     `json:"samples"`
	Error      string  `json:"error,omitempty"`
}

// ProbeResult counts a well-behaved client's attempts during an attack.
type ProbeResult struct {
	What     string           `json:"what"`
	Every    string           `json:"every"`
	Attempts int64            `json:"attempts"`
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Failures map[string]int64 `json:"failures,omitempty"` // by kind
	Samples  []string         `json:"failure_samples,omitempty"`
	// LatencyMs: connect latency (dial to CONNECT) for the flood's user,
	// request latency for the probe, presence ack latency for the bystander.
	LatencyMs *loadclient.Summary `json:"latency_ms,omitempty"`
	MaxMs     float64             `json:"max_ms"`
	// TotalMaxMs (handshake-flood): connect + join-room + presence.
	TotalMaxMs float64 `json:"total_max_ms,omitempty"`
}

// FloodResult is handshake-flood's attacker side.
type FloodResult struct {
	Workers      int              `json:"workers"`
	Requests     int64            `json:"requests"`
	Accepted     int64            `json:"accepted"` // 200: a session was created
	Refused429   int64            `json:"refused_429"`
	Refused503   int64            `json:"refused_503"`
	OtherStatus  map[string]int64 `json:"other_status,omitempty"`
	Errors       int64            `json:"errors"` // no HTTP answer
	ErrorKinds   map[string]int64 `json:"error_kinds,omitempty"`
	AcceptedPerS float64          `json:"accepted_per_s"`
	RequestsPerS float64          `json:"requests_per_s"`
	RetryAfter   string           `json:"retry_after,omitempty"` // first Retry-After seen on a refusal
	PerSecond    []FloodSecond    `json:"per_second"`
}

// FloodSecond is one second of handshake-flood.
type FloodSecond struct {
	S          int   `json:"s"`
	Accepted   int64 `json:"accepted"`
	Refused429 int64 `json:"refused_429"`
	Refused503 int64 `json:"refused_503"`
	Other      int64 `json:"other"`
	Errors     int64 `json:"errors"`
}

// RecoveryResult is recovery-flood's outcome.
type RecoveryResult struct {
	Sockets          int              `json:"sockets"`
	Connected        int              `json:"connected"`
	TextBytes        int              `json:"text_bytes"`
	Sent             int64            `json:"sent"`
	Accepted         int64            `json:"accepted"`
	AcceptedPerS     float64          `json:"accepted_per_s"`
	AcceptedMBPerS   float64          `json:"accepted_text_mb_per_s"`
	Refused          map[string]int64 `json:"refused,omitempty"` // ack error codes
	Deliveries       int64            `json:"deliveries"`        // message events the sockets received
	Disconnects      int64            `json:"disconnects"`
	RecoveryLogBytes float64          `json:"recovery_log_bytes"` // at the end, from /metrics (-1: unknown)
	RecoveryLogPeak  float64          `json:"recovery_log_bytes_peak"`
	Evictions        float64          `json:"recovery_evictions_total"` // at the end (-1: unknown)
}

// KeepaliveResult is keepalive's attacker side.
type KeepaliveResult struct {
	Requested int     `json:"requested"`
	Attempted int     `json:"attempted"`
	FDLimit   uint64  `json:"fd_limit"`
	Capped    bool    `json:"capped_by_fd_limit,omitempty"`
	OpenS     float64 `json:"open_s"` // time to attempt every connection
	// KeptAlive got 200 without Connection: close and then idled.
	KeptAlive int `json:"kept_alive"`
	// Refused: connections the server refused or closed at once, by kind
	// (http_429, reset, eof_before_response, dial_failed, no_response, other).
	Refused      map[string]int `json:"refused"`
	RefusedTotal int            `json:"refused_total"`
	Samples      []string       `json:"refusal_samples,omitempty"`
	// ClosedByServer: idle connections the server closed before --duration;
	// IdleCloseS: after how long (from their response).
	ClosedByServer int     `json:"closed_by_server"`
	IdleCloseS     *Spread `json:"idle_close_s,omitempty"`
	StillOpen      int     `json:"still_open_at_end"`
	MaxOpen        int     `json:"max_open_at_once"`
}

// Spread is min / median / max.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// TheftResult is sid-theft's outcome.
type TheftResult struct {
	SID             string `json:"sid"`
	VictimConnected bool   `json:"victim_connected"`
	PostStatus      int    `json:"post_status"`
	PostBody        string `json:"post_body"`
	PollStatus      int    `json:"poll_status"` // 0: no answer within 2 s (a long poll held: accepted)
	PollBody        string `json:"poll_body"`
	UpgradeStatus   int    `json:"upgrade_status"` // 101: the thief took the stream
	UpgradeBody     string `json:"upgrade_body,omitempty"`
	UpgradeProbe    bool   `json:"upgrade_probe_answered"` // 2probe answered 3probe
	// VictimIntact: the victim's session still answers an event afterwards.
	VictimIntact bool   `json:"victim_intact"`
	VictimDetail string `json:"victim_detail,omitempty"`
}

// NonReaderResult is nonreader's attacker side.
type NonReaderResult struct {
	Payload     string  `json:"payload"`
	PacketBytes int     `json:"packet_bytes"`
	Connected   bool    `json:"connected"`
	Packets     int64   `json:"packets"` // written in full
	BytesSent   int64   `json:"bytes_sent"`
	SentMBPerS  float64 `json:"sent_mb_per_s"`
	CutOff      bool    `json:"cut_off"`
	CutOffS     float64 `json:"cut_off_s,omitempty"` // from the first write to the write error
	CutOffError string  `json:"cut_off_error,omitempty"`
	// MaxWriteStallMs: the longest a write waited (the server not reading:
	// MAX_INBOUND_BYTES backpressure).
	MaxWriteStallMs float64 `json:"max_write_stall_ms"`
	StalledAtEnd    bool    `json:"stalled_at_end,omitempty"`
	RcvBuf          int     `json:"so_rcvbuf"`
}

// attackRun holds one run.
type attackRun struct {
	o     *attackOptions
	res   *AttackResult
	start time.Time
	mu    sync.Mutex
}

func (a *attackRun) noteErr(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.res.Errors) < 20 {
		a.res.Errors = append(a.res.Errors, fmt.Sprintf(format, args...))
	}
}

// metricNames are the series each mode reports from /metrics.
var metricNames = map[string][]string{
	"handshake-flood": {"switchboard_pending_sessions", "switchboard_authenticated_connections", "switchboard_handshake_refusals_total",
		"switchboard_handshake_timeouts_total", "switchboard_handshakes_total", "switchboard_accept_errors_total"},
	"recovery-flood": {"switchboard_recovery_log_bytes", "switchboard_recovery_evictions_total", "switchboard_rate_limited_total",
		"switchboard_rate_limit_disconnects_total", "switchboard_slow_consumer_disconnects_total"},
	"keepalive": {"switchboard_handshake_refusals_total", "switchboard_accept_errors_total"},
	"sid-theft": {"switchboard_session_ip_mismatch_total"},
	"nonreader": {"switchboard_slow_consumer_disconnects_total", "switchboard_inbound_paused_total", "switchboard_rate_limit_disconnects_total",
		"switchboard_rate_limited_total", "switchboard_recovery_log_bytes", "switchboard_recovery_evictions_total"},
}

func runAttack(ctx context.Context, o *attackOptions) (*AttackResult, error) {
	a := &attackRun{o: o, start: time.Now()}
	a.res = &AttackResult{Mode: o.mode, Target: o.target, From: o.from, UserFrom: o.userFrom, Started: a.start,
		Params: map[string]any{"duration_s": o.duration.Seconds()}}
	switch o.mode {
	case "handshake-flood":
		a.res.Params["conns"] = o.conns
	case "recovery-flood":
		a.res.Params["sockets"], a.res.Params["size"] = o.sockets, o.size
	case "keepalive":
		a.res.Params["conns"] = o.conns
	case "nonreader":
		a.res.Params["size"], a.res.Params["payload"] = o.size, o.payload
	}
	mhc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	before, err := scrapeMetrics(ctx, mhc, o, metricNames[o.mode])
	if err != nil {
		a.res.MetricsError = err.Error()
	}
	var rss *rssSampler
	if o.pid > 0 {
		rss = startRSS(o.pid, a.start)
	}
	switch o.mode {
	case "handshake-flood":
		a.handshakeFlood(ctx)
	case "recovery-flood":
		a.recoveryFlood(ctx, mhc)
	case "keepalive":
		a.keepalive(ctx)
	case "sid-theft":
		a.sidTheft(ctx)
	case "nonreader":
		a.nonReader(ctx)
	}
	if rss != nil {
		a.res.RSS = rss.stop()
	}
	after, err := scrapeMetrics(context.Background(), mhc, o, metricNames[o.mode])
	if err != nil {
		a.res.MetricsError = err.Error()
	} else {
		a.res.Metrics = after
		a.res.MetricsDelta = map[string]float64{}
		for k, v := range after {
			if strings.Contains(k, "_total") {
				a.res.MetricsDelta[k] = v - before[k]
			}
		}
	}
	if r := a.res.Recovery; r != nil {
		r.RecoveryLogBytes, r.Evictions = -1, -1
		if v, ok := after["switchboard_recovery_log_bytes"]; ok {
			r.RecoveryLogBytes = v
			r.RecoveryLogPeak = max(r.RecoveryLogPeak, v)
		}
		if v, ok := after["switchboard_recovery_evictions_total"]; ok {
			r.Evictions = v
		}
	}
	a.res.ElapsedS = round3(time.Since(a.start).Seconds())
	return a.res, nil
}

// ---- measuring helpers ----

// rssSampler reads the server's VmRSS every 100 ms.
type rssSampler struct {
	pid   int
	t0    time.Time
	quit  chan struct{}
	done  chan struct{}
	stats RSSStats
	peak  atomic.Int64 // bytes, for progress lines
}

func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func startRSS(pid int, t0 time.Time) *rssSampler {
	s := &rssSampler{pid: pid, t0: t0, quit: make(chan struct{}), done: make(chan struct{})}
	s.stats.PID = pid
	var base, peak, last int64
	var peakAt time.Duration
	sample := func() {
		v, err := readRSS(pid)
		if err != nil {
			if s.stats.Error == "" {
				s.stats.Error = err.Error()
			}
			return
		}
		if s.stats.Samples == 0 {
			base = v
		}
		s.stats.Samples++
		last = v
		if v > peak {
			peak, peakAt = v, time.Since(t0)
			s.peak.Store(v)
		}
	}
	sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				sample()
				s.stats.BaselineMB, s.stats.PeakMB, s.stats.EndMB = round1(mb(base)), round1(mb(peak)), round1(mb(last))
				s.stats.GrowthMB = round1(mb(peak - base))
				s.stats.PeakAtS = round3(peakAt.Seconds())
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() *RSSStats {
	close(s.quit)
	<-s.done
	return &s.stats
}

func (a *attackRun) rssNow() string {
	if a.o.pid <= 0 {
		return ""
	}
	v, err := readRSS(a.o.pid)
	if err != nil {
		return " rss ?"
	}
	return fmt.Sprintf(" rss %.1f MB", mb(v))
}

// scrapeMetrics reads /metrics and keeps the series whose name is listed.
func scrapeMetrics(ctx context.Context, hc *http.Client, o *attackOptions, names []string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", o.metricsURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if o.metricsToken != "" {
		req.Header.Set("Authorization", "Bearer "+o.metricsToken)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("/metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("/metrics: HTTP %d (--metrics-token?)", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		key := line[:i]
		name := key
		if j := strings.IndexByte(key, '{'); j >= 0 {
			name = key[:j]
		}
		if !slices.Contains(names, name) {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[key] = v
		}
	}
	return out, sc.Err()
}

// errKind names an error without its addresses and ports, for counting.
func errKind(err error) string {
	var he *rawclient.HTTPError
	var ce *rawclient.ConnectError
	var lce *loadclient.ConnectError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &he):
		return "HTTP " + strconv.Itoa(he.Status)
	case errors.As(err, &ce):
		code, _ := ce.Data["code"].(string)
		return "connect_error " + code + " (" + ce.Message + ")"
	case errors.As(err, &lce):
		return "connect_error " + lce.Data.Code + " (" + lce.Message + ")"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := trimErr(err)
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}

// probe accumulates a ProbeResult from several goroutines.
type probe struct {
	mu       sync.Mutex
	r        ProbeResult
	hist     loadclient.Hist // µs
	attempts atomic.Int64
	ok       atomic.Int64
	failed   atomic.Int64
}

func newProbe(what string, every time.Duration) *probe {
	return &probe{r: ProbeResult{What: what, Every: every.String(), Failures: map[string]int64{}}}
}

func (p *probe) record(lat, total time.Duration, err error) {
	p.attempts.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failed.Add(1)
		p.r.Failures[errKind(err)]++
		if len(p.r.Samples) < 8 {
			p.r.Samples = append(p.r.Samples, fmt.Sprintf("+%s: %s", time.Now().Format("15:04:05.000"), trimErr(err)))
		}
		return
	}
	p.ok.Add(1)
	p.hist.Record(lat.Microseconds())
	p.r.MaxMs = max(p.r.MaxMs, round3(float64(lat.Microseconds())/1000))
	if total > 0 {
		p.r.TotalMaxMs = max(p.r.TotalMaxMs, round3(float64(total.Microseconds())/1000))
	}
}

func (p *probe) result() *ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.r
	r.Attempts, r.OK, r.Failed = p.attempts.Load(), p.ok.Load(), p.failed.Load()
	if p.hist.Count() > 0 {
		s := p.hist.SummaryMs()
		s.Max = r.MaxMs
		r.LatencyMs = &s
	}
	if len(r.Failures) == 0 {
		r.Failures = nil
	}
	return &r
}

// every runs fn on its own goroutine every interval until ctx ends, then
// waits for the runs still going (each must bound itself).
func every(ctx context.Context, interval time.Duration, fn func()) {
	var wg sync.WaitGroup
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// progressLoop calls line every --progress until ctx ends.
func (a *attackRun) progressLoop(ctx context.Context, line func() string) {
	if a.o.progress <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(a.o.progress)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				logf("%s +%.0fs %s%s", a.o.mode, time.Since(a.start).Seconds(), line(), a.rssNow())
			}
		}
	}()
}

// dialerFrom is a net.Dialer bound to the local address ip.
func dialerFrom(ip string, timeout time.Duration) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: timeout}
}

// httpFrom is an HTTP client whose connections come from ip.
func httpFrom(ip string, idle int, timeout time.Duration, keepAlive bool) *http.Client {
	d := dialerFrom(ip, timeout)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // no TIME_WAIT left on the source address's port range
			}
			return c, err
		},
		MaxIdleConns: idle, MaxIdleConnsPerHost: idle, DisableKeepAlives: !keepAlive, DisableCompression: true,
	}
	return &http.Client{Timeout: timeout, Transport: tr}
}

func (a *attackRun) token(sub string) string {
	tok, err := loadclient.Token([]byte(a.o.secret), sub, sub, 6*time.Hour)
	if err != nil {
		a.noteErr("token: %v", err)
	}
	return tok
}

// ackOK checks an ack's first argument for {ok:true}.
func ackOK(raw json.RawMessage) error {
	var v struct {
		OK    bool `json:"ok"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("ack %q: %w", truncStr(string(raw), 80), err)
	}
	if !v.OK {
		return fmt.Errorf("ack error %s", v.Error.Code)
	}
	return nil
}

func truncStr(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// ---- handshake-flood ----

func (a *attackRun) handshakeFlood(ctx context.Context) {
	o := a.o
	fctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	hc := httpFrom(o.from, 2*o.conns, 5*time.Second, true)
	defer hc.CloseIdleConnections()
	u := o.target + o.path + "?EIO=4&transport=polling"
	secs := int(math.Ceil(o.duration.Seconds())) + 1
	type bucket struct{ acc, r429, r503, other, errs atomic.Int64 }
	buckets := make([]bucket, secs)
	var reqs atomic.Int64
	fr := &FloodResult{Workers: o.conns, OtherStatus: map[string]int64{}, ErrorKinds: map[string]int64{}}
	var mu sync.Mutex
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fctx.Err() == nil {
				req, _ := http.NewRequestWithContext(fctx, "GET", u, nil)
				resp, err := hc.Do(req)
				if fctx.Err() != nil {
					if resp != nil {
						resp.Body.Close()
					}
					return // cut by the end of the phase: not counted
				}
				reqs.Add(1)
				b := &buckets[min(secs-2, int(time.Since(t0)/time.Second))] // a request ending on the last instant counts in the last second
				if err != nil {
					b.errs.Add(1)
					mu.Lock()
					fr.ErrorKinds[errKind(err)]++
					mu.Unlock()
					time.Sleep(10 * time.Millisecond) // no hot loop on a refused dial
					continue
				}
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					b.acc.Add(1)
				case 429, 503:
					if resp.StatusCode == 429 {
						b.r429.Add(1)
					} else {
						b.r503.Add(1)
					}
					if ra := resp.Header.Get("Retry-After"); ra != "" {
						mu.Lock()
						if fr.RetryAfter == "" {
							fr.RetryAfter = ra
						}
						mu.Unlock()
					}
				default:
					b.other.Add(1)
					mu.Lock()
					fr.OtherStatus[strconv.Itoa(resp.StatusCode)]++
					mu.Unlock()
				}
			}
		}()
	}
	user := newProbe("user connects over WebSocket with a token, join-room, presence", 500*time.Millisecond)
	tok := a.token("attack-user")
	a.progressLoop(fctx, func() string {
		var acc, ref int64
		for i := range buckets {
			acc += buckets[i].acc.Load()
			ref += buckets[i].r429.Load() + buckets[i].r503.Load()
		}
		return fmt.Sprintf("handshakes accepted %d refused %d; user ok %d failed %d", acc, ref, user.ok.Load(), user.failed.Load())
	})
	every(fctx, 500*time.Millisecond, func() {
		a.userConnect(tok, user)
	})
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	for i := range buckets {
		b := &buckets[i]
		s := FloodSecond{S: i, Accepted: b.acc.Load(), Refused429: b.r429.Load(), Refused503: b.r503.Load(), Other: b.other.Load(), Errors: b.errs.Load()}
		if s == (FloodSecond{S: i}) && i >= int(elapsed) {
			continue
		}
		fr.PerSecond = append(fr.PerSecond, s)
		fr.Accepted += s.Accepted
		fr.Refused429 += s.Refused429
		fr.Refused503 += s.Refused503
		fr.Errors += s.Errors
	}
	fr.Requests = reqs.Load()
	fr.AcceptedPerS = round1(float64(fr.Accepted) / elapsed)
	fr.RequestsPerS = round1(float64(fr.Requests) / elapsed)
	if len(fr.OtherStatus) == 0 {
		fr.OtherStatus = nil
	}
	if len(fr.ErrorKinds) == 0 {
		fr.ErrorKinds = nil
	}
	a.res.Flood = fr
	a.res.User = user.result()
}

// userConnect is one well-behaved user: WebSocket with a token from
// --user-from, join-room, presence (acks {ok:true}), then leaves.
func (a *attackRun) userConnect(tok string, p *probe) {
	o := a.o
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t := time.Now()
	c, err := rawclient.DialFrom(ctx, o.userFrom, o.target, o.path, "/", map[string]any{"token": tok}, nil)
	lat := time.Since(t)
	if err != nil {
		p.record(lat, lat, err)
		return
	}
	defer c.Close()
	for _, ev := range []string{"join-room", "presence"} {
		raw, err := c.Call(ctx, ev, o.room)
		if err == nil {
			err = ackOK(raw)
		}
		if err != nil {
			p.record(lat, time.Since(t), fmt.Errorf("%s: %w", ev, err))
			return
		}
	}
	p.record(lat, time.Since(t), nil)
}

// ---- recovery-flood ----

func (a *attackRun) recoveryFlood(ctx context.Context, mhc *http.Client) {
	o := a.o
	rr := &RecoveryResult{Sockets: o.sockets, TextBytes: o.size, Refused: map[string]int64{}}
	a.res.Recovery = rr
	d := &loadclient.Dialer{LocalIPs: []net.IP{net.ParseIP(o.from)}, Timeout: 10 * time.Second}
	roomJSON, _ := json.Marshal(o.room)
	type sock struct {
		c    *loadclient.Conn
		acks chan []byte
		gone chan struct{}
	}
	var socks []*sock
	var deliveries, disconnects atomic.Int64
	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	for i := 0; i < o.sockets; i++ {
		// MAX_CONNECTIONS_PER_USER (20) sockets per user.
		c, err := loadclient.Connect(cctx, d, o.hostport, o.path, a.token("attack-flooder-"+strconv.Itoa(i/20)))
		if err != nil {
			a.noteErr("socket %d: connect: %v", i, err)
			continue
		}
		ack, _, err := c.CallSync(cctx, 1, "join-room", roomJSON)
		if ok, code := loadclient.AckOK(ack); err != nil || !ok {
			a.noteErr("socket %d: join-room: %v %s", i, err, code)
			c.Close(true)
			continue
		}
		s := &sock{c: c, acks: make(chan []byte, 1), gone: make(chan struct{})}
		c.Start(loadclient.Handlers{
			Event: func(p []byte) {
				if bytes.HasPrefix(p, []byte(`["message"`)) {
					deliveries.Add(1)
				}
			},
			Ack: func(_ uint64, p []byte) {
				select {
				case s.acks <- append([]byte(nil), p...):
				default:
				}
			},
			Closed: func(err error) {
				if err != nil {
					disconnects.Add(1)
					a.noteErr("a flooding socket was disconnected: %v", err)
				}
				close(s.gone)
			},
		})
		socks = append(socks, s)
	}
	ccancel()
	rr.Connected = len(socks)
	if len(socks) == 0 {
		return
	}
	text := strings.Repeat("r", o.size)
	fctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var sent, accepted atomic.Int64
	var mu sync.Mutex
	t0 := time.Now()
	// The log's size once a second: its peak shows the cap holding.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
				if m, err := scrapeMetrics(fctx, mhc, o, []string{"switchboard_recovery_log_bytes"}); err == nil {
					mu.Lock()
					rr.RecoveryLogPeak = max(rr.RecoveryLogPeak, m["switchboard_recovery_log_bytes"])
					mu.Unlock()
				}
			}
		}
	}()
	a.progressLoop(fctx, func() string {
		mu.Lock()
		peak := rr.RecoveryLogPeak
		mu.Unlock()
		return fmt.Sprintf("messages accepted %d (%.0f/s) recovery log peak %.1f MB", accepted.Load(),
			float64(accepted.Load())/time.Since(t0).Seconds(), peak/(1<<20))
	})
	var wg sync.WaitGroup
	for _, s := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload, _ := json.Marshal(map[string]string{"roomId": o.room, "text": text})
			for id := uint64(2); fctx.Err() == nil; id++ {
				if err := s.c.Emit(id, "message", payload); err != nil {
					return
				}
				sent.Add(1)
				select {
				case p := <-s.acks:
					if ok, code := loadclient.AckOK(p); ok {
						accepted.Add(1)
					} else {
						mu.Lock()
						rr.Refused[code]++
						mu.Unlock()
					}
				case <-s.gone:
					return
				case <-fctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	for _, s := range socks {
		s.c.Close(true)
	}
	rr.Sent, rr.Accepted = sent.Load(), accepted.Load()
	rr.AcceptedPerS = round1(float64(rr.Accepted) / elapsed)
	rr.AcceptedMBPerS = round1(float64(rr.Accepted) * float64(o.size) / elapsed / (1 << 20))
	rr.Deliveries, rr.Disconnects = deliveries.Load(), disconnects.Load()
	if len(rr.Refused) == 0 {
		rr.Refused = nil
	}
}

// ---- keepalive ----

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

func (a *attackRun) keepalive(ctx context.Context) {
	o := a.o
	kr := &KeepaliveResult{Requested: o.conns, Refused: map[string]int{}}
	a.res.Keepalive = kr
	var rl syscall.Rlimit
	n := o.conns
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		kr.FDLimit = rl.Cur
		// Go raised the soft limit to the hard one at start; keep room for
		// the probe, /metrics and the runtime.
		if avail := int(rl.Cur) - openFDs() - 64; n > avail {
			n, kr.Capped = max(avail, 0), true
			a.noteErr("--conns %d capped at %d by this process's fd limit %d", o.conns, n, rl.Cur)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	end := time.Now().Add(o.duration)
	req := []byte("GET /healthz HTTP/1.1\r\nHost: " + o.hostport + "\r\nUser-Agent: switchboard-load\r\nConnection: keep-alive\r\n\r\n")
	var mu sync.Mutex
	var closes []float64
	var open, maxOpen, kept atomic.Int64
	refuse := func(kind string, err error) {
		mu.Lock()
		kr.Refused[kind]++
		if len(kr.Samples) < 8 && err != nil {
			kr.Samples = append(kr.Samples, kind+": "+trimErr(err))
		}
		mu.Unlock()
	}
	conns := make([]net.Conn, n)
	var idle sync.WaitGroup
	one := func(i int) {
		d := dialerFrom(o.from, 3*time.Second)
		c, err := d.DialContext(fctx, "tcp", o.hostport)
		if err != nil {
			if fctx.Err() == nil {
				refuse("dial_failed", err)
			}
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		for v := open.Add(1); ; {
			m := maxOpen.Load()
			if v <= m || maxOpen.CompareAndSwap(m, v) {
				break
			}
		}
		refused := func(kind string, err error) {
			open.Add(-1)
			_ = c.Close()
			refuse(kind, err)
		}
		_ = c.SetDeadline(loadclient.Deadline(fctx, time.Now().Add(5*time.Second)))
		if _, err := c.Write(req); err != nil {
			refused(ioKind(err, "write"), err)
			return
		}
		br := bufio.NewReaderSize(c, 512)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			refused(ioKind(err, "response"), err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 429:
			refused("http_429", nil)
			return
		case resp.StatusCode != 200:
			refused("http_"+strconv.Itoa(resp.StatusCode), nil)
			return
		case resp.Close:
			refused("connection_close_header", nil)
			return
		}
		conns[i] = c
		kept.Add(1)
		got := time.Now()
		_ = c.SetDeadline(end)
		idle.Add(1)
		go func() {
			defer idle.Done()
			_, err := br.ReadByte() // the server's close (EOF or reset), or our deadline
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // still open at the end
			}
			open.Add(-1)
			mu.Lock()
			closes = append(closes, time.Since(got).Seconds())
			mu.Unlock()
		}()
	}
	probeP := newProbe("GET /healthz on a fresh connection, 2 s timeout", 250*time.Millisecond)
	phc := httpFrom(o.userFrom, 0, 2*time.Second, false)
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		every(fctx, 250*time.Millisecond, func() {
			t := time.Now()
			resp, err := phc.Get(o.target + "/healthz")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
			}
			if fctx.Err() != nil && err != nil {
				return // cut by the end of the phase
			}
			probeP.record(time.Since(t), 0, err)
		})
	}()
	a.progressLoop(fctx, func() string {
		mu.Lock()
		defer mu.Unlock()
		ref := 0
		for _, v := range kr.Refused {
			ref += v
		}
		return fmt.Sprintf("open %d kept-alive %d refused %d closed by server %d; probe ok %d failed %d",
			open.Load(), kept.Load(), ref, len(closes), probeP.ok.Load(), probeP.failed.Load())
	})
	t0 := time.Now()
	next := make(chan int)
	var openers sync.WaitGroup
	for w := 0; w < 64; w++ {
		openers.Add(1)
		go func() {
			defer openers.Done()
			for i := range next {
				one(i)
			}
		}()
	}
	attempted := 0
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
			attempted++
		case <-fctx.Done():
			break feed
		}
	}
	close(next)
	openers.Wait()
	kr.Attempted = attempted
	kr.OpenS = round3(time.Since(t0).Seconds())
	logf("keepalive: %d connections attempted in %.2fs, %d kept alive", attempted, kr.OpenS, kept.Load())
	idle.Wait()
	<-probeDone
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	kr.KeptAlive = int(kept.Load())
	kr.MaxOpen = int(maxOpen.Load())
	kr.ClosedByServer = len(closes)
	kr.StillOpen = kr.KeptAlive - kr.ClosedByServer
	for _, v := range kr.Refused {
		kr.RefusedTotal += v
	}
	if len(closes) > 0 {
		sort.Float64s(closes)
		kr.IdleCloseS = &Spread{Min: round3(closes[0]), Median: round3(closes[len(closes)/2]), Max: round3(closes[len(closes)-1])}
	}
	a.res.User = probeP.result()
}

// ioKind classifies how a connection ended before its response.
func ioKind(err error, stage string) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof_before_response"
	case errors.As(err, &ne) && ne.Timeout():
		return "no_response"
	}
	return "other_" + stage
}

// ---- sid-theft ----

func (a *attackRun) sidTheft(ctx context.Context) {
	o := a.o
	tr := &TheftResult{}
	a.res.Theft = tr
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	victim := httpFrom(o.from, 4, 3*time.Second, true)
	thief := httpFrom(o.userFrom, 4, 3*time.Second, true)
	defer victim.CloseIdleConnections()
	defer thief.CloseIdleConnections()
	do := func(c *http.Client, method, u, body string, timeout time.Duration) (int, string, error) {
		rctx, rcancel := context.WithTimeout(ctx, timeout)
		defer rcancel()
		req, _ := http.NewRequestWithContext(rctx, method, u, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b), nil
	}
	base := o.target + o.path + "?EIO=4&transport=polling"
	st, body, err := do(victim, "GET", base, "", 3*time.Second)
	if err != nil || st != 200 {
		a.noteErr("victim handshake: %d %q %v", st, truncStr(body, 100), err)
		return
	}
	var open struct {
		SID string `json:"sid"`
	}
	if i := strings.IndexByte(body, '{'); i >= 0 {
		_ = json.Unmarshal([]byte(body[i:]), &open)
	}
	if open.SID == "" {
		a.noteErr("victim handshake: no sid in %q", truncStr(body, 100))
		return
	}
	tr.SID = open.SID
	sess := base + "&sid=" + open.SID
	auth, _ := json.Marshal(map[string]string{"token": a.token("attack-victim")})
	if st, body, err := do(victim, "POST", sess, "40"+string(auth), 3*time.Second); err != nil || st != 200 {
		a.noteErr("victim CONNECT POST: %d %q %v", st, truncStr(body, 100), err)
		return
	}
	st, body, err = do(victim, "GET", sess, "", 3*time.Second)
	tr.VictimConnected = err == nil && st == 200 && strings.Contains(body, "40{")
	if !tr.VictimConnected {
		a.noteErr("victim CONNECT reply: %d %q %v", st, truncStr(body, 100), err)
	}
	logf("sid-theft: victim %s connected from %s; thief from %s", open.SID, o.from, o.userFrom)

	// The thief: an event as the victim, a poll of its stream, an upgrade.
	ev, _ := json.Marshal([]any{"message", map[string]string{"roomId": o.room, "text": "sent by the thief"}})
	tr.PostStatus, tr.PostBody, err = do(thief, "POST", sess, "42"+string(ev), 3*time.Second)
	if err != nil {
		tr.PostBody = "error: " + errKind(err)
	}
	tr.PostBody = truncStr(tr.PostBody, 200)
	wd := websocket.Dialer{NetDialContext: dialerFrom(o.userFrom, 3*time.Second).DialContext, HandshakeTimeout: 3 * time.Second}
	wsURL := "ws://" + o.hostport + o.path + "?EIO=4&transport=websocket&sid=" + open.SID
	ws, resp, err := wd.DialContext(ctx, wsURL, nil)
	if resp != nil {
		tr.UpgradeStatus = resp.StatusCode
		if resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			tr.UpgradeBody = truncStr(string(b), 200)
		}
	} else if err != nil {
		tr.UpgradeBody = "error: " + errKind(err)
	}
	if ws != nil {
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		if ws.WriteMessage(websocket.TextMessage, []byte("2probe")) == nil {
			if _, m, err := ws.ReadMessage(); err == nil && string(m) == "3probe" {
				tr.UpgradeProbe = true
			}
		}
		ws.Close()
	}

	tr.VictimIntact, tr.VictimDetail = victimWorks(ctx, do, victim, sess, o.room)

	// Last (a held poll that the thief abandons ends the session): the
	// thief polls the victim's stream.
	tr.PollStatus, tr.PollBody, err = do(thief, "GET", sess, "", 2*time.Second)
	if err != nil {
		tr.PollBody = "error: " + errKind(err) // a timeout: the server held the poll, i.e. accepted it
	}
	tr.PollBody = truncStr(tr.PollBody, 200)
}

// victimWorks reports whether the victim's polling session still answers
// presence with an ack.
func victimWorks(ctx context.Context, do func(*http.Client, string, string, string, time.Duration) (int, string, error), victim *http.Client, sess, room string) (bool, string) {
	if st, body, err := do(victim, "POST", sess, `421["presence",`+strconv.Quote(room)+`]`, 3*time.Second); err != nil || st != 200 {
		return false, fmt.Sprintf("POST %d %s %s", st, truncStr(body, 100), errKind(err))
	}
	detail := ""
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, body, err := do(victim, "GET", sess, "", 3*time.Second)
		if err != nil || st != 200 {
			return false, fmt.Sprintf("GET %d %s %s", st, truncStr(body, 100), errKind(err))
		}
		if strings.Contains(body, `431[{"ok":true`) {
			return true, ""
		}
		detail = "last poll: " + truncStr(body, 100)
	}
	return false, detail
}

// ---- nonreader ----

// nonReaderBody is the JSON array of one packet of about size bytes.
func nonReaderBody(o *attackOptions) []byte {
	var b []byte
	if o.payload == "message" {
		text := min(4000, max(1, o.size/2))
		b = fmt.Appendf(nil, `["message",{"roomId":%q,"text":"%s","pad":"`, o.room, strings.Repeat("t", text))
	} else {
		b = []byte(`["attack-nonreader",{"pad":"`)
	}
	if pad := o.size - len(b) - 3 - 10; pad > 0 { // 3: `"}]`; 10: "42" and the ack id
		b = append(b, bytes.Repeat([]byte{'p'}, pad)...)
	}
	return append(b, `"}]`...)
}

func writeWSText(c net.Conn, s string) error {
	_, err := c.Write(append(loadclient.AppendClientFrameHeader(nil, 0x1, len(s)), s...))
	return err
}

// readWSText reads the next text message (small frames only), answering
// WebSocket pings.
func readWSText(c net.Conn, br *bufio.Reader) (string, error) {
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return "", err
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return "", err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(br, e[:]); err != nil {
				return "", err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		if n > 1<<20 {
			return "", fmt.Errorf("websocket frame of %d bytes", n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return "", err
		}
		switch h[0] & 0x0f {
		case 0x1:
			return string(p), nil
		case 0x8:
			return "", errors.New("websocket closed by the server")
		case 0x9:
			b := append([]byte{0x8a, 0x80 | byte(len(p))}, 0, 0, 0, 0)
			_, _ = c.Write(append(b, p...))
		}
	}
}

// dialNonReader opens a WebSocket from --from with a 4 KB receive buffer
// (set before connect, so the advertised window stays small), connects with
// a token and joins the room; after it returns, nothing is ever read.
func (a *attackRun) dialNonReader(ctx context.Context) (net.Conn, int, error) {
	o := a.o
	d := dialerFrom(o.from, 5*time.Second)
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}
	c, err := d.DialContext(ctx, "tcp", o.hostport)
	if err != nil {
		return nil, 0, err
	}
	fail := func(err error) (net.Conn, int, error) { c.Close(); return nil, 0, err }
	tc := c.(*net.TCPConn)
	_ = tc.SetReadBuffer(4096)
	_ = tc.SetNoDelay(true)
	rcvbuf := 0
	if rc, err := tc.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { rcvbuf, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var key [16]byte
	_, _ = rand.Read(key[:])
	up := "GET " + o.path + "?EIO=4&transport=websocket HTTP/1.1\r\nHost: " + o.hostport +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n"
	if _, err := io.WriteString(c, up); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail(fmt.Errorf("websocket upgrade: %w", err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("websocket upgrade: HTTP %d", resp.StatusCode))
	}
	expect := func(prefixes ...string) (string, error) {
		for {
			m, err := readWSText(c, br)
			if err != nil {
				return "", err
			}
			if m == "2" {
				_ = writeWSText(c, "3")
				continue
			}
			for _, p := range prefixes {
				if strings.HasPrefix(m, p) {
					return m, nil
				}
			}
		}
	}
	if _, err := expect("0{"); err != nil {
		return fail(fmt.Errorf("engine.io open: %w", err))
	}
	if err := writeWSText(c, string(loadclient.AuthPacket(a.token("attack-nonreader")))); err != nil {
		return fail(err)
	}
	m, err := expect("40", "44")
	if err != nil {
		return fail(fmt.Errorf("waiting for CONNECT: %w", err))
	}
	if strings.HasPrefix(m, "44") {
		return fail(fmt.Errorf("connect_error: %s", truncStr(m[2:], 120)))
	}
	if o.payload == "message" {
		if err := writeWSText(c, `420["join-room",`+strconv.Quote(o.room)+`]`); err != nil {
			return fail(err)
		}
		m, err := expect("430[")
		if err != nil {
			return fail(fmt.Errorf("join-room: %w", err))
		}
		if err := ackOK(json.RawMessage(strings.TrimSuffix(strings.TrimPrefix(m, "430["), "]"))); err != nil {
			return fail(fmt.Errorf("join-room: %w", err))
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, rcvbuf, nil
}

func (a *attackRun) nonReader(ctx context.Context) {
	o := a.o
	body := nonReaderBody(o)
	nr := &NonReaderResult{Payload: o.payload, PacketBytes: len(body) + 2}
	a.res.NonReader = nr
	fctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	end := time.Now().Add(o.duration)

	// The bystander: presence with an ack every 100 ms (2 s timeout).
	by := newProbe("bystander asks presence every 100 ms (2 s timeout)", 100*time.Millisecond)
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan struct{})
	var bc *rawclient.Client
	{
		dctx, dcancel := context.WithTimeout(fctx, 5*time.Second)
		var err error
		bc, err = rawclient.DialFrom(dctx, o.userFrom, o.target, o.path, "/", map[string]any{"token": a.token("attack-bystander")}, nil)
		dcancel()
		if err != nil {
			a.noteErr("bystander: %v", err)
			bc = nil
		}
	}
	go func() {
		defer close(bdone)
		if bc == nil {
			return
		}
		defer bc.Close()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for bctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(bctx, 2*time.Second)
			t0 := time.Now()
			raw, err := bc.Call(cctx, "presence", o.room+"-bystander")
			ccancel()
			if bctx.Err() != nil && err != nil {
				return
			}
			if err == nil {
				err = ackOK(raw)
			}
			by.record(time.Since(t0), 0, err)
			select {
			case <-bc.Disconnected:
				a.noteErr("the bystander was disconnected")
				return
			case <-bctx.Done():
			case <-t.C:
			}
		}
	}()

	c, rcvbuf, err := a.dialNonReader(fctx)
	if err != nil {
		a.noteErr("nonreader: %v", err)
	} else {
		nr.Connected, nr.RcvBuf = true, rcvbuf
		logf("nonreader: connected from %s (SO_RCVBUF %d), sending %d-byte packets, never reading", o.from, rcvbuf, nr.PacketBytes)
		var packets, sent atomic.Int64
		a.progressLoop(fctx, func() string {
			return fmt.Sprintf("packets %d (%.0f MB) bystander acks %d failed %d max %.0f ms", packets.Load(), mb(sent.Load()),
				by.ok.Load(), by.failed.Load(), by.result().MaxMs)
		})
		hdr := make([]byte, 0, 14)
		t0 := time.Now()
		for id := uint64(1); ; id++ {
			prefix := strconv.AppendUint([]byte("42"), id, 10)
			hdr = loadclient.AppendClientFrameHeader(hdr[:0], 0x1, len(prefix)+len(body))
			_ = c.SetWriteDeadline(end)
			ws := time.Now()
			bufs := net.Buffers{hdr, prefix, body}
			n, err := bufs.WriteTo(c)
			sent.Add(n)
			nr.MaxWriteStallMs = max(nr.MaxWriteStallMs, round3(float64(time.Since(ws).Microseconds())/1000))
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() || fctx.Err() != nil {
					nr.StalledAtEnd = n < int64(len(hdr)+len(prefix)+len(body))
				} else {
					nr.CutOff, nr.CutOffS, nr.CutOffError = true, round3(time.Since(t0).Seconds()), errKind(err)
				}
				break
			}
			packets.Add(1)
		}
		elapsed := time.Since(t0).Seconds()
		c.Close()
		nr.Packets, nr.BytesSent = packets.Load(), sent.Load()
		nr.SentMBPerS = round1(mb(nr.BytesSent) / elapsed)
		if nr.CutOff {
			logf("nonreader: cut off after %.2fs (%s), %d packets", nr.CutOffS, nr.CutOffError, nr.Packets)
		} else {
			logf("nonreader: not cut off within %s, %d packets", o.duration, nr.Packets)
		}
	}
	// The bystander goes on for a moment after the cut, then stops.
	select {
	case <-time.After(500 * time.Millisecond):
	case <-ctx.Done():
	}
	bcancel()
	<-bdone
	a.res.User = by.result()
}
