package namespaces

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sort"
	"sync"

	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard/switchboard/internal/sio"
)

// The /admin namespace speaks the protocol of @socket.io/admin-ui 0.5.1 (its
// lib/index.ts, instrument(io, opts)), so that the official Admin UI, hosted
// or self-hosted, attaches to Switchboard as it does to Node. Nodes of a
// cluster each report their own server_stats to every admin socket through
// the adapter, as Node's instrumented servers do, and the UI's commands
// (emit, join, leave, _disconnect) reach every node through the adapter's
// requests.

// Admin UI features (typed-events.ts).
const (
	FeatureEmit             = "EMIT"
	FeatureJoin             = "JOIN"
	FeatureLeave            = "LEAVE"
	FeatureDisconnect       = "DISCONNECT"
	FeatureMJoin            = "MJOIN"
	FeatureMLeave           = "MLEAVE"
	FeatureMDisconnect      = "MDISCONNECT"
	FeatureAggregatedEvents = "AGGREGATED_EVENTS"
	FeatureAllEvents        = "ALL_EVENTS"
)

// CodeInvalidCredentials refuses an admin connection (the UI matches the message).
const CodeInvalidCredentials = "invalid_credentials"

// AdminConfig configures the /admin namespace. Zero values mean the defaults.
type AdminConfig struct {
	Namespace    string // default "/admin"
	Username     string // default "admin"
	PasswordHash string // bcrypt, what the UI's basic auth checks; required unless NoAuth
	NoAuth       bool   // anyone may connect (development only)
	ReadOnly     bool   // no commands
	Production   bool   // aggregated statistics only: no socket list, no per-socket events
	ServerID     string // serverId in server_stats (NODE_ID)
	// StatsInterval is how often server_stats is sent; default 2s, as Node.
	StatsInterval time.Duration
	// MaxSessions bounds the remembered login sessions (the oldest go
	// first); SessionTTL is how long one lasts. Defaults 1000 and 24h.
	MaxSessions int
	SessionTTL  time.Duration
	// QueueSize bounds the socket events waiting to be sent to the admin
	// sockets; beyond it they are dropped and OnDrop is called. Default 10000.
	QueueSize int
	OnDrop    func()
	Log       zerolog.Logger
}

// Admin is the running /admin namespace.
type Admin struct {
	cfg      AdminConfig
	io       *sio.Server
	ns       *sio.Namespace
	features []string
	started  time.Time
	hostname string

	sessions adminSessions
	bcrypt   chan struct{} // bounds concurrent password checks (each costs tens of ms of CPU)

	queue chan func() // socket events for the admin sockets, sent in order by one goroutine
	stop  chan struct{}
	once  sync.Once

	aggMu sync.Mutex
	agg   []aggregatedEvent // per-second counts since the last server_stats
	last  trafficSample
}

// RegisterAdmin installs the /admin namespace on io. It returns an error for
// a configuration that cannot work (no password hash without NoAuth, or one
// that is not bcrypt).
func RegisterAdmin(io *sio.Server, cfg AdminConfig) (*Admin, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "/admin"
	}
	if cfg.Username == "" {
		cfg.Username = "admin"
	}
	if !cfg.NoAuth {
		if _, err := bcrypt.Cost([]byte(cfg.PasswordHash)); err != nil {
			return nil, errors.New("admin: the password hash must be a bcrypt hash")
		}
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = 2 * time.Second
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 24 * time.Hour
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	a := &Admin{
		cfg: cfg, io: io, started: time.Now(),
		sessions: adminSessions{max: cfg.MaxSessions, ttl: cfg.SessionTTL, m: map[string]time.Time{}},
		bcrypt:   make(chan struct{}, 2),
		queue:    make(chan func(), cfg.QueueSize),
		stop:     make(chan struct{}),
	}
	a.hostname, _ = os.Hostname()
	if !cfg.ReadOnly {
		// Node's detectSupportedFeatures for socket.io 4: all of them.
		a.features = []string{FeatureEmit, FeatureJoin, FeatureLeave, FeatureDisconnect, FeatureMJoin, FeatureMLeave, FeatureMDisconnect}
	}
	a.features = append(a.features, FeatureAggregatedEvents)
	if !cfg.Production {
		a.features = append(a.features, FeatureAllEvents)
	}

	a.ns = io.Of(cfg.Namespace)
	a.ns.SkipServerMiddleware() // its own authentication, not the JWT of the other namespaces
	a.ns.Use(a.authenticate)
	a.ns.OnConnect(a.onConnect)
	if !cfg.ReadOnly {
		a.ns.On("emit", a.cmdEmit)
		a.ns.On("join", a.cmdRooms(true))
		a.ns.On("leave", a.cmdRooms(false))
		a.ns.On("_disconnect", a.cmdDisconnect)
	}
	if !cfg.Production {
		io.SetInstrument(adminInstrument{a})
	}
	a.sample(time.Now()) // the baseline of the first second
	go a.run()
	return a, nil
}

// Close stops the statistics and the event queue.
func (a *Admin) Close() { a.once.Do(func() { close(a.stop) }) }

// Namespace is the admin namespace.
func (a *Admin) Namespace() *sio.Namespace { return a.ns }

// --- authentication -------------------------------------------------------

const newSessionKey = "\x00admin-session" // set in Auth by authenticate for onConnect

var errInvalidCredentials = &sio.Error{Code: CodeInvalidCredentials, Message: "invalid credentials"}

func (a *Admin) authenticate(ctx context.Context, h *sio.Handshake) error {
	if a.cfg.NoAuth {
		return nil
	}
	if id, _ := h.Auth["sessionId"].(string); id != "" && a.sessions.valid(id, time.Now()) {
		return nil
	}
	user, _ := h.Auth["username"].(string)
	pass, _ := h.Auth["password"].(string)
	if user != a.cfg.Username || pass == "" || len(pass) > 72 { // bcrypt reads 72 bytes at most
		return errInvalidCredentials
	}
	select {
	case a.bcrypt <- struct{}{}:
	case <-ctx.Done():
		return &sio.Error{Code: sio.CodeUnavailable, Message: "too many login attempts, retry"}
	}
	err := bcrypt.CompareHashAndPassword([]byte(a.cfg.PasswordHash), []byte(pass))
	<-a.bcrypt
	if err != nil {
		return errInvalidCredentials
	}
	id := randomAdminID()
	a.sessions.add(id, time.Now())
	auth := make(map[string]any, len(h.Auth)+1)
	for k, v := range h.Auth {
		if k != "password" {
			auth[k] = v
		}
	}
	auth[newSessionKey] = id
	h.Auth = auth
	return nil
}

func randomAdminID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// adminSessions remembers login sessions, bounded in number and time.
type adminSessions struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[string]time.Time // id -> expiry
}

func (s *adminSessions) add(id string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		var oldest string
		var at time.Time
		for k, exp := range s.m {
			if oldest == "" || exp.Before(at) {
				oldest, at = k, exp
			}
		}
		delete(s.m, oldest)
	}
	s.m[id] = now.Add(s.ttl)
}

func (s *adminSessions) valid(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.m[id]
	if ok && now.After(exp) {
		delete(s.m, id)
		return false
	}
	return ok
}

// --- connection, statistics -----------------------------------------------

func (a *Admin) onConnect(ctx context.Context, c *sio.Conn) {
	if id, _ := c.Auth()[newSessionKey].(string); id != "" {
		_ = c.Emit("session", id)
	}
	_ = c.Emit("config", map[string]any{"supportedFeatures": a.features})
	if !a.cfg.Production {
		_ = c.Emit("all_sockets", a.allSockets(ctx))
	}
}

// allSockets is every socket of every namespace, on every node (Node's
// fetchSockets per namespace): this node's in full, the others' as their
// nodes describe them.
func (a *Admin) allSockets(ctx context.Context) []map[string]any {
	out := []map[string]any{}
	for _, n := range a.io.Namespaces() {
		local := map[string]bool{}
		for _, c := range n.Conns() {
			local[c.ID()] = true
			out = append(out, serializeConn(c))
		}
		remote, err := n.FetchSockets(ctx, sio.BroadcastOpts{})
		if err != nil {
			a.cfg.Log.Warn().Err(err).Str("nsp", n.Name()).Msg("admin: the other nodes' sockets are not listed")
			continue
		}
		for _, s := range remote {
			if !local[s.ID] {
				out = append(out, serializeRemote(s, n.Name()))
			}
		}
	}
	return out
}

func (a *Admin) run() {
	stats := time.NewTicker(a.cfg.StatsInterval)
	sec := time.NewTicker(time.Second)
	defer stats.Stop()
	defer sec.Stop()
	a.emitStats()
	for {
		select {
		case <-a.stop:
			return
		case now := <-sec.C:
			a.sample(now)
		case <-stats.C:
			a.emitStats()
		case fn := <-a.queue:
			fn()
		}
	}
}

// aggregatedEvent is one entry of server_stats.aggregatedEvents (Node's EventBuffer).
type aggregatedEvent struct {
	Timestamp int64  `json:"timestamp"`
	Type      string `json:"type"`
	SubType   string `json:"subType,omitempty"`
	Count     int64  `json:"count"`
}

type trafficSample struct {
	at                                       time.Time
	opened, pktIn, bytesIn, pktOut, bytesOut int64
	closed                                   map[string]int64
}

// maxAggregated bounds the entries kept between two server_stats.
const maxAggregated = 512

// sample turns the engine's counts of the second that ended into
// aggregated events, as Node's EventBuffer buckets them by second.
func (a *Admin) sample(now time.Time) {
	t := a.io.Traffic()
	if t == nil {
		return
	}
	cur := trafficSample{at: now, opened: t.Opened.Load(), pktIn: t.PacketsIn.Load(), bytesIn: t.BytesIn.Load(),
		pktOut: t.PacketsOut.Load(), bytesOut: t.BytesOut.Load(), closed: t.Closed()}
	a.aggMu.Lock()
	defer a.aggMu.Unlock()
	prev := a.last
	a.last = cur
	if prev.at.IsZero() {
		return
	}
	ts := prev.at.Truncate(time.Second).UnixMilli()
	add := func(typ, sub string, n int64) {
		if n > 0 && len(a.agg) < maxAggregated {
			a.agg = append(a.agg, aggregatedEvent{Timestamp: ts, Type: typ, SubType: sub, Count: n})
		}
	}
	add("rawConnection", "", cur.opened-prev.opened)
	reasons := make([]string, 0, len(cur.closed))
	for r := range cur.closed {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		add("rawDisconnection", r, cur.closed[r]-prev.closed[r])
	}
	add("packetsIn", "", cur.pktIn-prev.pktIn)
	add("bytesIn", "", cur.bytesIn-prev.bytesIn)
	add("packetsOut", "", cur.pktOut-prev.pktOut)
	add("bytesOut", "", cur.bytesOut-prev.bytesOut)
}

func (a *Admin) takeAggregated() []aggregatedEvent {
	a.aggMu.Lock()
	defer a.aggMu.Unlock()
	out := a.agg
	a.agg = nil
	if out == nil {
		out = []aggregatedEvent{}
	}
	return out
}

// Stats is this node's server_stats.
func (a *Admin) Stats() map[string]any {
	nsps := []map[string]any{}
	for _, n := range a.io.Namespaces() {
		nsps = append(nsps, map[string]any{"name": n.Name(), "socketsCount": n.LocalCount()})
	}
	sort.Slice(nsps, func(i, j int) bool { return nsps[i]["name"].(string) < nsps[j]["name"].(string) })
	return map[string]any{
		"serverId":            a.cfg.ServerID,
		"hostname":            a.hostname,
		"pid":                 os.Getpid(),
		"uptime":              time.Since(a.started).Seconds(),
		"clientsCount":        a.io.ClientsCount(),
		"pollingClientsCount": a.io.TransportCounts()["polling"],
		"aggregatedEvents":    a.takeAggregated(),
		"namespaces":          nsps,
	}
}

func (a *Admin) emitStats() {
	if err := a.ns.To().Volatile().Emit("server_stats", a.Stats()); err != nil {
		a.cfg.Log.Debug().Err(err).Msg("admin: server_stats not sent")
	}
}

// --- commands -------------------------------------------------------------

const commandTimeout = 5 * time.Second

// target parses the (nsp, filter) of a command: an existing namespace only
// (the UI cannot create one), and an optional room.
func (a *Admin) target(nspArg, filterArg any) (*sio.Namespace, sio.BroadcastOpts, error) {
	name, _ := nspArg.(string)
	var opts sio.BroadcastOpts
	var ns *sio.Namespace
	for _, n := range a.io.Namespaces() {
		if n.Name() == name {
			ns = n
		}
	}
	if ns == nil {
		return nil, opts, errors.New("unknown namespace")
	}
	switch f := filterArg.(type) {
	case nil:
	case string:
		if f != "" {
			opts.Rooms = []string{f}
		}
	default:
		return nil, opts, errors.New("the filter must be a room name")
	}
	return ns, opts, nil
}

// refuse answers a bad command: with the error when the UI asked for an
// ack (it does not), in the log always.
func (a *Admin) refuse(cmd string, err error, ack sio.Ack) {
	a.cfg.Log.Info().Str("command", cmd).Err(err).Msg("admin: command refused")
	if ack != nil {
		_ = ack(map[string]any{"ok": false, "error": map[string]any{"code": sio.CodeBadRequest, "message": err.Error()}})
	}
}

func (a *Admin) cmdEmit(_ context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
	if len(args) < 3 {
		a.refuse("emit", errors.New("want (nsp, filter, event, ...args)"), ack)
		return
	}
	ns, opts, err := a.target(args[0], args[1])
	ev, _ := args[2].(string)
	if err == nil && ev == "" {
		err = errors.New("the event must be a non-empty string")
	}
	if err != nil {
		a.refuse("emit", err, ack)
		return
	}
	if err := ns.To(opts.Rooms...).Emit(ev, args[3:]...); err != nil {
		a.refuse("emit", err, ack)
	}
}

func (a *Admin) cmdRooms(join bool) sio.EventHandler {
	cmd := map[bool]string{true: "join", false: "leave"}[join]
	return func(ctx context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
		var room string
		var filter any
		if len(args) > 1 {
			room, _ = args[1].(string)
		}
		if len(args) > 2 {
			filter = args[2]
		}
		var nsp any
		if len(args) > 0 {
			nsp = args[0]
		}
		ns, opts, err := a.target(nsp, filter)
		if err == nil && room == "" {
			err = errors.New("the room must be a non-empty string")
		}
		if err != nil {
			a.refuse(cmd, err, ack)
			return
		}
		ctx, cancel := context.WithTimeout(ctx, commandTimeout)
		defer cancel()
		if join {
			err = ns.SocketsJoin(ctx, opts, room)
		} else {
			err = ns.SocketsLeave(ctx, opts, room)
		}
		if err != nil {
			a.refuse(cmd, err, ack)
		}
	}
}

func (a *Admin) cmdDisconnect(ctx context.Context, _ *sio.Conn, args sio.Args, ack sio.Ack) {
	var nsp, filter any
	closeAll := false
	if len(args) > 0 {
		nsp = args[0]
	}
	if len(args) > 1 {
		closeAll, _ = args[1].(bool)
	}
	if len(args) > 2 {
		filter = args[2]
	}
	ns, opts, err := a.target(nsp, filter)
	if err != nil {
		a.refuse("_disconnect", err, ack)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if err := ns.DisconnectSockets(ctx, opts, closeAll); err != nil {
		a.refuse("_disconnect", err, ack)
	}
}

// --- per-socket events (development mode) ---------------------------------

// adminInstrument queues what the server reports for the admin sockets; the
// Admin's goroutine serializes and sends it, off the server's hot paths.
type adminInstrument struct{ a *Admin }

func (i adminInstrument) push(fn func()) {
	select {
	case i.a.queue <- fn:
	default:
		if i.a.cfg.OnDrop != nil {
			i.a.cfg.OnDrop()
		}
	}
}

func (a *Admin) send(event string, args ...any) {
	if err := a.ns.To().Emit(event, args...); err != nil {
		a.cfg.Log.Debug().Err(err).Str("event", event).Msg("admin: event not sent")
	}
}

func jsDate(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (i adminInstrument) Connected(c *sio.Conn) {
	now := time.Now()
	i.push(func() { i.a.send("socket_connected", serializeConn(c), jsDate(now)) })
}

func (i adminInstrument) Disconnected(c *sio.Conn, reason string) {
	now, nsp, id := time.Now(), c.Namespace(), c.ID()
	i.push(func() { i.a.send("socket_disconnected", nsp, id, reason, jsDate(now)) })
}

func (i adminInstrument) Updated(c *sio.Conn) {
	i.push(func() {
		i.a.send("socket_updated", map[string]any{"id": c.ID(), "nsp": c.Namespace(), "transport": c.Transport(), "data": c.SocketData()})
	})
}

func (i adminInstrument) RoomJoined(c *sio.Conn, room string) {
	now, nsp, id := time.Now(), c.Namespace(), c.ID()
	i.push(func() { i.a.send("room_joined", nsp, room, id, jsDate(now)) })
}

func (i adminInstrument) RoomLeft(c *sio.Conn, room string) {
	now, nsp, id := time.Now(), c.Namespace(), c.ID()
	i.push(func() { i.a.send("room_left", nsp, room, id, jsDate(now)) })
}

func (i adminInstrument) EventReceived(c *sio.Conn, event string, args sio.Args) {
	i.event("event_received", c, event, args)
}

func (i adminInstrument) EventSent(c *sio.Conn, event string, args sio.Args) {
	i.event("event_sent", c, event, args)
}

func (i adminInstrument) event(kind string, c *sio.Conn, event string, args sio.Args) {
	if c.Namespace() == i.a.cfg.Namespace {
		return // the admin's own traffic is not shown, as in Node
	}
	now, nsp, id := time.Now(), c.Namespace(), c.ID()
	all := append([]any{event}, args...)
	i.push(func() { i.a.send(kind, nsp, id, all, jsDate(now)) })
}

// serializeConn describes a local socket as Node's serialize does.
func serializeConn(c *sio.Conn) map[string]any {
	hs := c.Handshake()
	addr := hs.Address
	if v := hs.Headers["x-forwarded-for"]; v != "" {
		addr = v
	}
	if v := hs.Headers["cf-connecting-ip"]; v != "" {
		addr = v
	}
	clientID := c.ClientID()
	if len(clientID) > 12 {
		clientID = clientID[:12] // this information is quite sensitive (Node)
	}
	return map[string]any{
		"id":        c.ID(),
		"clientId":  clientID,
		"transport": c.Transport(),
		"nsp":       c.Namespace(),
		"data":      dataOrEmpty(c.SocketData()),
		"handshake": map[string]any{
			"address": addr, "headers": hs.Headers, "query": hs.Query, "issued": hs.Time.UnixMilli(),
			"secure": hs.Secure, "time": hs.Time.Format("Mon Jan 02 2006 15:04:05 GMT-0700 (MST)"),
			"url": hs.URL, "xdomain": hs.XDomain,
		},
		"rooms": append([]string{c.ID()}, c.Rooms()...),
	}
}

// serializeRemote describes another node's socket from what FetchSockets
// returns (a Node server puts clientId and transport in data._admin).
func serializeRemote(s sio.SocketInfo, nsp string) map[string]any {
	out := map[string]any{"id": s.ID, "nsp": nsp, "handshake": s.Handshake, "rooms": s.Rooms}
	data, _ := s.Data.(map[string]any)
	if adm, ok := data["_admin"].(map[string]any); ok {
		out["clientId"], out["transport"] = adm["clientId"], adm["transport"]
		rest := make(map[string]any, len(data))
		for k, v := range data {
			if k != "_admin" {
				rest[k] = v
			}
		}
		out["data"] = rest
	} else {
		out["data"] = dataOrEmpty(s.Data)
	}
	return out
}

func dataOrEmpty(v any) any {
	if v == nil {
		return map[string]any{}
	}
	return v
}

var _ sio.Instrument = adminInstrument{}
