package server

import (
	"sync/atomic"

	"github.com/switchboard/switchboard/internal/sio"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are Switchboard's Prometheus metrics, on a registry of their own
// so that several servers (tests, embedding) never collide.
type metrics struct {
	reg         *prometheus.Registry
	handshakes  *prometheus.CounterVec
	authFail    *prometheus.CounterVec
	eventsIn    *prometheus.CounterVec
	eventsOut   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	rateLimited prometheus.Counter
	floodKicks  prometheus.Counter
	panics      *prometheus.CounterVec
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	// liveIn and liveOut count the same events as eventsIn and eventsOut,
	// every namespace together, for the live panel's sampler (live.go).
	liveIn  atomic.Uint64
	liveOut atomic.Uint64
	// limits counts each named limit a client hit (sio.Limit*), on the
	// counter named for it; filled once, read without a lock.
	limits       map[string]prometheus.Counter
	acceptErrors prometheus.Counter
	redisErrors  prometheus.Counter
}

// gauges are the levels the metrics read at scrape time.
type gauges struct {
	transports    func() map[string]int
	rooms         func() int
	pending       func() int   // sessions with no namespace yet
	authenticated func() int   // namespace "/" connections (what MAX_CONNECTIONS counts)
	maxConns      int          // MAX_CONNECTIONS (0: none)
	recoveryBytes func() int64 // bytes in the recovery log
	dedupe        func() int   // clientIds remembered (memory adapter; -1: kept elsewhere)
	ready         func() bool
}

// limitCounters names the counter of each limit.
var limitCounters = []struct{ limit, name, label, help string }{
	{sio.LimitPending, "switchboard_handshake_refusals_total", "pending_limit", ""},
	{sio.LimitIPSessions, "switchboard_handshake_refusals_total", "ip_limit", ""},
	{sio.LimitIPRate, "switchboard_handshake_refusals_total", "ip_rate", ""},
	{sio.LimitIPConns, "switchboard_handshake_refusals_total", "ip_connections", ""},
	{sio.LimitOrigin, "switchboard_handshake_refusals_total", "origin", ""},
	{sio.LimitCooldown, "switchboard_handshake_refusals_total", "cooldown", ""},
	{sio.LimitSessionIP, "switchboard_session_ip_mismatch_total", "", "Requests for an existing session from another client IP, refused (SESSION_BIND_IP)."},
	{sio.LimitHandshakeTime, "switchboard_handshake_timeouts_total", "", "Sessions closed for joining no namespace within HANDSHAKE_TIMEOUT."},
	{sio.LimitSlowConsumer, "switchboard_slow_consumer_disconnects_total", "", "Clients cut off for not reading (MAX_BUFFERED_BYTES or WRITE_TIMEOUT)."},
	{sio.LimitInboundPaused, "switchboard_inbound_paused_total", "", "Times a connection's reader paused because its input filled MAX_INBOUND_BYTES."},
	{sio.LimitRecoveryEvict, "switchboard_recovery_evictions_total", "", "Broadcasts evicted from the recovery log before their window (RECOVERY_MAX_BYTES)."},
	{sio.LimitAckExpired, "switchboard_server_acks_expired_total", "", "Acks the server asked for and the client never sent within ACK_TIMEOUT."},
	{sio.LimitDedupeEviction, "switchboard_dedupe_evictions_total", "", "Message clientIds forgotten before DEDUPE_WINDOW (DEDUPE_MAX_ENTRIES)."},
	{sio.LimitDynamicNamespaces, "switchboard_dynamic_namespace_refusals_total", "", "Connects to a new dynamic namespace refused at MAX_DYNAMIC_NAMESPACES."},
	{sio.LimitAdminQueue, "switchboard_admin_events_dropped_total", "", "Socket events for the Admin UI dropped because ADMIN_UI_QUEUE were waiting."},
}

func newMetrics(g gauges) *metrics {
	transports, rooms := g.transports, g.rooms
	m := &metrics{reg: prometheus.NewRegistry(), limits: map[string]prometheus.Counter{}}
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_handshake_refusals_total",
		Help: "New sessions or connects refused by a limit: pending_limit, ip_limit, ip_rate, ip_connections (TCP), origin, cooldown.",
	}, []string{"reason"})
	m.reg.MustRegister(refusals)
	for _, l := range limitCounters {
		if l.label != "" {
			m.limits[l.limit] = refusals.WithLabelValues(l.label)
			continue
		}
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: l.name, Help: l.help})
		m.reg.MustRegister(c)
		m.limits[l.limit] = c
	}
	m.acceptErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_accept_errors_total", Help: "Failed accepts of new TCP connections (EMFILE and others).",
	})
	m.redisErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_redis_errors_total", Help: "Errors of the Redis adapters (publish, subscribe, presence, dedupe).",
	})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(m.acceptErrors, m.redisErrors,
		gauge("switchboard_pending_sessions", "Engine.IO sessions not connected to a namespace yet (MAX_PENDING_SESSIONS).",
			func() float64 { return float64(g.pending()) }),
		gauge("switchboard_authenticated_connections", "Connections to namespace / (what MAX_CONNECTIONS counts).",
			func() float64 { return float64(g.authenticated()) }),
		gauge("switchboard_max_connections", "The MAX_CONNECTIONS limit (0: none).",
			func() float64 { return float64(g.maxConns) }),
		gauge("switchboard_recovery_log_bytes", "Encoded bytes of broadcasts kept for connection state recovery (RECOVERY_MAX_BYTES).",
			func() float64 { return float64(g.recoveryBytes()) }),
		gauge("switchboard_dedupe_entries", "Message clientIds remembered on this node (DEDUPE_MAX_ENTRIES).",
			func() float64 { return float64(g.dedupe()) }),
		gauge("switchboard_ready", "1 when /readyz answers ready, else 0.", func() float64 {
			if g.ready() {
				return 1
			}
			return 0
		}),
	)
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_handshakes_total", Help: "Namespace connection attempts by result (ok or the refusal code).",
	}, []string{"namespace", "result"})
	m.authFail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_auth_failures_total", Help: "Refused authentications by code.",
	}, []string{"code"})
	for _, code := range []string{"token_missing", "token_invalid", "token_expired"} {
		m.authFail.WithLabelValues(code) // exported at 0 from the start, so rate() and alerts see the first failure
	}
	m.eventsIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_events_in_total", Help: "Client events handled, by event and result code.",
	}, []string{"namespace", "event", "result"})
	m.eventsOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_events_out_total", Help: "Events emitted by the server (a broadcast counts once), by event.",
	}, []string{"namespace", "event"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "switchboard_handler_duration_seconds", Help: "Event handler latency, ack included.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"namespace", "event"})
	m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_rate_limited_total", Help: "Events refused with rate_limited.",
	})
	m.floodKicks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_rate_limit_disconnects_total", Help: "Connections disconnected for flooding.",
	})
	m.panics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_handler_panics_total", Help: "Recovered panics in handlers and hooks.",
	}, []string{"namespace", "event"})
	conns := prometheus.NewDesc("switchboard_connections", "Open connections by transport.", []string{"transport"}, nil)
	m.reg.MustRegister(
		m.handshakes, m.authFail, m.eventsIn, m.eventsOut, m.latency, m.rateLimited, m.floodKicks, m.panics,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_received_bytes_total", Help: "Bytes read from client connections (wire level).",
		}, func() float64 { return float64(m.bytesIn.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_sent_bytes_total", Help: "Bytes written to client connections (wire level).",
		}, func() float64 { return float64(m.bytesOut.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_rooms", Help: "Rooms with members on this node (namespace /).",
		}, func() float64 { return float64(rooms()) }),
		collectorFunc{desc: conns, collect: func(ch chan<- prometheus.Metric) {
			counts := transports()
			for _, t := range []string{"polling", "websocket"} {
				ch <- prometheus.MustNewConstMetric(conns, prometheus.GaugeValue, float64(counts[t]), t)
			}
		}},
	)
	return m
}

// clusterStats is what a Redis adapter counts of its inter-node work (issue
// 11): both adapters have it.
type clusterStats interface {
	DecodeErrors() uint64
	WriteQueueDepth() int
	WriteQueueDropped() uint64
	InboxBacklog() int
	InboxOverflows() uint64
	SerialQueueDepth() int
	SerialRefused() uint64
}

// restoreStats is what the streams adapter counts of its session restores.
type restoreStats interface {
	RestoreOverflows() uint64
	RestoresAbandoned() uint64
	TailBytes() int
	RestoreReads() (memory, redis uint64)
}

// registerCluster exports the adapter's counters and queue depths.
func (m *metrics) registerCluster(c clusterStats) {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	m.reg.MustRegister(
		counter("switchboard_cluster_decode_errors_total", "Inter-node packets, requests or responses dropped because they did not decode.", c.DecodeErrors),
		gauge("switchboard_cluster_write_queue_depth", "Redis writes (responses, session saves) waiting for the node's writer.", c.WriteQueueDepth),
		counter("switchboard_cluster_write_queue_dropped_total", "Redis writes dropped: queue full, too old, or failed.", c.WriteQueueDropped),
		gauge("switchboard_cluster_inbox_backlog", "Inter-node messages held behind a disconnect batch.", c.InboxBacklog),
		counter("switchboard_cluster_inbox_overflows_total", "Times the held inter-node backlog reached its cap and was released.", c.InboxOverflows),
		gauge("switchboard_cluster_serial_queue_depth", "Disconnect batches and server-side events waiting to run.", c.SerialQueueDepth),
		counter("switchboard_cluster_serial_refused_total", "Disconnect batches and server-side events refused: their queue was full.", c.SerialRefused),
	)
	if r, ok := c.(interface{ ShortPublishes() uint64 }); ok {
		m.reg.MustRegister(counter("switchboard_cluster_publish_short_total",
			"Broadcasts published that reached fewer servers than the most reached over the last 30 s: a server's subscription was down and it missed them (ADAPTER=redis).", r.ShortPublishes))
	}
	if r, ok := c.(restoreStats); ok {
		m.reg.MustRegister(
			counter("switchboard_cluster_restore_overflows_total", "Session restores given up because the live entries buffered meanwhile exceeded their cap.", r.RestoreOverflows),
			counter("switchboard_cluster_restores_abandoned_total", "Session restores abandoned (the connection went away or failed before it completed).", r.RestoresAbandoned),
			gauge("switchboard_cluster_replay_tail_bytes", "Approximate memory of the stream's recent broadcasts kept for session restores (RECOVERY_MAX_BYTES).", r.TailBytes),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_cluster_restore_reads_total", Help: "Session restores by where their replay was read: the tail in memory, or the stream in Redis.", ConstLabels: prometheus.Labels{"source": "memory"}},
				func() float64 { m, _ := r.RestoreReads(); return float64(m) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_cluster_restore_reads_total", Help: "Session restores by where their replay was read: the tail in memory, or the stream in Redis.", ConstLabels: prometheus.Labels{"source": "redis"}},
				func() float64 { _, n := r.RestoreReads(); return float64(n) }),
		)
	}
}

// Handshake implements sio.Observer.
func (m *metrics) Handshake(nsp, code string) {
	m.handshakes.WithLabelValues(nsp, code).Inc()
	switch code {
	case "token_missing", "token_invalid", "token_expired":
		m.authFail.WithLabelValues(code).Inc()
	}
}

// Event implements sio.Observer.
func (m *metrics) Event(nsp, event string, took time.Duration, code string) {
	m.liveIn.Add(1)
	m.eventsIn.WithLabelValues(nsp, event, code).Inc()
	m.latency.WithLabelValues(nsp, event).Observe(took.Seconds())
	if code == "rate_limited" {
		m.rateLimited.Inc()
	}
}

// Emitted implements sio.Observer.
func (m *metrics) Emitted(nsp, event string) {
	m.liveOut.Add(1)
	m.eventsOut.WithLabelValues(nsp, event).Inc()
}

// Panic implements sio.Observer.
func (m *metrics) Panic(nsp, event string) { m.panics.WithLabelValues(nsp, event).Inc() }

// Limit implements sio.Observer.
func (m *metrics) Limit(name string) {
	if c := m.limits[name]; c != nil {
		c.Inc()
	}
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
