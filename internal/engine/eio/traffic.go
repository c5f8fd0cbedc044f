package eio

import (
	"sync"
	"sync/atomic"
)

// Traffic counts what a server exchanged, for an admin view (Options.CountTraffic). Messages are
// Engine.IO message packets (what carries Socket.IO packets), not heartbeats.
type Traffic struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut atomic.Int64
	Opened                                   atomic.Int64 // sessions

	mu     sync.Mutex
	closed map[string]int64 // sessions closed, by reason (a handful of reasons)
}

// Closed returns the sessions closed so far by reason.
func (t *Traffic) Closed() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.closed))
	for k, v := range t.closed {
		out[k] = v
	}
	return out
}

func (t *Traffic) close(reason string) {
	t.mu.Lock()
	if t.closed == nil {
		t.closed = map[string]int64{}
	}
	t.closed[reason]++
	t.mu.Unlock()
}

// Traffic returns the running counts; nil unless Options.CountTraffic.
func (srv *Server) Traffic() *Traffic { return srv.traffic }

// upgradeHandler is a Handler told when its session has moved to WebSocket.
type upgradeHandler interface{ OnUpgrade() }
