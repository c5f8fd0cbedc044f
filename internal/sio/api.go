// Package sio is Switchboard's Socket.IO v5 server, on its own Engine.IO
// engine (internal/engine/eio).
//
// It is the only package that imports the engine. Everything above it
// (namespaces, middleware, server) sees the types declared here: Node's
// event model (Namespace.On with every argument and an Ack of any
// arguments, Conn.Emit, EmitWithAck, OnAny; events.go), the typed helper
// on top of it (Handle, with {ok, ...} acks), connections (Conn),
// broadcasts and connect middleware, and the Local/Link seam cluster
// adapters use. It owns the
// Socket.IO protocol (namespaces, CONNECT/CONNECT_ERROR, events, acks,
// binary attachments, rooms, connection state recovery) and the
// guarantees handlers rely on: panic recovery per handler, per-connection
// ordered processing, payload decoding with bad_request, per-event metrics
// and logs.
package sio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/engine/eio"
)

// Compression is the engine's: polling responses (HTTP) and
// permessage-deflate; its zero value compresses nothing.
type Compression = eio.Compression

// Options configures the engine. The zero value of each field means its default.
type Options struct {
	Path           string        // URL path of the endpoint; default "/socket.io/"
	PingInterval   time.Duration // default 25s
	PingTimeout    time.Duration // default 20s
	ConnectTimeout time.Duration // time a new session has to join a namespace; default 10s
	// MaxPending bounds sessions that have joined no namespace yet: further
	// handshakes get 503 with Retry-After. Zero or negative: no limit.
	MaxPending int
	MaxPayload int64 // bytes per message (and per polling body); default 1e6
	// MaxBuffered bounds the outbound bytes queued per connection; beyond, the
	// client is cut off as a slow consumer. Default 1 MiB (eio.Options).
	MaxBuffered int
	// WriteTimeout bounds every write to a client; a longer one cuts it off as
	// a slow consumer. Default 10s (eio.Options).
	WriteTimeout time.Duration
	// MaxInbound bounds the bytes of a connection's input held for its
	// handlers (queued packets, their attachments, a binary packet being
	// assembled, plus a small overhead per message); at the budget its reader
	// pauses until the handlers catch up. Default 2_000_000; raised to
	// MaxPayload (plus that overhead) when lower.
	MaxInbound     int
	RecoveryWindow time.Duration // connection state recovery; default 2m, negative disables
	// RecoveryMaxBytes caps the encoded broadcasts each namespace keeps for
	// recovery on this node; the oldest are evicted first (their sessions
	// get a fresh one). Default 64 MiB; negative: no cap.
	RecoveryMaxBytes int64
	// AckTimeout is how long an ack the server asked a client for is waited
	// for; then it is forgotten (LimitAckExpired). Default 30s.
	AckTimeout     time.Duration
	HandlerTimeout time.Duration // deadline of the ctx given to handlers; default 10s
	CORSOrigins    []string      // allowed browser origins; empty sends no CORS headers
	Cookie         *http.Cookie  // sent on the handshake, for sticky load balancers; nil sends none
	// AllowRequest may refuse a new Engine.IO session (for example while draining).
	AllowRequest func(*http.Request) error
	// Engine-level guards, passed to the engine as they are (see eio.Options).
	Admit         func(ip string) (release func(), err error)
	ClientIP      func(*http.Request) string
	BindSessionIP bool
	AnyOrigin     bool
	Logger        zerolog.Logger
	Observer      Observer // metrics hook; nil observes nothing
	// MaxDynamicNamespaces caps the namespaces clients create through
	// OfMatch/OfPattern (each one lives on, attached to the cluster).
	// Default 1000; negative: no cap.
	MaxDynamicNamespaces int
	// Cluster shares broadcasts with other nodes; nil serves one node.
	Cluster Cluster
	// Parser is the packet encoding every client of this server speaks
	// (Node's parser option); default socket.io-parser's.
	Parser Parser
	// CountTraffic makes the engine count messages and bytes each way
	// (Server.Traffic, for an Instrument); off, nothing is counted.
	CountTraffic bool
	// AllowEIO3 accepts socket.io-client 2.x (Engine.IO 3, Socket.IO
	// protocol 4), as Node's allowEIO3 (see eio3.go).
	AllowEIO3 bool
	// Compression of polling responses and permessage-deflate, passed to
	// the engine as it is; none by default.
	Compression Compression
}

func (o *Options) defaults() {
	if o.Path == "" {
		o.Path = "/socket.io/"
	}
	if !strings.HasSuffix(o.Path, "/") {
		o.Path += "/"
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 20 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1_000_000
	}
	if o.MaxInbound <= 0 {
		o.MaxInbound = 2_000_000
	}
	if minIn := int(o.MaxPayload) + inboundOverhead; o.MaxInbound < minIn {
		o.MaxInbound = minIn // one message of MaxPayload always fits
	}
	if o.RecoveryWindow == 0 {
		o.RecoveryWindow = 2 * time.Minute
	}
	if o.HandlerTimeout <= 0 {
		o.HandlerTimeout = 10 * time.Second
	}
	if o.RecoveryMaxBytes == 0 {
		o.RecoveryMaxBytes = 64 << 20
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 30 * time.Second
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.MaxDynamicNamespaces == 0 {
		o.MaxDynamicNamespaces = 1000
	}
}

// Observer receives what the seam measures. Implementations must be cheap
// and safe for concurrent use: they run on the hot path.
type Observer interface {
	// Handshake reports a namespace connection attempt: code is "ok" or the refusal code.
	Handshake(nsp, code string)
	// Event reports a handled client event: code is "ok" or the error code sent back.
	Event(nsp, event string, took time.Duration, code string)
	// Emitted reports an event sent by the server (a broadcast counts once).
	Emitted(nsp, event string)
	// Panic reports a recovered handler panic.
	Panic(nsp, event string)
	// Limit reports a client hitting a named limit (see LimitNames).
	Limit(name string)
}

type nopObserver struct{}

func (nopObserver) Handshake(string, string)                    {}
func (nopObserver) Event(string, string, time.Duration, string) {}
func (nopObserver) Emitted(string, string)                      {}
func (nopObserver) Panic(string, string)                        {}
func (nopObserver) Limit(string)                                {}

// User is the identity a connect middleware attaches to a connection.
type User struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Rooms []string `json:"rooms,omitempty"` // room patterns the user may join; nil = any
}

// Handshake is what a connect middleware sees of a namespace connection attempt.
type Handshake struct {
	Namespace  string
	Auth       map[string]any // the client's auth payload (may be nil)
	Header     http.Header    // headers of the request that opened the connection
	Query      url.Values
	RemoteAddr string
	Pending    bool  // the session has joined no namespace yet (its first connect)
	Recovered  bool  // the client resumed a session within the recovery window
	Previous   *User // the user of the resumed session, when Recovered
	User       *User // set by the auth middleware: the connection's identity

	release *releaser
}

// OnClose registers fn to run exactly once when this connection attempt ends:
// refused, abandoned before completing, or disconnected after completing.
// Use it to release what a middleware reserved (a connection slot, say).
func (h *Handshake) OnClose(fn func()) { h.release.add(fn) }

// ConnectFunc is a connect middleware. Returning an *Error refuses the
// connection with connect_error {message, data:{code}}; any other error
// refuses it as internal.
type ConnectFunc func(ctx context.Context, h *Handshake) error

// Interceptor runs before an event handler; a non-nil error is sent back as
// the event's ack and the handler is skipped.
type Interceptor func(ctx context.Context, c *Conn, event string) error

// eventArgs are an event's arguments as received: each argument's JSON as
// the client sent it (text packets), or plain values with []byte
// attachments (binary packets).
type eventArgs struct {
	raw  []json.RawMessage
	vals []any
}

type eventHandler func(ctx context.Context, c *Conn, args eventArgs) (any, error)

var reservedEvents = map[string]bool{
	"connect": true, "connect_error": true, "disconnect": true, "disconnecting": true,
	"newListener": true, "removeListener": true, "error": true,
}

// Handle registers the handler of a client event. The first argument the
// client sends is decoded into T (bad_request when it does not fit); the
// handler's result is acknowledged as {ok:true, ...R} and its error as
// {ok:false, error:{code,message}}. Handlers of one connection run one at a
// time, in the order the client sent the events; a panic is recovered,
// logged and answered with internal.
func Handle[T, R any](n *Namespace, event string, h func(ctx context.Context, c *Conn, msg T) (R, error)) {
	if reservedEvents[event] {
		panic(fmt.Sprintf("sio: %q is a reserved event name", event))
	}
	delete(n.raw, event)
	n.handlers[event] = func(ctx context.Context, c *Conn, args eventArgs) (any, error) {
		msg, err := decodeEventArg[T](args)
		if err != nil {
			return nil, err
		}
		return h(ctx, c, msg)
	}
}

// releaser runs registered functions once.
type releaser struct {
	mu   sync.Mutex
	fns  []func()
	done bool
}

func (r *releaser) add(fn func()) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		fn()
		return
	}
	r.fns = append(r.fns, fn)
	r.mu.Unlock()
}

func (r *releaser) run() {
	r.mu.Lock()
	fns := r.fns
	r.fns, r.done = nil, true
	r.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

func firstString(args []any) (string, bool) {
	if len(args) == 0 {
		return "", false
	}
	s, ok := args[0].(string)
	return s, ok
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
