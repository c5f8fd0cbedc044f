//go:build !ownengine

package sio

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/zishang520/socket.io/servers/engine/v3"
)

// gate works around a race in the engine (servers/socket v3.0.6,
// namespace.go _doConnect): the CONNECT packet is written to the client
// before the client's namespace table is updated (client.go doConnect), so
// an event the client sends right after connecting can be decoded first and
// is treated as "invalid state": the whole connection is closed. The gate
// holds a connection's incoming packets (the engine's "packet" event fires
// synchronously before decoding) while one of its namespace connects is
// between middleware and completion.
type gate struct {
	pending atomic.Int32
	mu      sync.Mutex
	open    chan struct{} // closed when pending drops to zero
}

// maxGateWait bounds the hold: a connect that neither completes nor closes
// must not stall the connection forever.
const maxGateWait = 2 * time.Second

func (g *gate) add() {
	g.mu.Lock()
	if g.pending.Add(1) == 1 {
		g.open = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gate) done() {
	g.mu.Lock()
	if g.pending.Load() > 0 && g.pending.Add(-1) == 0 {
		close(g.open)
	}
	g.mu.Unlock()
}

func (g *gate) releaseAll() {
	g.mu.Lock()
	if g.pending.Swap(0) > 0 {
		close(g.open)
	}
	g.mu.Unlock()
}

func (g *gate) wait(...any) {
	if g.pending.Load() == 0 {
		return
	}
	g.mu.Lock()
	ch := g.open
	pending := g.pending.Load()
	g.mu.Unlock()
	if pending == 0 {
		return
	}
	t := time.NewTimer(maxGateWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// gateFor returns the gate of an engine connection, installing it once.
func (s *Server) gateFor(conn engine.Socket) *gate {
	if g, ok := s.gates.Load(conn); ok {
		return g.(*gate)
	}
	g := &gate{}
	if actual, loaded := s.gates.LoadOrStore(conn, g); loaded {
		return actual.(*gate)
	}
	_ = conn.On("packet", g.wait)
	_ = conn.Once("close", func(...any) {
		s.gates.Delete(conn)
		g.releaseAll()
	})
	return g
}
