package server

// The demo page's live panel (web/app.js): GET /live.json says what this node
// is doing now, from in-process counters only (never by scraping /metrics):
// its NODE_ID, its connections by transport, the rooms of namespace "/",
// the events in and out of each of the last 10 seconds, and the nodes of the
// cluster. The page asks every 2 s.
//
// Cost. The sampler is a 1-second ticker that reads the Observer's two atomic
// counters (metrics.liveIn, liveOut: one atomic add per event, no lock) into
// a 10-slot ring, and counts connections by transport; it runs only while
// someone asks (it stops a minute after the last request, and when the node
// drains), so a node nobody watches pays nothing. A request copies the last
// sample. The cluster view (Redis adapters) is refreshed in the background
// at most every 2 s with a 1 s timeout; a request never waits on Redis except
// for the very first view (300 ms at most), and otherwise gets the last known
// one, marked stale when its refresh failed.
//
// Access: open in development mode; in production it follows /metrics:
// METRICS_TOKEN, when set, is required as a bearer token. With METRICS_ADDR
// and no METRICS_TOKEN, /metrics is not on ADDR at all, and neither is
// /live.json (404 there); it is also served on METRICS_ADDR beside /metrics.

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	livePath           = "/live.json"
	liveSlots          = 10 // seconds of event history
	liveIdle           = time.Minute
	liveClusterEvery   = 2 * time.Second
	liveClusterTimeout = time.Second
	liveFirstWait      = 300 * time.Millisecond
)

// liveState is one Server's sampler and cached cluster view.
type liveState struct {
	// nodes lists the node ids of the cluster from the presence heartbeats
	// (set by stores for the Redis adapters; nil with the memory adapter).
	nodes func(context.Context) ([]string, error)

	mu              sync.Mutex
	running         bool
	asked           time.Time // the last request
	in, out         [liveSlots]uint64
	head, n         int // next slot; slots filled
	prevIn, prevOut uint64
	at              time.Time
	conns           liveConns
	rooms           int

	cmu        sync.Mutex
	view       *liveCluster  // last known; nil before the first refresh
	refreshing chan struct{} // closed when the refresh in flight ends; nil when none
	refreshed  time.Time     // when the last refresh started
}

// liveJSON is the body of GET /live.json.
type liveJSON struct {
	Node        string      `json:"node"`    // NODE_ID
	Adapter     string      `json:"adapter"` // memory, redis or redis-streams
	At          time.Time   `json:"at"`      // when the counts were taken (at most 1 s ago)
	Connections liveConns   `json:"connections"`
	Rooms       int         `json:"rooms"`           // rooms with members on this node, namespace "/"
	Events      liveEvents  `json:"eventsPerSecond"` // the last 10 s, oldest first
	Cluster     liveCluster `json:"cluster"`
}

type liveConns struct {
	Polling   int `json:"polling"`
	WebSocket int `json:"websocket"`
	Total     int `json:"total"`
}

// liveEvents are the client events handled (in) and the events emitted (out,
// a broadcast counting once) in each second, every namespace together.
type liveEvents struct {
	In  []uint64 `json:"in"`
	Out []uint64 `json:"out"`
}

type liveCluster struct {
	Nodes   []string `json:"nodes"`   // node ids with a live heartbeat (this node alone with the memory adapter)
	Servers int      `json:"servers"` // the namespace's ServerCount (Node servers on the same Redis included)
	Stale   bool     `json:"stale"`   // the last refresh failed or is not done: the last known view
}

// liveHandler serves /live.json under the access rule above; onMetricsAddr
// for METRICS_ADDR's listener.
func (s *Server) liveHandler(onMetricsAddr bool) http.Handler {
	h := http.HandlerFunc(s.serveLive)
	switch {
	case s.devMode:
		return h
	case s.cfg.MetricsToken != "":
		return s.metricsAuth(h)
	case s.cfg.MetricsAddr != "" && !onMetricsAddr:
		return http.NotFoundHandler()
	}
	return h
}

func (s *Server) serveLive(w http.ResponseWriter, r *http.Request) {
	body := s.liveSample()
	body.Cluster = s.liveClusterView(r.Context())
	writeJSON(w, http.StatusOK, body)
}

// liveSample notes the request (starting the sampler if it is not running)
// and copies the last sample.
func (s *Server) liveSample() liveJSON {
	l := &s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = time.Now()
	if !l.running && !s.draining.Load() {
		l.running = true
		l.head, l.n = 0, 0
		l.prevIn, l.prevOut = s.metrics.liveIn.Load(), s.metrics.liveOut.Load()
		l.counts(s)
		go s.liveLoop()
	}
	adapter := s.cfg.Adapter
	if adapter == "" {
		adapter = "memory"
	}
	return liveJSON{Node: s.cfg.NodeID, Adapter: adapter, At: l.at, Connections: l.conns, Rooms: l.rooms, Events: l.events()}
}

// push records one second: the counters' totals now (l.mu held).
func (l *liveState) push(in, out uint64) {
	l.in[l.head], l.out[l.head] = in-l.prevIn, out-l.prevOut
	l.prevIn, l.prevOut = in, out
	l.head = (l.head + 1) % liveSlots
	l.n = min(l.n+1, liveSlots)
}

// events copies the ring, oldest second first (l.mu held).
func (l *liveState) events() liveEvents {
	ev := liveEvents{In: make([]uint64, 0, l.n), Out: make([]uint64, 0, l.n)}
	for i := range l.n {
		j := (l.head - l.n + i + liveSlots) % liveSlots
		ev.In = append(ev.In, l.in[j])
		ev.Out = append(ev.Out, l.out[j])
	}
	return ev
}

// liveLoop samples every second until nobody asked for a minute or the node
// drains.
func (s *Server) liveLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	l := &s.live
	for range t.C {
		l.mu.Lock()
		if s.draining.Load() || time.Since(l.asked) > liveIdle {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.push(s.metrics.liveIn.Load(), s.metrics.liveOut.Load())
		l.counts(s)
		l.mu.Unlock()
	}
}

// counts reads the levels (l.mu held).
func (l *liveState) counts(s *Server) {
	by := s.io.TransportCounts()
	l.conns = liveConns{Polling: by["polling"], WebSocket: by["websocket"]}
	for _, n := range by {
		l.conns.Total += n
	}
	l.rooms = s.io.Of("/").LocalRoomCount()
	l.at = time.Now().UTC()
}

// liveClusterView is the cluster's nodes: this node alone with the memory
// adapter; otherwise the last known view, refreshed in the background when
// it is older than 2 s.
func (s *Server) liveClusterView(ctx context.Context) liveCluster {
	l := &s.live
	self := liveCluster{Nodes: []string{s.cfg.NodeID}, Servers: 1}
	if l.nodes == nil {
		return self
	}
	l.cmu.Lock()
	if l.refreshing == nil && time.Since(l.refreshed) >= liveClusterEvery {
		l.refreshing, l.refreshed = make(chan struct{}), time.Now()
		go s.refreshLiveCluster(l.refreshing)
	}
	view, wait := l.view, l.refreshing
	l.cmu.Unlock()
	if view == nil && wait != nil { // nothing known yet: give the first refresh a moment
		t := time.NewTimer(liveFirstWait)
		select {
		case <-wait:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		l.cmu.Lock()
		view = l.view
		l.cmu.Unlock()
	}
	if view == nil {
		self.Stale = true
		return self
	}
	return *view
}

// refreshLiveCluster asks Redis for the nodes and the server count, then
// closes done.
func (s *Server) refreshLiveCluster(done chan struct{}) {
	l := &s.live
	ctx, cancel := context.WithTimeout(context.Background(), liveClusterTimeout)
	defer cancel()
	nodes, nerr := l.nodes(ctx)
	servers, serr := s.io.Of("/").ServerCount(ctx)

	l.cmu.Lock()
	defer l.cmu.Unlock()
	v := &liveCluster{Nodes: []string{s.cfg.NodeID}, Servers: 1}
	if l.view != nil {
		*v = *l.view
	}
	v.Stale = nerr != nil || serr != nil
	if nerr == nil {
		if !slices.Contains(nodes, s.cfg.NodeID) { // before this node's first heartbeat
			nodes = append(nodes, s.cfg.NodeID)
			slices.Sort(nodes)
		}
		v.Nodes = nodes
	}
	if serr == nil {
		v.Servers = servers
	}
	l.view, l.refreshing = v, nil
	close(done)
}
