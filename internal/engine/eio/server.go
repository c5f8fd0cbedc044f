// Package eio is an Engine.IO protocol v4 server (long-polling and WebSocket, with the upgrade from
// one to the other), compatible with the official engine.io-client and socket.io-client.
//
// It follows Node's engine.io 6.x: same handshake, error codes and messages, heartbeat, upgrade flow
// and close reasons. Outbound messages are pre-encoded, shareable [Message] values written with
// vectored writes; an idle WebSocket connection costs one reader goroutine and a small buffer.
//
// A long poll waits up to PingInterval for data (a ping at the latest), so an http.Server serving
// it must not have a WriteTimeout shorter than that.
package eio

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/engine/eioparser"
)

// Options configures a Server. The zero value of a field means its default.
type Options struct {
	PingInterval   time.Duration // default 25s
	PingTimeout    time.Duration // default 20s
	UpgradeTimeout time.Duration // default 10s
	// MaxPayload bounds one WebSocket message and one polling POST body (413 when over); it is
	// announced as maxPayload in the handshake. Default 1_000_000.
	MaxPayload int64
	// MaxBuffered is the number of outbound bytes a connection may have queued before it is closed
	// as too slow ("transport error", reported as LimitSlowConsumer). Default 1 MiB.
	MaxBuffered int
	// WriteTimeout bounds every write to a client (a WebSocket write, a polling response): one
	// that takes longer closes the session as too slow ("transport error", reported as
	// LimitSlowConsumer). Default 10s.
	WriteTimeout time.Duration
	// CORSOrigins: empty sends no CORS headers; ["*"] allows any origin without credentials; a list
	// reflects an allowed request Origin, with credentials.
	CORSOrigins []string
	// Cookie, when set, is sent as given on the handshake response (sticky load balancing). Path
	// defaults to "/", HttpOnly is set and SameSite defaults to Lax.
	Cookie *http.Cookie
	// AllowRequest may refuse a new session: 403 {"code":4,"message":"Forbidden"}, or what a
	// *Refusal says.
	AllowRequest func(*http.Request) error
	// Admit, when set, is asked for every new session with its client IP once the request is
	// valid; a nil error admits it and release (may be nil) is called when the session ends. A
	// *Refusal chooses the answer (429 with Retry-After for a per-IP limit, say).
	Admit func(ip string) (release func(), err error)
	// ClientIP returns the client's IP for a request (behind trusted proxies, from
	// X-Forwarded-For); default: the peer's IP.
	ClientIP func(*http.Request) string
	// BindSessionIP refuses a request for an existing session from another client IP than the
	// handshake's, as an unknown session ("Session ID unknown"), and reports LimitSessionIP.
	BindSessionIP bool
	// AnyOrigin accepts handshakes and upgrades from any Origin (development). Otherwise an Origin
	// not in CORSOrigins (or, with none listed, not the request's host) is refused with 403.
	AnyOrigin bool
	// OnLimit, when set, is told each time a client hits a named limit.
	OnLimit func(name string)
	// Compression: polling responses and permessage-deflate; none by default (see Compression).
	Compression Compression
	// CountTraffic counts messages, bytes and sessions (Server.Traffic): a few atomic adds per
	// message, for an admin view.
	CountTraffic bool
	// AllowEIO3 accepts Engine.IO protocol 3 clients (socket.io-client 2.x), as Node's allowEIO3.
	AllowEIO3 bool
	// OnConnection is called once per new session, before any message is delivered. Required.
	OnConnection func(s *Socket)
	Logger       zerolog.Logger
}

func (o *Options) defaults() {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 20 * time.Second
	}
	if o.UpgradeTimeout <= 0 {
		o.UpgradeTimeout = 10 * time.Second
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1_000_000
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 1 << 20
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.OnConnection == nil {
		panic("eio: Options.OnConnection is required")
	}
	o.Compression.defaults()
}

// Server is an Engine.IO server. Mount it (ServeHTTP) at the endpoint's path.
type Server struct {
	o       Options
	log     zerolog.Logger
	cookie  string // Set-Cookie value of the handshake, "" for none
	corsAny bool

	// closeTimeout bounds a graceful Close waiting for a poll (or a stuck write).
	closeTimeout time.Duration
	// openTail is the end of the open packet after the sid, per transport.
	openTailPolling, openTailWS string

	mu          sync.RWMutex
	sessions    map[string]*Socket
	closedPolls closedPolls // sessions their polling clients closed a moment ago
	closed      bool

	flusher flusher
	traffic *Traffic // nil unless Options.CountTraffic
}

// flusher writes the WebSockets that have something queued, one after the
// other, on one goroutine that exits when none is left. Compared with a
// writer goroutine per connection it lets frames queued for a connection
// while the others are written leave together, and it never buries the
// goroutines that read input (and send acks) under thousands of writers.
type flusher struct {
	mu         sync.Mutex
	ready      []*wsConn
	spare      []*wsConn
	running    bool
	batchStart time.Time     // when the batch being written was taken
	batchDone  chan struct{} // closed when it is written
}

// flushBehind is how long a batch of writes may take before input waits for
// it: clients' messages (and the broadcasts they cause) then queue up behind
// what is already being written instead of growing the backlog without
// bound, and what they add goes out coalesced with the next batch.
const flushBehind = 10 * time.Millisecond

// maxThrottle bounds one wait of an input for the flusher.
const maxThrottle = 100 * time.Millisecond

// throttle makes a client message wait while the flusher is behind.
func (f *flusher) throttle() {
	f.mu.Lock()
	if !f.running || f.batchDone == nil || time.Since(f.batchStart) < flushBehind {
		f.mu.Unlock()
		return
	}
	ch := f.batchDone
	f.mu.Unlock()
	t := time.NewTimer(maxThrottle)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

func (f *flusher) add(c *wsConn) {
	f.mu.Lock()
	f.ready = append(f.ready, c)
	if !f.running {
		f.running = true
		go f.run()
	}
	f.mu.Unlock()
}

func (f *flusher) run() {
	for {
		f.mu.Lock()
		batch := f.ready
		if len(batch) == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.ready = f.spare[:0]
		f.spare = nil
		f.batchStart = time.Now()
		done := make(chan struct{})
		f.batchDone = done
		f.mu.Unlock()
		for _, c := range batch {
			c.flushLoop(true)
		}
		clear(batch)
		close(done)
		f.mu.Lock()
		f.batchDone = nil
		if cap(batch) <= 1<<16 {
			f.spare = batch[:0]
		}
		f.mu.Unlock()
	}
}

// NewServer returns a server with o (defaults applied). o.OnConnection must be set.
func NewServer(o Options) *Server {
	o.defaults()
	srv := &Server{
		o:            o,
		log:          o.Logger,
		sessions:     make(map[string]*Socket),
		closeTimeout: o.PingInterval + o.PingTimeout,
		corsAny:      len(o.CORSOrigins) == 1 && o.CORSOrigins[0] == "*",
	}
	if o.CountTraffic {
		srv.traffic = &Traffic{}
	}
	if c := o.Cookie; c != nil {
		cc := *c
		if cc.Path == "" {
			cc.Path = "/"
		}
		cc.HttpOnly = true
		if cc.SameSite == 0 || cc.SameSite == http.SameSiteDefaultMode {
			cc.SameSite = http.SameSiteLaxMode
		}
		srv.cookie = cc.String()
	}
	tail := `,"pingInterval":` + strconv.FormatInt(o.PingInterval.Milliseconds(), 10) +
		`,"pingTimeout":` + strconv.FormatInt(o.PingTimeout.Milliseconds(), 10) +
		`,"maxPayload":` + strconv.FormatInt(o.MaxPayload, 10) + `}`
	srv.openTailPolling = `","upgrades":["websocket"]` + tail
	srv.openTailWS = `","upgrades":[]` + tail
	return srv
}

// Engine.IO error codes (Node's Server.errors).
const (
	errUnknownTransport = iota
	errUnknownSID
	errBadHandshakeMethod
	errBadRequest
	errForbidden
	errUnsupportedProtocol
)

var errorMessages = [...]string{
	"Transport unknown",
	"Session ID unknown",
	"Bad handshake method",
	"Bad request",
	"Forbidden",
	"Unsupported protocol version",
}

// writeError answers a refused HTTP request as Node's abortRequest does.
func writeError(w http.ResponseWriter, code int) {
	status := http.StatusBadRequest
	if code == errForbidden {
		status = http.StatusForbidden
	}
	body := `{"code":` + strconv.Itoa(code) + `,"message":"` + errorMessages[code] + `"}`
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// writeUpgradeError refuses a WebSocket upgrade as Node's abortUpgrade does: always 400, the
// message as the body, and the connection closed.
func writeUpgradeError(w http.ResponseWriter, code int) {
	msg := errorMessages[code]
	h := w.Header()
	h.Set("Connection", "close")
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(msg))
}

// ServeHTTP handles every Engine.IO request: handshakes, polls, POSTs and WebSocket upgrades. It
// does not check the path.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	upgrade := isWebSocketUpgrade(r)
	if !upgrade && srv.handleCORS(w, r) {
		return
	}
	write := writeError
	if upgrade {
		write = writeUpgradeError
	}
	fail := func(w http.ResponseWriter, code int) {
		if l := srv.log.Debug(); l.Enabled() {
			l.Str("error", errorMessages[code]).Str("method", r.Method).Str("query", redactedQuery(q)).
				Str("remote", r.RemoteAddr).Msg("eio: request refused")
		}
		write(w, code)
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		fail(w, errUnknownTransport)
		return
	}
	if q.Has("j") { // JSONP polling is not supported
		fail(w, errBadRequest)
		return
	}

	if sid := q.Get("sid"); sid != "" {
		s := srv.lookup(sid)
		if s != nil && srv.o.BindSessionIP && srv.clientIP(r) != s.hs.ClientIP {
			// A sid is a bearer capability: from another client it is as good as unknown.
			if srv.o.OnLimit != nil {
				srv.o.OnLimit(LimitSessionIP)
			}
			s = nil
		}
		switch {
		case s == nil && transport == "polling" && !upgrade && srv.answerClosedPoll(w, r, sid):
		case s == nil:
			fail(w, errUnknownSID)
		case upgrade && !srv.originAllowed(r):
			srv.refuseOrigin(w, r)
		case q.Get("EIO") != s.eioParam():
			fail(w, errBadRequest) // protocol mismatch
		case upgrade && transport == "websocket":
			srv.upgrade(s, w, r)
		case upgrade || transport != "polling" || s.Transport() != "polling":
			fail(w, errBadRequest) // transport mismatch
		case r.Method == http.MethodGet:
			s.serveGet(w, r)
		case r.Method == http.MethodPost:
			s.servePost(w, r)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
		return
	}

	switch {
	case r.Method != http.MethodGet:
		fail(w, errBadHandshakeMethod)
		return
	case (transport == "websocket") != upgrade:
		fail(w, errBadRequest)
		return
	}
	if !srv.originAllowed(r) {
		srv.refuseOrigin(w, r)
		return
	}
	if allow := srv.o.AllowRequest; allow != nil {
		if err := allow(r); err != nil {
			srv.refuse(w, r, err, upgrade)
			return
		}
	}
	v3 := srv.o.AllowEIO3 && q.Get("EIO") == "3"
	if q.Get("EIO") != "4" && !v3 {
		fail(w, errUnsupportedProtocol)
		return
	}
	if srv.isClosed() {
		fail(w, errBadRequest)
		return
	}
	ip := srv.clientIP(r)
	var release func()
	if admit := srv.o.Admit; admit != nil {
		rel, err := admit(ip)
		if err != nil {
			srv.refuse(w, r, err, upgrade)
			return
		}
		release = rel
	}
	s := newSocket(srv, newID(), &Handshake{
		Header:     r.Header.Clone(),
		RemoteAddr: r.RemoteAddr,
		ClientIP:   ip,
		Time:       time.Now(),
		Secure:     r.TLS != nil,
		URL:        r.URL.RequestURI(),
		Host:       r.Host,
	})
	s.admitted = release
	s.b64 = q.Get("b64") != ""
	s.v3 = v3
	if upgrade {
		srv.handshakeWebSocket(s, w, r)
		return
	}
	srv.handshakePolling(s, w, r)
}

// handshakePolling opens a long-polling session: the response is the open packet alone (messages
// sent from OnConnection wait for the next poll, as in Node).
func (srv *Server) handshakePolling(s *Socket, w http.ResponseWriter, r *http.Request) {
	s.poll = &polling{}
	if !srv.register(s) {
		writeError(w, errBadRequest)
		return
	}
	s.start()
	open := s.openPacket(srv.openTailPolling)
	h := w.Header()
	if srv.cookie != "" {
		h.Add("Set-Cookie", srv.cookie)
	}
	_ = s.writePayload(w, r, []*Message{open})
}

func (s *Socket) openPacket(tail string) *Message {
	return newPacket(eioparser.Open, []byte(`{"sid":"`+s.id+tail))
}

// start arms the heartbeat and tells the application about the new session.
func (s *Socket) start() {
	s.mu.Lock()
	switch {
	case s.state != stateOpen: // Server.Close may have come first
	case s.v3: // the client pings
		s.armLocked(timerPong, s.srv.o.PingInterval+s.srv.o.PingTimeout)
	default:
		s.armLocked(timerPing, s.srv.o.PingInterval)
	}
	s.mu.Unlock()
	if t := s.srv.traffic; t != nil {
		t.Opened.Add(1)
	}
	s.srv.o.OnConnection(s)
}

func isWebSocketUpgrade(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, v := range r.Header.Values("Upgrade") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "websocket") {
				return true
			}
		}
	}
	return false
}

// newID returns a session id like Node's base64id: 15 random bytes, base64url (20 characters).
func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.URLEncoding.EncodeToString(b[:])
}

func (srv *Server) lookup(sid string) *Socket {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	return srv.sessions[sid]
}

func (srv *Server) isClosed() bool {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	return srv.closed
}

// register adds s to the open sessions; false once the server is closed.
func (srv *Server) register(s *Socket) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		s.releaseAdmission()
		return false
	}
	for srv.sessions[s.id] != nil { // 120 random bits: never in practice
		s.id = newID()
	}
	srv.sessions[s.id] = s
	return true
}

func (srv *Server) remove(s *Socket, clientClosedPoll bool) {
	srv.mu.Lock()
	if srv.sessions[s.id] == s {
		delete(srv.sessions, s.id)
		if clientClosedPoll {
			srv.closedPolls.add(s.id, time.Now())
		}
	}
	srv.mu.Unlock()
	s.releaseAdmission()
}

// refuseOrigin answers 403 to a browser page of an origin that may not connect.
func (srv *Server) refuseOrigin(w http.ResponseWriter, r *http.Request) {
	srv.refuse(w, r, &Refusal{Status: http.StatusForbidden, Limit: LimitOrigin, Message: "Origin not allowed"}, isWebSocketUpgrade(r))
}

// Count returns the number of open sessions.
func (srv *Server) Count() int {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	return len(srv.sessions)
}

// Range calls fn for each open session until fn returns false. fn runs without any server lock
// held, so it may close sockets.
func (srv *Server) Range(fn func(*Socket) bool) {
	for _, s := range srv.snapshot() {
		if !fn(s) {
			return
		}
	}
}

func (srv *Server) snapshot() []*Socket {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	out := make([]*Socket, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		out = append(out, s)
	}
	return out
}

// Close refuses new handshakes (400, code 3) and closes every session gracefully: what is queued is
// delivered, then the transport is closed, and OnClose gets "forced server close".
func (srv *Server) Close() {
	srv.mu.Lock()
	srv.closed = true
	srv.mu.Unlock()
	for _, s := range srv.snapshot() {
		s.closeGracefully("forced server close")
	}
}
