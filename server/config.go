package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/sio"
)

// Config is every setting of Switchboard. The zero value of a field means
// its default (Defaults fills them in); Load reads them from flags and
// environment variables, flags winning.
type Config struct {
	Addr              string        // ADDR
	Path              string        // SOCKETIO_PATH
	ServeClient       bool          // SERVE_CLIENT
	Parser            string        // PARSER: default or msgpack
	AllowEIO3         bool          // ALLOW_EIO3
	JWTSecret         string        // JWT_SECRET
	JWTPublicKeyFile  string        // JWT_PUBLIC_KEY_FILE
	JWTIssuer         string        // JWT_ISSUER
	JWTAudience       string        // JWT_AUDIENCE
	JWTLeeway         time.Duration // JWT_LEEWAY
	AuthRequireExp    bool          // AUTH_REQUIRE_EXP
	AuthQueryToken    bool          // AUTH_QUERY_TOKEN
	MaxPayload        int64         // MAX_PAYLOAD
	MessageMaxBytes   int           // MESSAGE_MAX_BYTES
	DedupeWindow      time.Duration // DEDUPE_WINDOW
	RecoveryWindow    time.Duration // RECOVERY_WINDOW (negative: off)
	RateLimit         float64       // RATE_LIMIT (negative: off)
	RateBurst         int           // RATE_BURST
	MaxConnections    int           // MAX_CONNECTIONS (negative: no limit)
	MaxConnsPerUser   int           // MAX_CONNECTIONS_PER_USER (negative: no limit)
	MaxRoomsPerSocket int           // MAX_ROOMS_PER_SOCKET
	PingInterval      time.Duration // PING_INTERVAL
	PingTimeout       time.Duration // PING_TIMEOUT
	CORSOrigins       []string      // CORS_ORIGINS
	NodeID            string        // NODE_ID
	DrainTimeout      time.Duration // DRAIN_TIMEOUT
	LogLevel          string        // LOG_LEVEL
	LogFormat         string        // LOG_FORMAT
	Adapter           string        // ADAPTER: memory, redis or redis-streams
	RedisURL          string        // REDIS_URL
	RedisPrefix       string        // REDIS_PREFIX
	StickyCookie      string        // STICKY_COOKIE
	PprofAddr         string        // PPROF_ADDR

	// Hardening: what one client (or one IP) may make the node hold.
	RecoveryMaxBytes     int64         // RECOVERY_MAX_BYTES
	MaxBufferedBytes     int           // MAX_BUFFERED_BYTES
	WriteTimeout         time.Duration // WRITE_TIMEOUT
	MaxInboundBytes      int           // MAX_INBOUND_BYTES
	AckTimeout           time.Duration // ACK_TIMEOUT
	MaxPendingSessions   int           // MAX_PENDING_SESSIONS (negative: no limit)
	MaxDynamicNamespaces int           // MAX_DYNAMIC_NAMESPACES (0: no limit)
	HandshakeTimeout     time.Duration // HANDSHAKE_TIMEOUT
	MaxConnsPerIP        int           // MAX_CONNECTIONS_PER_IP (negative: no limit)
	HandshakeRatePerIP   float64       // HANDSHAKE_RATE_PER_IP (negative: off)
	HandshakeBurstPerIP  int           // HANDSHAKE_BURST_PER_IP
	TrustedProxies       []string      // TRUSTED_PROXIES (CIDRs)
	SessionBindIP        bool          // SESSION_BIND_IP
	HTTPIdleTimeout      time.Duration // HTTP_IDLE_TIMEOUT
	HTTPReadTimeout      time.Duration // HTTP_READ_TIMEOUT
	RateKickCooldown     time.Duration // RATE_KICK_COOLDOWN (0: off)
	DedupeMaxEntries     int           // DEDUPE_MAX_ENTRIES
	MetricsToken         string        // METRICS_TOKEN
	MetricsAddr          string        // METRICS_ADDR
	ProbesOnMetricsAddr  bool          // PROBES_ON_METRICS_ADDR
	APIKey               string        // SERVER_API_KEY (empty: the HTTP publish API is off)
	APIRate              float64       // SERVER_API_RATE (0: no limit)
	APIMaxBody           int64         // SERVER_API_MAX_BODY

	// The Admin UI's /admin namespace (@socket.io/admin-ui).
	AdminPasswordHash string // ADMIN_UI_PASSWORD_HASH
	AdminUsername     string // ADMIN_UI_USERNAME
	AdminNoAuth       bool   // ADMIN_UI_NO_AUTH
	AdminReadOnly     bool   // ADMIN_UI_READONLY
	AdminMode         string // ADMIN_UI_MODE: development or production
	AdminQueue        int    // ADMIN_UI_QUEUE

	// Compression (Node's httpCompression and perMessageDeflate).
	HTTPCompression            bool // HTTP_COMPRESSION
	HTTPCompressionThreshold   int  // HTTP_COMPRESSION_THRESHOLD
	PerMessageDeflate          bool // PER_MESSAGE_DEFLATE
	PerMessageDeflateThreshold int  // PER_MESSAGE_DEFLATE_THRESHOLD

	// Authenticate, set by a program that embeds Switchboard (there is no
	// environment variable), replaces JWT authentication for every
	// namespace: it runs as the first connect middleware, as Node's
	// io.use(fn), and must set h.User or refuse. With it set and no JWT
	// configured the server is not in development mode.
	Authenticate func(ctx context.Context, h *Handshake) error
	// NoContract, set by an embedding program, leaves namespace "/" without
	// the contract's events (join-room, message, presence, ...), for a
	// program that registers its own handlers there (a ported Node backend).
	NoContract bool
}

// setting describes one configuration knob once: for flags, environment
// variables, defaults and the documentation table.
type setting struct {
	env, def, help string
	set            func(c *Config, v string) error
}

func settings() []setting {
	dur := func(p func(*Config) *time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			*p(c) = d
			return err
		}
	}
	num := func(p func(*Config) *int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			*p(c) = n
			return err
		}
	}
	num64 := func(p func(*Config) *int64) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			*p(c) = n
			return err
		}
	}
	nonNeg := func(p func(*Config) *int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err == nil && n < 0 {
				err = errors.New("must not be negative")
			}
			*p(c) = n
			return err
		}
	}
	float := func(p func(*Config) *float64) func(*Config, string) error {
		return func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			*p(c) = f
			return err
		}
	}
	str := func(p func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *p(c) = v; return nil }
	}
	boolean := func(p func(*Config) *bool) func(*Config, string) error {
		return func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			*p(c) = b
			return err
		}
	}
	return []setting{
		{"ADDR", "", "listen address (empty: :3000, or 127.0.0.1:3000 in development mode)", str(func(c *Config) *string { return &c.Addr })},
		{"SOCKETIO_PATH", "/socket.io/", "URL path of the Socket.IO endpoint", str(func(c *Config) *string { return &c.Path })},
		{"SERVE_CLIENT", "1", "serve the socket.io-client bundle under SOCKETIO_PATH (socket.io.js, .min.js, .esm.min.js, .msgpack.min.js and their .map; ETag, 304, gzip), as Node's serveClient", boolean(func(c *Config) *bool { return &c.ServeClient })},
		{"PARSER", "default", "packet encoding spoken to every client: default (socket.io-parser) or msgpack (socket.io-msgpack-parser 3.0.2; clients need the same parser). Nodes of one cluster may differ", func(c *Config, v string) error {
			if _, err := sio.ParseParser(v); err != nil {
				return err
			}
			c.Parser = v
			return nil
		}},
		{"ALLOW_EIO3", "0", "also accept socket.io-client 2.x (Engine.IO 3, Socket.IO protocol 4), as Node's allowEIO3: connected to / at once, the token from the ?token= query (set AUTH_QUERY_TOKEN=1) or, for other namespaces, their query; no connection state recovery", boolean(func(c *Config) *bool { return &c.AllowEIO3 })},
		{"JWT_SECRET", "", "HMAC secret for HS256/384/512 tokens (unset with no public key: development mode)", str(func(c *Config) *string { return &c.JWTSecret })},
		{"JWT_PUBLIC_KEY_FILE", "", "PEM public key for RS256/ES256/EdDSA tokens", str(func(c *Config) *string { return &c.JWTPublicKeyFile })},
		{"JWT_ISSUER", "", "required iss claim (unchecked when empty)", str(func(c *Config) *string { return &c.JWTIssuer })},
		{"JWT_AUDIENCE", "", "required aud claim (unchecked when empty)", str(func(c *Config) *string { return &c.JWTAudience })},
		{"JWT_LEEWAY", "30s", "clock skew allowed for exp/nbf/iat", dur(func(c *Config) *time.Duration { return &c.JWTLeeway })},
		{"AUTH_REQUIRE_EXP", "1", "refuse tokens without exp", boolean(func(c *Config) *bool { return &c.AuthRequireExp })},
		{"AUTH_QUERY_TOKEN", "0", "also accept the token from the ?token= query", boolean(func(c *Config) *bool { return &c.AuthQueryToken })},
		{"MAX_PAYLOAD", "1000000", "max bytes of one message or polling body; larger closes that client", num64(func(c *Config) *int64 { return &c.MaxPayload })},
		{"MESSAGE_MAX_BYTES", "4096", "max bytes of a message text (payload_too_large beyond)", num(func(c *Config) *int { return &c.MessageMaxBytes })},
		{"DEDUPE_WINDOW", "5m", "how long a message clientId is remembered", dur(func(c *Config) *time.Duration { return &c.DedupeWindow })},
		{"RECOVERY_WINDOW", "2m", "connection state recovery window (0 disables)", dur(func(c *Config) *time.Duration { return &c.RecoveryWindow })},
		{"RATE_LIMIT", "20", "events per second per socket (0 disables)", float(func(c *Config) *float64 { return &c.RateLimit })},
		{"RATE_BURST", "0", "burst of events per socket (0: 2 x RATE_LIMIT)", num(func(c *Config) *int { return &c.RateBurst })},
		{"MAX_CONNECTIONS", "10000", "connections per node (0: no limit)", num(func(c *Config) *int { return &c.MaxConnections })},
		{"MAX_CONNECTIONS_PER_USER", "20", "connections per user (0: no limit)", num(func(c *Config) *int { return &c.MaxConnsPerUser })},
		{"MAX_ROOMS_PER_SOCKET", "50", "rooms one socket may join (too_many_rooms beyond)", num(func(c *Config) *int { return &c.MaxRoomsPerSocket })},
		{"PING_INTERVAL", "25s", "Engine.IO heartbeat interval", dur(func(c *Config) *time.Duration { return &c.PingInterval })},
		{"PING_TIMEOUT", "20s", "Engine.IO heartbeat timeout", dur(func(c *Config) *time.Duration { return &c.PingTimeout })},
		{"HTTP_COMPRESSION", "1", "compress long-polling responses with gzip or deflate when the client accepts it (Node's httpCompression)", boolean(func(c *Config) *bool { return &c.HTTPCompression })},
		{"HTTP_COMPRESSION_THRESHOLD", "1024", "polling responses smaller than this many bytes are sent uncompressed", nonNeg(func(c *Config) *int { return &c.HTTPCompressionThreshold })},
		{"PER_MESSAGE_DEFLATE", "0", "accept permessage-deflate on WebSocket (Node's perMessageDeflate), without context takeover: costs CPU, not memory per connection; a broadcast is compressed once", boolean(func(c *Config) *bool { return &c.PerMessageDeflate })},
		{"PER_MESSAGE_DEFLATE_THRESHOLD", "1024", "WebSocket messages smaller than this many bytes are sent uncompressed; a compressed incoming one may inflate to MAX_PAYLOAD, no more (closed with 1009 beyond)", nonNeg(func(c *Config) *int { return &c.PerMessageDeflateThreshold })},
		{"CORS_ORIGINS", "", "comma-separated browser origins allowed cross-origin (empty: same origin only)", func(c *Config, v string) error {
			c.CORSOrigins = splitList(v)
			return nil
		}},
		{"NODE_ID", "", "this node's id in message ids and logs (empty: random)", str(func(c *Config) *string { return &c.NodeID })},
		{"DRAIN_TIMEOUT", "10s", "on SIGTERM, clients are disconnected spread over this time", dur(func(c *Config) *time.Duration { return &c.DrainTimeout })},
		{"ADAPTER", "memory", "memory (one node), redis (nodes share rooms over Redis pub/sub) or redis-streams (also recovery across nodes)", str(func(c *Config) *string { return &c.Adapter })},
		{"REDIS_URL", "redis://127.0.0.1:6379/0", "Redis for the redis adapters", str(func(c *Config) *string { return &c.RedisURL })},
		{"REDIS_PREFIX", "socket.io", "key and channel prefix (the Node adapter's default, for interoperation)", str(func(c *Config) *string { return &c.RedisPrefix })},
		{"STICKY_COOKIE", "", "name of a cookie set to NODE_ID on the handshake, for cookie-sticky load balancers (empty: none)", str(func(c *Config) *string { return &c.StickyCookie })},
		{"PPROF_ADDR", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060 (empty: off)", str(func(c *Config) *string { return &c.PprofAddr })},
		{"RECOVERY_MAX_BYTES", "67108864", "bytes of broadcasts kept for recovery per node, oldest evicted first: the recovery log (memory adapter: an evicted offset gets a fresh session) or the stream's decoded tail (redis-streams: an older offset is replayed from Redis)", num64(func(c *Config) *int64 { return &c.RecoveryMaxBytes })},
		{"MAX_BUFFERED_BYTES", "1048576", "outbound bytes queued per connection; beyond, the client is cut off as a slow consumer", num(func(c *Config) *int { return &c.MaxBufferedBytes })},
		{"WRITE_TIMEOUT", "10s", "a write to a client that takes longer cuts it off as a slow consumer", dur(func(c *Config) *time.Duration { return &c.WriteTimeout })},
		{"MAX_INBOUND_BYTES", "2000000", "bytes of a connection's input waiting for its handlers; beyond, its reader pauses (at least MAX_PAYLOAD)", num(func(c *Config) *int { return &c.MaxInboundBytes })},
		{"ACK_TIMEOUT", "30s", "how long the server waits for a client's answer to an event it emitted with an ack", dur(func(c *Config) *time.Duration { return &c.AckTimeout })},
		{"MAX_DYNAMIC_NAMESPACES", "1000", "namespaces clients may create through a program's OfPattern/OfMatch, per node (0: no limit; Invalid namespace beyond)", num(func(c *Config) *int { return &c.MaxDynamicNamespaces })},
		{"MAX_PENDING_SESSIONS", "1000", "Engine.IO sessions not yet connected to a namespace, per node (0: no limit)", num(func(c *Config) *int { return &c.MaxPendingSessions })},
		{"HANDSHAKE_TIMEOUT", "10s", "time a new session has to connect to a namespace (Node's connectTimeout, 45s there)", dur(func(c *Config) *time.Duration { return &c.HandshakeTimeout })},
		{"MAX_CONNECTIONS_PER_IP", "200", "Engine.IO sessions per client IP (0: no limit; 429 beyond); TCP connections per peer IP are capped at twice this", num(func(c *Config) *int { return &c.MaxConnsPerIP })},
		{"HANDSHAKE_RATE_PER_IP", "20", "new sessions per second per client IP (0: no limit; 429 with Retry-After beyond)", float(func(c *Config) *float64 { return &c.HandshakeRatePerIP })},
		{"HANDSHAKE_BURST_PER_IP", "40", "burst of new sessions per client IP", num(func(c *Config) *int { return &c.HandshakeBurstPerIP })},
		{"TRUSTED_PROXIES", "", "comma-separated CIDRs of balancers whose X-Forwarded-For names the client IP (empty: the peer address is the client)", func(c *Config, v string) error {
			c.TrustedProxies = splitList(v)
			return nil
		}},
		{"SESSION_BIND_IP", "1", "requests for an existing session from another client IP are refused as an unknown session", boolean(func(c *Config) *bool { return &c.SessionBindIP })},
		{"HTTP_IDLE_TIMEOUT", "5s", "idle keep-alive HTTP connections are closed after this (behind a balancer: keep it above the balancer's idle timeout towards the nodes)", dur(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout })},
		{"HTTP_READ_TIMEOUT", "30s", "time to read one HTTP request, body included (polling POSTs)", dur(func(c *Config) *time.Duration { return &c.HTTPReadTimeout })},
		{"RATE_KICK_COOLDOWN", "10s", "after a flood kick, the user and IP are refused this long, doubling on repeat up to 5m (0: off)", dur(func(c *Config) *time.Duration { return &c.RateKickCooldown })},
		{"DEDUPE_MAX_ENTRIES", "100000", "message clientIds remembered per node (memory adapter); the oldest are forgotten first", num(func(c *Config) *int { return &c.DedupeMaxEntries })},
		{"METRICS_TOKEN", "", "bearer token required by /metrics (empty: open)", str(func(c *Config) *string { return &c.MetricsToken })},
		{"METRICS_ADDR", "", "serve /metrics on this separate address, e.g. 127.0.0.1:9090 (empty: on ADDR)", str(func(c *Config) *string { return &c.MetricsAddr })},
		{"PROBES_ON_METRICS_ADDR", "0", "with METRICS_ADDR, also serve /healthz and /readyz there (and not on ADDR)", boolean(func(c *Config) *bool { return &c.ProbesOnMetricsAddr })},
		{"SERVER_API_KEY", "", "turns on the HTTP publish API under /api/v1/ (emit, room messages, presence, disconnect a user), which then requires Authorization: Bearer with this key (empty: off)", str(func(c *Config) *string { return &c.APIKey })},
		{"SERVER_API_RATE", "100", "requests per second the HTTP publish API takes on this node, with a burst of as many (0: no limit; 429 with Retry-After beyond)", func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil && f < 0 {
				err = errors.New("must not be negative")
			}
			c.APIRate = f
			return err
		}},
		{"SERVER_API_MAX_BODY", "1048576", "max bytes of an HTTP publish API request body (413 beyond)", func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil && n < 1 {
				err = errors.New("must be positive")
			}
			c.APIMaxBody = n
			return err
		}},
		{"ADMIN_UI_PASSWORD_HASH", "", "bcrypt hash of the Admin UI password (htpasswd -nbBC 10 '' pass | cut -c2-): turns on the /admin namespace of @socket.io/admin-ui (empty: off)", str(func(c *Config) *string { return &c.AdminPasswordHash })},
		{"ADMIN_UI_USERNAME", "admin", "Admin UI user name", str(func(c *Config) *string { return &c.AdminUsername })},
		{"ADMIN_UI_NO_AUTH", "0", "turn the Admin UI's /admin namespace on without authentication (development mode only: refused with JWT_SECRET or JWT_PUBLIC_KEY_FILE)", boolean(func(c *Config) *bool { return &c.AdminNoAuth })},
		{"ADMIN_UI_READONLY", "0", "the Admin UI shows, but offers none of its commands (emit, join, leave, disconnect)", boolean(func(c *Config) *bool { return &c.AdminReadOnly })},
		{"ADMIN_UI_MODE", "development", "development: the UI gets every socket and its events (as Node's default); production: aggregated statistics only", func(c *Config, v string) error {
			if v != "development" && v != "production" {
				return errors.New("want development or production")
			}
			c.AdminMode = v
			return nil
		}},
		{"ADMIN_UI_QUEUE", "10000", "socket events waiting to be sent to the Admin UI; beyond, they are dropped (counted)", num(func(c *Config) *int { return &c.AdminQueue })},
		{"LOG_LEVEL", "info", "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
		{"LOG_FORMAT", "json", "json, or console for humans", str(func(c *Config) *string { return &c.LogFormat })},
	}
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// FlagName is the flag of an environment variable: MAX_PAYLOAD -> max-payload.
func FlagName(env string) string { return strings.ToLower(strings.ReplaceAll(env, "_", "-")) }

// Defaults returns the configuration with every default applied.
func Defaults() Config {
	var c Config
	for _, s := range settings() {
		if err := s.set(&c, s.def); err != nil && s.def != "" {
			panic(fmt.Sprintf("bad default for %s: %v", s.env, err))
		}
	}
	return c
}

// Load reads the configuration: defaults, then environment variables (from
// getenv), then flags in args (flags win). It returns flag.ErrHelp for -h.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := Defaults()
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(usage)
	var errs []error
	for _, s := range settings() {
		val := s.def
		if v := getenv(s.env); v != "" {
			val = v
			if err := s.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, v, err))
			}
		}
		fs.Func(FlagName(s.env), fmt.Sprintf("%s (env %s, default %q)", s.help, s.env, val), func(v string) error {
			return s.set(&c, v)
		})
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	return c, errors.Join(errs...)
}

// LoadFromOS is Load with the process's flags and environment.
func LoadFromOS(args []string) (Config, error) { return Load(args, os.Getenv, os.Stderr) }

// DocTable renders the settings as a Markdown table (README's configuration table).
func DocTable() string {
	var b strings.Builder
	b.WriteString("| variable | flag | default | meaning |\n| --- | --- | --- | --- |\n")
	for _, s := range settings() {
		def := s.def
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | `%s` | %s |\n", s.env, FlagName(s.env), def, s.help)
	}
	return b.String()
}
