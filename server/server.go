// Package server is Switchboard's composition root: configuration, the HTTP
// mux (Socket.IO, health, readiness, metrics, demo page), limits, metrics
// and the lifecycle with graceful drain. It is also the library API for
// programs that embed Switchboard (see Example in example_test.go).
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/adapter"
	"github.com/switchboard/switchboard/internal/clientip"
	"github.com/switchboard/switchboard/internal/iplimit"
	"github.com/switchboard/switchboard/internal/sio"
	"github.com/switchboard/switchboard/middleware"
	"github.com/switchboard/switchboard/namespaces"
	"github.com/switchboard/switchboard/server/clientbundle"
	"github.com/switchboard/switchboard/web"
)

// Types of the handler API, for programs that add their own namespaces.
type (
	Namespace = sio.Namespace
	Conn      = sio.Conn
	User      = sio.User
	Error     = sio.Error
	Handshake = sio.Handshake
	// Node's event model (see internal/sio/events.go): Namespace.On,
	// Conn.Emit with any arguments, Conn.EmitWithAck, OnAny, OnAnyOutgoing.
	Args         = sio.Args
	Ack          = sio.Ack
	EventHandler = sio.EventHandler
	AnyHandler   = sio.AnyHandler
	// For the cluster-wide operations of a Namespace (FetchSockets,
	// SocketsJoin, SocketsLeave, DisconnectSockets, ServerSideEmit,
	// ServerSideEmitWithAck, OnServerSideEmit): see internal/sio/requests.go.
	BroadcastOpts     = sio.BroadcastOpts
	SocketInfo        = sio.SocketInfo
	ServerSideHandler = sio.ServerSideHandler
)

// Handle registers a typed event handler on a namespace: see sio.Handle.
func Handle[T, R any](n *Namespace, event string, h func(ctx context.Context, c *Conn, msg T) (R, error)) {
	sio.Handle(n, event, h)
}

// Errorf builds an error that is acknowledged as {ok:false, error:{code, message}}.
func Errorf(code, format string, args ...any) *Error { return sio.Errorf(code, format, args...) }

// Flood protection: refusals in a row before a connection is disconnected.
const floodDisconnectAfter = 10

// Server is one Switchboard node.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	io       *sio.Server
	rooms    *namespaces.Rooms
	metrics  *metrics
	verifier *middleware.Verifier
	secret   []byte // HMAC secret for minting (configured or generated in development mode)
	devMode  bool
	draining atomic.Bool
	ready    func() error // nil when nothing external must be up
	stopBg   context.CancelFunc
	redisLog *rateLog
	// clientIPs resolves client IPs (TRUSTED_PROXIES); its trusted peers are
	// not counted by the per-IP TCP connection cap.
	clientIPs *clientip.Resolver
	live      liveState         // the demo page's live panel: /live.json (live.go)
	admin     *namespaces.Admin // the Admin UI's namespace; nil when off
}

// New builds a node from cfg (start from Defaults()). Namespace "/" is
// registered with the contract's events; the same JWT auth, limits and
// rate limit apply to every namespace added with Of. Call Shutdown (or
// Serve's context) to stop it.
func New(cfg Config, log zerolog.Logger) (*Server, error) {
	s := &Server{cfg: cfg}
	if cfg.NodeID == "" {
		s.cfg.NodeID = randomHex(4)
	}
	s.log = log.With().Str("node", s.cfg.NodeID).Logger()
	s.redisLog = &rateLog{log: s.log, every: time.Second}
	if err := s.setupAuth(); err != nil {
		return nil, err
	}
	if s.cfg.Addr == "" { // development mode stays on this machine unless ADDR says otherwise
		s.cfg.Addr = ":3000"
		if s.devMode {
			s.cfg.Addr = "127.0.0.1:3000"
		}
	}
	st, err := s.stores()
	if err != nil {
		return nil, err
	}
	bg, stop := context.WithCancel(context.Background())
	s.stopBg = stop
	s.metrics = newMetrics(gauges{
		transports:    func() map[string]int { return s.io.TransportCounts() },
		rooms:         func() int { return s.io.Of("/").LocalRoomCount() },
		pending:       func() int { return s.io.PendingCount() },
		authenticated: func() int { return s.io.AuthenticatedCount() },
		maxConns:      max(cfg.MaxConnections, 0),
		recoveryBytes: func() int64 { return s.io.RecoveryLogBytes() },
		dedupe:        st.dedupeLen,
		ready:         func() bool { return s.readyErr() == nil },
	})
	s.redisLog.count = s.metrics.redisErrors.Inc
	if c, ok := st.cluster.(clusterStats); ok {
		s.metrics.registerCluster(c)
	}
	if len(st.pools) > 0 {
		s.metrics.reg.MustRegister(poolCollector(st.pools))
	}
	if d, ok := st.dedupe.(*adapter.MemoryDedupe); ok {
		d.SetMaxEntries(cfg.DedupeMaxEntries, func() { s.metrics.Limit(sio.LimitDedupeEviction) })
	}

	recovery := cfg.RecoveryWindow
	if recovery <= 0 {
		recovery = -1 // off
	}
	ips, err := clientip.New(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	s.clientIPs = ips
	parser, err := sio.ParseParser(cfg.Parser)
	if err != nil {
		return nil, fmt.Errorf("PARSER: %w", err)
	}
	perIP := iplimit.New(iplimit.Config{
		MaxSessions: max(cfg.MaxConnsPerIP, 0), Rate: max(cfg.HandshakeRatePerIP, 0), Burst: cfg.HandshakeBurstPerIP,
	})
	var cookie *http.Cookie
	if cfg.StickyCookie != "" {
		cookie = &http.Cookie{Name: cfg.StickyCookie, Value: s.cfg.NodeID, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	}
	s.io = sio.NewServer(sio.Options{
		Path:           cfg.Path,
		PingInterval:   cfg.PingInterval,
		PingTimeout:    cfg.PingTimeout,
		ConnectTimeout: cfg.HandshakeTimeout,
		MaxPending:     cfg.MaxPendingSessions,
		MaxDynamicNamespaces: func() int {
			if cfg.MaxDynamicNamespaces == 0 {
				return -1 // no limit
			}
			return cfg.MaxDynamicNamespaces
		}(),
		MaxPayload:     cfg.MaxPayload,
		MaxBuffered:    cfg.MaxBufferedBytes,
		WriteTimeout:   cfg.WriteTimeout,
		MaxInbound:     cfg.MaxInboundBytes,
		RecoveryWindow: recovery,
		CORSOrigins:    cfg.CORSOrigins,
		Cookie:         cookie,
		Cluster:        st.cluster,
		Parser:         parser,
		Compression:    compression(cfg),
		AllowEIO3:      cfg.AllowEIO3,
		CountTraffic:   adminEnabled(cfg), // the Admin UI's aggregated events
		AllowRequest: func(*http.Request) error {
			if s.draining.Load() {
				return errors.New("server is draining")
			}
			return nil
		},
		RecoveryMaxBytes: cfg.RecoveryMaxBytes,
		AckTimeout:       cfg.AckTimeout,
		Admit:            func(ip string) (func(), error) { return admitIP(perIP, ip) },
		ClientIP:         ips.ClientIP,
		BindSessionIP:    cfg.SessionBindIP,
		AnyOrigin:        s.devMode, // development accepts every Origin
		Logger:           s.log,
		Observer:         s.metrics,
	})
	if cfg.Authenticate != nil {
		s.io.Use(cfg.Authenticate)
	} else {
		s.io.Use(middleware.Auth(s.verifier, cfg.AuthQueryToken))
	}
	// Before Limits: a user cooling down costs no presence round trip.
	kicks := middleware.NewCooldown(middleware.CooldownConfig{Base: cfg.RateKickCooldown}) // per node
	s.io.Use(middleware.KickCooldown(kicks, func() { s.metrics.Limit(sio.LimitCooldown) }))
	s.io.Use(middleware.Limits(cfg.MaxConnections, s.io.AuthenticatedCount, cfg.MaxConnsPerUser, st.presence))
	burst := cfg.RateBurst
	if burst <= 0 {
		burst = int(2 * cfg.RateLimit)
	}
	s.io.Intercept(middleware.RateLimit(cfg.RateLimit, burst, floodDisconnectAfter, kicks, s.metrics.floodKicks.Inc))

	if !cfg.NoContract {
		s.registerRooms(st)
	}
	if err := s.registerAdmin(); err != nil {
		stop()
		return nil, err
	}
	for _, run := range st.run {
		go run(bg, s)
	}
	return s, nil
}

func adminEnabled(cfg Config) bool { return cfg.AdminPasswordHash != "" || cfg.AdminNoAuth }

// registerAdmin installs the Admin UI's /admin namespace when it is enabled.
func (s *Server) registerAdmin() error {
	cfg := s.cfg
	if !adminEnabled(cfg) {
		return nil
	}
	if cfg.AdminNoAuth && !s.devMode {
		return errors.New("ADMIN_UI_NO_AUTH=1 is for development mode only: set ADMIN_UI_PASSWORD_HASH")
	}
	a, err := namespaces.RegisterAdmin(s.io, namespaces.AdminConfig{
		Username: cfg.AdminUsername, PasswordHash: cfg.AdminPasswordHash, NoAuth: cfg.AdminNoAuth && cfg.AdminPasswordHash == "",
		ReadOnly: cfg.AdminReadOnly, Production: cfg.AdminMode == "production", ServerID: s.cfg.NodeID,
		QueueSize: cfg.AdminQueue, OnDrop: func() { s.metrics.Limit(sio.LimitAdminQueue) }, Log: s.log,
	})
	if err != nil {
		return fmt.Errorf("ADMIN_UI_PASSWORD_HASH: %w", err)
	}
	s.admin = a
	return nil
}

// compression is the engine's Compression for cfg.
func compression(cfg Config) sio.Compression {
	return sio.Compression{
		HTTP:                       cfg.HTTPCompression,
		HTTPThreshold:              cfg.HTTPCompressionThreshold,
		PerMessageDeflate:          cfg.PerMessageDeflate,
		PerMessageDeflateThreshold: cfg.PerMessageDeflateThreshold,
	}
}

// registerRooms puts the contract's chat (join-room, message, presence...) on "/".
func (s *Server) registerRooms(st stores) {
	cfg := s.cfg
	s.rooms = namespaces.RegisterRooms(s.io, namespaces.RoomsConfig{
		MessageMaxBytes: cfg.MessageMaxBytes,
		DedupeWindow:    cfg.DedupeWindow,
		MaxRoomsPerConn: cfg.MaxRoomsPerSocket,
		NodeID:          s.cfg.NodeID,
		Presence:        st.presence,
		Dedupe:          st.dedupe,
		OnError:         func(err error) { s.redisLog.warn(err, "presence store") },
	})
}

// userGone tells the contract's rooms that a user's presence was reaped.
func (s *Server) userGone(room, userID, name string) {
	if s.rooms != nil {
		s.rooms.UserGone(room, userID, name)
	}
}

// admitIP applies MAX_CONNECTIONS_PER_IP and HANDSHAKE_RATE_PER_IP to a new
// session: 429 with Retry-After beyond either.
func admitIP(l *iplimit.Limiter, ip string) (func(), error) {
	release, retry, why := l.Acquire(ip)
	switch why {
	case "":
		return release, nil
	case iplimit.ReasonSessions:
		return nil, &sio.Refusal{Status: http.StatusTooManyRequests, RetryAfter: retry, Limit: sio.LimitIPSessions, Message: "Too many sessions from this address"}
	default:
		return nil, &sio.Refusal{Status: http.StatusTooManyRequests, RetryAfter: retry, Limit: sio.LimitIPRate, Message: "Too many new sessions from this address"}
	}
}

func (s *Server) setupAuth() error {
	cfg := s.cfg
	ac := middleware.AuthConfig{
		Secret:     []byte(cfg.JWTSecret),
		Issuer:     cfg.JWTIssuer,
		Audience:   cfg.JWTAudience,
		Leeway:     cfg.JWTLeeway,
		RequireExp: cfg.AuthRequireExp,
	}
	if cfg.JWTPublicKeyFile != "" {
		pem, err := os.ReadFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return fmt.Errorf("read JWT_PUBLIC_KEY_FILE: %w", err)
		}
		ac.PublicKeyPEM = pem
	}
	if len(ac.Secret) == 0 && len(ac.PublicKeyPEM) == 0 {
		ac.Secret = []byte(randomHex(32)) // unused with Authenticate
		if cfg.Authenticate == nil {
			s.devMode = true
			s.log.Warn().Msg("development mode: neither JWT_SECRET nor JWT_PUBLIC_KEY_FILE is set; " +
				"using a random secret and serving GET /auth/dev-token?sub=alice&name=Alice. Do not run this in production.")
		}
	}
	s.secret = ac.Secret
	v, err := middleware.NewVerifier(ac)
	if err != nil {
		return fmt.Errorf("JWT configuration: %w", err)
	}
	s.verifier = v
	return nil
}

// Config is the configuration the node runs with (NodeID filled in).
func (s *Server) Config() Config { return s.cfg }

// DevMode reports whether the node generated its own secret.
func (s *Server) DevMode() bool { return s.devMode }

// Of returns namespace name, creating it; JWT auth, limits and the rate
// limit apply to it. Register its handlers before serving.
func (s *Server) Of(name string) *Namespace { return s.io.Of(name) }

// OfPattern creates the namespaces whose name re matches when a client
// first connects to one, Node's io.of(/regexp/); setup registers each one's
// handlers before anyone connects. MAX_DYNAMIC_NAMESPACES caps them.
func (s *Server) OfPattern(re *regexp.Regexp, setup func(n *Namespace)) { s.io.OfPattern(re, setup) }

// OfMatch is OfPattern with a function of the name and the client's auth
// payload, Node's io.of((name, auth, next) => next(null, ok)).
func (s *Server) OfMatch(match func(name string, auth map[string]any) bool, setup func(n *Namespace)) {
	s.io.OfMatch(match, setup)
}

// MintToken signs an HS256 token with the node's secret (the configured
// JWT_SECRET, or the generated one in development mode).
func (s *Server) MintToken(sub, name string, ttl time.Duration) (string, error) {
	if len(s.secret) == 0 {
		return "", errors.New("no HMAC secret configured")
	}
	return middleware.MintHS256(s.secret, sub, name, ttl, nil)
}

// Mount registers Switchboard's routes on mux: the Socket.IO endpoint,
// /healthz, /readyz, /metrics, /auth/dev-token, /live.json, the HTTP publish API
// under /api/v1/ (with SERVER_API_KEY) and the demo page at /.
// With METRICS_ADDR set, /metrics is not registered (Serve serves it on that
// address; see MetricsHandler), nor are the probes with PROBES_ON_METRICS_ADDR.
func (s *Server) Mount(mux *http.ServeMux) {
	var sioHandler http.Handler = s.io.Handler()
	if s.cfg.ServeClient {
		sioHandler = clientbundle.New(s.io.Path(), sioHandler)
	}
	mux.Handle(s.io.Path(), sioHandler)
	if !s.probesApart() {
		s.mountProbes(mux)
	}
	if s.cfg.MetricsAddr == "" {
		mux.Handle("GET /metrics", s.MetricsHandler())
	}
	mux.HandleFunc("GET /auth/dev-token", s.devToken)
	mux.Handle("GET "+livePath, s.liveHandler(false)) // the demo page's live panel (live.go)
	s.mountAPI(mux)                                   // the HTTP publish API with SERVER_API_KEY (api.go)
	mux.Handle("/", http.FileServerFS(web.Files))
}

// readyErr says why the node is not ready (draining, Redis down), nil when it is.
func (s *Server) readyErr() error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	if s.ready != nil {
		return s.ready()
	}
	return nil
}

// Handler is a mux with Switchboard's routes (see Mount).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Mount(mux)
	return mux
}

func (s *Server) devToken(w http.ResponseWriter, r *http.Request) {
	if !s.devMode {
		http.NotFound(w, r)
		return
	}
	if !loopbackPeer(r) { // tokens for anyone: only for this machine
		writeJSON(w, http.StatusForbidden, map[string]any{"error": "the development token endpoint answers local clients only"})
		return
	}
	sub, name := r.URL.Query().Get("sub"), r.URL.Query().Get("name")
	if sub == "" || len(sub) > 128 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "sub must be 1-128 characters"})
		return
	}
	tok, err := s.MintToken(sub, name, 24*time.Hour)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok})
}

// Run listens on the configured address and serves until ctx is done, then
// drains (see Shutdown).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then drains and shuts down.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := s.httpServer(s.Handler()) // timeouts: see httpServer
	errc := make(chan error, 2)
	if s.cfg.MetricsAddr != "" {
		ms, mln, err := s.listenMetrics()
		if err != nil {
			return err
		}
		defer ms.Close() // after the drain: /readyz answers 503 there meanwhile
		go func() { errc <- ms.Serve(mln) }()
	}
	go func() {
		errc <- hs.Serve(&countingListener{Listener: s.perIPListener(s.guardListener(ln)), m: s.metrics})
	}()
	if s.cfg.PprofAddr != "" {
		go s.servePprof(ctx)
	}
	s.log.Info().Str("addr", ln.Addr().String()).Str("path", s.io.Path()).
		Bool("dev_mode", s.devMode).Msg("switchboard listening")
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout+10*time.Second)
	defer cancel()
	s.Shutdown(sctx)
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	return nil
}

// servePprof serves profiles on their own address, never on the public one.
func (s *Server) servePprof(ctx context.Context) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ps := &http.Server{Addr: s.cfg.PprofAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = ps.Close() }()
	s.log.Info().Str("addr", s.cfg.PprofAddr).Msg("pprof listening")
	if err := ps.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		s.log.Error().Err(err).Msg("pprof server")
	}
}

// Shutdown drains the node like a lame duck: /readyz answers 503 and new
// sessions are refused at once, then open connections are closed spread
// over DRAIN_TIMEOUT (clients reconnect elsewhere and recover their session),
// then the engine stops.
func (s *Server) Shutdown(ctx context.Context) {
	if s.draining.Swap(true) {
		return
	}
	n := s.io.ClientsCount()
	s.log.Info().Int("connections", n).Dur("spread", s.cfg.DrainTimeout).Msg("draining")
	if err := s.io.Drain(ctx, s.cfg.DrainTimeout); err != nil {
		s.log.Warn().Err(err).Msg("drain cut short")
	}
	s.io.Close()
	if s.admin != nil {
		s.admin.Close()
	}
	s.stopBg()
	s.log.Info().Msg("drained")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// countingListener counts wire bytes of every accepted connection.
type countingListener struct {
	net.Listener
	m *metrics
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, m: l.m}, nil
}

type countingConn struct {
	net.Conn
	m *metrics
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.bytesIn.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.bytesOut.Add(uint64(n))
	return n, err
}
