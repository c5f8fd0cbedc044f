package sio

import (
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eio"
)

// Instrument observes every socket of every namespace, as the Admin UI's
// instrument(io) does in Node. Its methods are called on the server's hot
// paths, some with a namespace's lock held: they must not block, and must
// not call back into the Server, a Namespace or a Conn (queue what they
// get and do the work elsewhere).
type Instrument interface {
	// Connected: c has joined its namespace (after its CONNECT).
	Connected(c *Conn)
	// Disconnected: c has left, for Node's reason.
	Disconnected(c *Conn, reason string)
	// Updated: c's transport was upgraded or its data set.
	Updated(c *Conn)
	// RoomJoined and RoomLeft: c joined or left room (its own room aside).
	RoomJoined(c *Conn, room string)
	RoomLeft(c *Conn, room string)
	// EventReceived and EventSent: an event from or to c (socket.onAny and
	// socket.onAnyOutgoing: broadcasts and acks are not events sent).
	EventReceived(c *Conn, event string, args Args)
	EventSent(c *Conn, event string, args Args)
}

// Traffic is what the engine counts for an instrument: Engine.IO messages
// and their bytes each way, sessions opened, and sessions closed by reason.
type Traffic = eio.Traffic

// SetInstrument installs i (nil removes it). Call it before the server
// serves clients.
func (s *Server) SetInstrument(i Instrument) {
	if i == nil {
		s.inst.Store(nil)
		return
	}
	s.inst.Store(&i)
}

func (s *Server) instrument() Instrument {
	if p := s.inst.Load(); p != nil {
		return *p
	}
	return nil
}

// Traffic returns the engine's running counts (zero unless Options.CountTraffic).
func (s *Server) Traffic() *Traffic { return s.eng.Traffic() }

// Namespaces lists the namespaces of the server.
func (s *Server) Namespaces() []*Namespace {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Namespace, 0, len(s.nsps))
	for _, n := range s.nsps {
		out = append(out, n)
	}
	return out
}

// SkipServerMiddleware makes the namespace run its own connect middleware
// only, not the server's (Server.Use): for a namespace with its own
// authentication, the Admin UI's.
func (n *Namespace) SkipServerMiddleware() { n.ownMWOnly = true }

// ClientID is the connection's Engine.IO session id (Node's
// socket.client.id): a bearer secret, not to be shown whole.
func (c *Conn) ClientID() string { return c.cl.eng.ID() }

// ConnHandshake is what the Admin UI shows of a connection's handshake, as
// Node's socket.handshake.
type ConnHandshake struct {
	Headers map[string]string
	Query   map[string]string
	Time    time.Time
	Address string
	Secure  bool
	URL     string
	XDomain bool
}

// Handshake describes the request that opened the connection's session.
func (c *Conn) Handshake() ConnHandshake {
	hs := c.cl.eng.Handshake()
	h := ConnHandshake{
		Headers: make(map[string]string, len(hs.Header)), Query: map[string]string{},
		Time: hs.Time, Address: hostOnly(hs.ClientIP), Secure: hs.Secure, URL: hs.URL,
		XDomain: hs.Header.Get("Origin") != "",
	}
	for k, v := range hs.Header {
		if len(v) > 0 {
			h.Headers[strings.ToLower(k)] = v[0] // Node's header names
		}
	}
	for _, k := range [...]string{"authorization", "cookie"} { // credentials are not shown
		if _, ok := h.Headers[k]; ok {
			h.Headers[k] = "[redacted]"
		}
	}
	if _, ok := h.Query["token"]; ok {
		h.Query["token"] = "[redacted]"
	}
	for k, v := range hs.Query() {
		if len(v) > 0 {
			h.Query[k] = v[len(v)-1]
		}
	}
	return h
}

// OnUpgrade is the engine telling that the session moved to WebSocket.
func (c *client) OnUpgrade() {
	i := c.srv.instrument()
	if i == nil {
		return
	}
	c.mu.Lock()
	conns := append([]*Conn(nil), c.conns...)
	c.mu.Unlock()
	for _, conn := range conns {
		i.Updated(conn)
	}
}

// withAdminData adds what Node's admin instrument keeps in socket.data._admin
// (its UI reads clientId and transport of another node's sockets there) to
// a socket's data as other nodes get it, when it is a map (or nothing).
func withAdminData(data any, c *Conn) any {
	m, ok := data.(map[string]any)
	if data != nil && !ok {
		return data
	}
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	id := c.ClientID()
	if len(id) > 12 {
		id = id[:12]
	}
	out["_admin"] = map[string]any{"clientId": id, "transport": c.Transport()}
	return out
}

// SocketData is the connection's data as other nodes and the Admin UI see
// it: what SetData stored (plain), else its user.
func (c *Conn) SocketData() any { return c.plainSocketData() }

// Conns lists the namespace's connections on this node.
func (n *Namespace) Conns() []*Conn {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*Conn, 0, len(n.sockets))
	for _, c := range n.sockets {
		out = append(out, c)
	}
	return out
}
