//go:build !ownengine

package sio

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// Server owns the engine and the namespaces registered on it.
// Register namespaces, middleware and handlers before serving traffic.
type Server struct {
	io   *socket.Server
	http http.Handler
	opts Options
	log  zerolog.Logger
	obs  Observer

	mu   sync.Mutex
	nsps map[string]*Namespace

	connectMW    []ConnectFunc
	interceptors []Interceptor
	pending      sync.Map // *socket.Socket -> *pending, between middleware and connection
	closing      *closeWaits
	gates        sync.Map // engine.Socket -> *gate (see gate.go)
}

// NewServer builds the engine with opts. Namespace "/" always exists.
func NewServer(opts Options) *Server {
	opts.defaults()
	so := socket.DefaultServerOptions()
	so.SetPath(strings.TrimSuffix(opts.Path, "/"))
	so.SetServeClient(false)
	so.SetPingInterval(opts.PingInterval)
	so.SetPingTimeout(opts.PingTimeout)
	so.SetConnectTimeout(opts.ConnectTimeout)
	so.SetMaxHttpBufferSize(opts.MaxPayload)
	if opts.RecoveryWindow > 0 {
		csr := &socket.ConnectionStateRecovery{}
		csr.SetMaxDisconnectionDuration(opts.RecoveryWindow.Milliseconds())
		// Recovered sessions still present their token: auth and limits run again.
		csr.SetSkipMiddlewares(false)
		so.SetConnectionStateRecovery(csr)
	}
	if len(opts.CORSOrigins) > 0 {
		cors := &types.Cors{Origin: opts.CORSOrigins, Credentials: true}
		if len(opts.CORSOrigins) == 1 && opts.CORSOrigins[0] == "*" {
			// The engine reflects any origin with credentials for "*": never allow that.
			cors = &types.Cors{Origin: "*", Credentials: false}
		}
		so.SetCors(cors)
	}
	if opts.Cookie != nil {
		so.SetCookie(opts.Cookie)
	}
	closing := &closeWaits{}
	so.SetAdapter(&bridgeBuilder{cluster: opts.Cluster, recovery: opts.RecoveryWindow > 0,
		closing: closing, hookWait: opts.HandlerTimeout + time.Second})
	if allow := opts.AllowRequest; allow != nil {
		so.SetAllowRequest(func(ctx *types.HttpContext) error { return allow(ctx.Request()) })
	}
	s := &Server{
		io:      socket.NewServer(nil, so),
		opts:    opts,
		log:     opts.Logger,
		obs:     opts.Observer,
		nsps:    map[string]*Namespace{},
		closing: closing,
	}
	s.http = s.io.ServeHandler(nil)
	s.Of("/")
	return s
}

// Path is the URL path the Handler serves (with a trailing slash).
func (s *Server) Path() string { return s.opts.Path }

// Handler serves the Engine.IO endpoint; mount it at Path.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// serveHTTP closes a long-polling session whose pending poll the client
// aborted (its TCP connection dropped), as Node does. The engine notices
// only at the next ping timeout, so the client came back before its old
// session was closed and could not recover it.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sid := q.Get("sid")
	if r.Method != http.MethodGet || sid == "" || q.Get("transport") != "polling" {
		s.http.ServeHTTP(w, r)
		return
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-r.Context().Done():
			select {
			case <-done: // the poll completed normally
			default:
				// Not while upgrading: the client may drop its last poll then,
				// and the polling transport is being discarded anyway (Node too
				// ignores errors of a discarded transport).
				if c, ok := s.io.Engine().Clients().Load(sid); ok && !c.Upgrading() && !c.Upgraded() &&
					c.Transport() != nil && c.Transport().Name() == "polling" {
					c.Close(true)
				}
			}
		}
	}()
	s.http.ServeHTTP(w, r)
	close(done)
}

// Use adds a connect middleware run for every namespace, before the
// namespace's own ones, in the order added.
func (s *Server) Use(fn ConnectFunc) { s.connectMW = append(s.connectMW, fn) }

// Intercept adds an interceptor run before every event handler of every
// namespace (rate limiting, for one). Returning an error refuses the event.
func (s *Server) Intercept(fn Interceptor) { s.interceptors = append(s.interceptors, fn) }

// ClientsCount is the number of open Engine.IO connections on this node.
func (s *Server) ClientsCount() int { return int(s.io.Engine().ClientsCount()) }

// TransportCounts counts open connections by transport name.
func (s *Server) TransportCounts() map[string]int {
	out := map[string]int{}
	s.io.Engine().Clients().Range(func(_ string, c engine.Socket) bool {
		if t := c.Transport(); t != nil {
			out[t.Name()]++
		}
		return true
	})
	return out
}

// Drain closes every open connection, spread evenly over spread so that
// clients do not all reconnect at once. The transport is closed without a
// DISCONNECT packet: clients reconnect (elsewhere) and recover their session.
func (s *Server) Drain(ctx context.Context, spread time.Duration) error {
	var clients []engine.Socket
	s.io.Engine().Clients().Range(func(_ string, c engine.Socket) bool {
		clients = append(clients, c)
		return true
	})
	if len(clients) == 0 {
		return nil
	}
	step := spread / time.Duration(len(clients))
	for i, c := range clients {
		if c.ReadyState() != "open" {
			continue // gone already: no need to wait for it
		}
		if i > 0 && step > 0 {
			t := time.NewTimer(step)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		c.Close(false)
	}
	return nil
}

// Close disconnects everyone ("server shutting down") and stops the engine.
func (s *Server) Close() {
	done := make(chan struct{})
	s.io.Close(func(error) { close(done) })
	<-done
}

var errNamespaceName = errors.New("sio: namespace name must start with /")

// Of returns the namespace called name, creating it on first use. Clients
// may only connect to namespaces created here; others get "Invalid namespace".
func (s *Server) Of(name string) *Namespace {
	if !strings.HasPrefix(name, "/") {
		panic(errNamespaceName)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nsps[name]; ok {
		return n
	}
	n := newNamespace(s, name)
	s.nsps[name] = n
	return n
}
