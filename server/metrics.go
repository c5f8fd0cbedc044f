package server

import (
	"sync/atomic"
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
}

func newMetrics(transports func() map[string]int, rooms func() int) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_handshakes_total", Help: "Namespace connection attempts by result (ok or the refusal code).",
	}, []string{"namespace", "result"})
	m.authFail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_auth_failures_total", Help: "Refused authentications by code.",
	}, []string{"code"})
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
	m.eventsIn.WithLabelValues(nsp, event, code).Inc()
	m.latency.WithLabelValues(nsp, event).Observe(took.Seconds())
	if code == "rate_limited" {
		m.rateLimited.Inc()
	}
}

// Emitted implements sio.Observer.
func (m *metrics) Emitted(nsp, event string) { m.eventsOut.WithLabelValues(nsp, event).Inc() }

// Panic implements sio.Observer.
func (m *metrics) Panic(nsp, event string) { m.panics.WithLabelValues(nsp, event).Inc() }

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
