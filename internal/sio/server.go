package sio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/engine/eio"
	"github.com/switchboard/switchboard/internal/engine/eioparser"
)

// Server owns the engine and the namespaces registered on it.
// Register namespaces, middleware and handlers before serving traffic.
type Server struct {
	eng  *eio.Server
	opts Options
	log  zerolog.Logger
	obs  Observer

	// mu guards the namespace index only: it is never held while a namespace
	// attaches to the cluster (a SUBSCRIBE, up to its own timeout), so that
	// a slow Redis delays only the namespace being created (see Of).
	mu       sync.RWMutex
	nsps     map[string]*Namespace
	creating map[string]chan struct{} // namespaces attaching now: closed once registered (or failed)
	dynamic  []dynamicNamespaces      // OfMatch
	dynReady map[string]chan struct{} // namespaces created by OfMatch: closed once set up
	closed   bool                     // Close ran: a namespace attached after it is detached at once

	workers *workerPool // runs the clients' task queues (per Server: Close ends its idle workers)

	connectMW    []ConnectFunc
	interceptors []Interceptor

	pending atomic.Int64 // sessions that have joined no namespace yet

	inst atomic.Pointer[Instrument] // SetInstrument
}

// NewServer builds the engine with opts. Namespace "/" always exists.
func NewServer(opts Options) *Server {
	opts.defaults()
	s := &Server{
		opts: opts, log: opts.Logger, obs: opts.Observer,
		nsps: map[string]*Namespace{}, creating: map[string]chan struct{}{}, dynReady: map[string]chan struct{}{}, workers: newWorkerPool(),
	}
	cors := opts.CORSOrigins
	allow := opts.AllowRequest
	s.eng = eio.NewServer(eio.Options{
		PingInterval: opts.PingInterval,
		PingTimeout:  opts.PingTimeout,
		MaxPayload:   opts.MaxPayload,
		MaxBuffered:  opts.MaxBuffered,
		WriteTimeout: opts.WriteTimeout,
		CORSOrigins:  cors,
		Cookie:       opts.Cookie,
		AllowRequest: func(r *http.Request) error {
			if max := opts.MaxPending; max > 0 && s.pending.Load() >= int64(max) {
				return &eio.Refusal{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
					Limit: LimitPending, Message: "Too many pending sessions"}
			}
			if allow != nil {
				return allow(r)
			}
			return nil
		},
		Admit:         opts.Admit,
		ClientIP:      opts.ClientIP,
		BindSessionIP: opts.BindSessionIP,
		AnyOrigin:     opts.AnyOrigin,
		OnLimit:       s.obs.Limit,
		OnConnection:  s.onConnection,
		Logger:        opts.Logger,
		AllowEIO3:     opts.AllowEIO3,
		CountTraffic:  opts.CountTraffic,
		Compression:   opts.Compression,
	})
	s.Of("/")
	return s
}

// Path is the URL path the Handler serves (with a trailing slash).
func (s *Server) Path() string { return s.opts.Path }

// Handler serves the Engine.IO endpoint; mount it at Path.
func (s *Server) Handler() http.Handler { return s.eng }

// Use adds a connect middleware run for every namespace, before the
// namespace's own ones, in the order added.
func (s *Server) Use(fn ConnectFunc) { s.connectMW = append(s.connectMW, fn) }

// Intercept adds an interceptor run before every event handler of every
// namespace (rate limiting, for one). Returning an error refuses the event.
func (s *Server) Intercept(fn Interceptor) { s.interceptors = append(s.interceptors, fn) }

// PendingCount is the number of sessions that have joined no namespace yet.
func (s *Server) PendingCount() int { return int(s.pending.Load()) }

// AuthenticatedCount is the number of sessions that have joined a namespace
// (passed its middleware): what MAX_CONNECTIONS counts.
func (s *Server) AuthenticatedCount() int { return max(s.eng.Count()-s.PendingCount(), 0) }

// ClientsCount is the number of open Engine.IO connections on this node.
func (s *Server) ClientsCount() int { return s.eng.Count() }

// TransportCounts counts open connections by transport name.
func (s *Server) TransportCounts() map[string]int {
	out := map[string]int{}
	s.eng.Range(func(c *eio.Socket) bool {
		out[c.Transport()]++
		return true
	})
	return out
}

// RecoveryLogBytes is the encoded size of the broadcasts every namespace
// keeps for connection state recovery on this node.
func (s *Server) RecoveryLogBytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var total int64
	for _, n := range s.nsps {
		if n.store != nil {
			total += n.store.size()
		}
	}
	return total
}

// Drain closes every open connection, spread evenly over spread so that
// clients do not all reconnect at once. The transport is closed without a
// DISCONNECT packet: clients reconnect (elsewhere) and recover their session.
func (s *Server) Drain(ctx context.Context, spread time.Duration) error {
	var clients []*eio.Socket
	s.eng.Range(func(c *eio.Socket) bool {
		clients = append(clients, c)
		return true
	})
	if len(clients) == 0 {
		return nil
	}
	step := spread / time.Duration(len(clients))
	for i, c := range clients {
		if i > 0 && step > 0 {
			t := time.NewTimer(step)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		c.Close()
	}
	return nil
}

// Close disconnects everyone ("server shutting down") and stops the engine.
// Its handler workers exit once the work left (the disconnect hooks) is done.
func (s *Server) Close() {
	s.eng.Close()
	s.mu.Lock()
	s.closed = true // a namespace still attaching detaches itself (see create)
	nsps := make([]*Namespace, 0, len(s.nsps))
	for _, n := range s.nsps {
		nsps = append(nsps, n)
	}
	s.mu.Unlock()
	for _, n := range nsps {
		if n.link != nil {
			n.link.Close()
		}
	}
	s.workers.stop()
}

// HandlerWorkers is the number of goroutines of this Server's handler worker
// pool (running a client's queue, or idle for at most workerIdle).
func (s *Server) HandlerWorkers() int { return s.workers.count() }

var errNamespaceName = errors.New("sio: namespace name must start with /")

// Of returns the namespace called name, creating it on first use. Clients
// may only connect to namespaces created here; others get "Invalid namespace".
//
// Creating a namespace attaches it to the cluster (a SUBSCRIBE, bounded by
// the adapter's timeout) without the server lock held: meanwhile, lookups of
// the other namespaces and the creation of others go on; only the callers
// that want this very namespace (Of, a client connecting to it) wait for it.
func (s *Server) Of(name string) *Namespace {
	if !strings.HasPrefix(name, "/") {
		panic(errNamespaceName)
	}
	// A turn returns, or waits for another caller's creation to end: another
	// turn follows only if that creation panicked (then this caller tries).
	for {
		s.mu.Lock()
		if n, ok := s.nsps[name]; ok {
			s.mu.Unlock()
			return n
		}
		wait, busy := s.creating[name]
		if !busy {
			done := make(chan struct{})
			s.creating[name] = done
			s.mu.Unlock()
			return s.create(name, done)
		}
		s.mu.Unlock()
		<-wait
	}
}

// create builds namespace name, attached to the cluster, and registers it;
// done was put in s.creating for it and is closed once it is registered (or
// its creation panicked: the panic goes on to the caller of Of).
func (s *Server) create(name string, done chan struct{}) (n *Namespace) {
	defer func() {
		s.mu.Lock()
		if n != nil {
			s.nsps[name] = n
		}
		delete(s.creating, name)
		detach := n != nil && s.closed && n.link != nil // Close did not see it
		s.mu.Unlock()
		close(done)
		if detach {
			n.link.Close()
		}
	}()
	return newNamespace(s, name) // the SUBSCRIBE: no lock held
}

// lookup returns namespace name, nil if none was created; a namespace being
// created is waited for.
func (s *Server) lookup(name string) *Namespace {
	s.mu.RLock()
	n, wait, ready := s.nsps[name], s.creating[name], s.dynReady[name]
	s.mu.RUnlock()
	if n == nil && wait != nil {
		<-wait
		s.mu.RLock()
		n = s.nsps[name]
		s.mu.RUnlock()
	}
	if ready != nil {
		<-ready // a dynamic namespace is set up before anyone connects
	}
	return n
}

func (s *Server) onConnection(es *eio.Socket) {
	c := &client{srv: s, eng: es, v3: es.Protocol() == eioparser.Protocol3}
	s.pending.Add(1)
	es.SetHandler(c)
	if c.v3 { // protocol 4: connected to "/" without asking, as Node does
		c.push(func() { c.connect("/", nil) })
	}
	// A client that joins no namespace in time is closed (as Node does).
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connectTimer = time.AfterFunc(s.opts.ConnectTimeout, func() {
		c.mu.Lock()
		idle := len(c.conns) == 0 && !c.everConnected
		c.mu.Unlock()
		if idle {
			s.obs.Limit(LimitHandshakeTime)
			es.CloseNow()
		}
	})
}

// newID returns a 20-character random id, like Node's base64id.
func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
