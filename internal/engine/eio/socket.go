package eio

import (
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eioparser"
)

// Handler receives the events of one session.
type Handler interface {
	// OnMessage gets each Engine.IO message of the session, one at a time, in order, never
	// concurrently (whatever the transport; during an upgrade too). data is only valid during the
	// call. It may block for backpressure: the session's input waits meanwhile (the WebSocket
	// reader stops reading, a polling POST waits for its answer), so it must not wait for this
	// session's later input, and it must return once [Socket.Done] is closed. OnClose is not
	// called before it returns.
	OnMessage(data []byte, binary bool)
	// OnClose is called exactly once when the session ends, after the last OnMessage, with Node's
	// reason: "transport close", "transport error", "ping timeout", "parse error", "forced close"
	// (Close/CloseNow) or "forced server close" (Server.Close). It is never called from inside
	// Send, Close or CloseNow (it may run on another goroutine after they return), so they may be
	// called with locks held that OnClose takes.
	OnClose(reason string)
}

type nopHandler struct{}

func (nopHandler) OnMessage([]byte, bool) {}
func (nopHandler) OnClose(string)         {}

// Handshake is copied from the request that opened the session; nothing else of it is kept.
type Handshake struct {
	Header     http.Header
	RemoteAddr string // r.RemoteAddr
	ClientIP   string // the client's IP (Options.ClientIP), what the session is bound to
	Time       time.Time
	Secure     bool   // r.TLS != nil
	URL        string // r.URL.RequestURI()
	Host       string
}

// Query parses the query of the request that opened the session (kept as the
// URL only: a parsed copy per connection would cost more than parsing it again
// for the rare reader).
func (h *Handshake) Query() url.Values {
	u, err := url.ParseRequestURI(h.URL)
	if err != nil {
		return url.Values{}
	}
	return u.Query()
}

type sockState uint8

const (
	stateOpen    sockState = iota
	stateClosing           // Close called: draining the queue, nothing more accepted
	stateClosed
)

type timerMode uint8

const (
	timerPing  timerMode = iota // next ping due at the deadline
	timerPong                   // ping sent, pong due at the deadline
	timerClose                  // graceful close must be over by the deadline
)

// Socket is one Engine.IO session.
type Socket struct {
	srv *Server
	id  string
	hs  *Handshake
	b64 bool // the client wants binary as base64 text (b64 query parameter)
	v3  bool // Engine.IO protocol 3 (eio3.go)

	admitted    func() // gives back what Options.Admit reserved; run once via releaseAdmission
	releaseOnce sync.Once

	// dmu is held while packets are handled, so that a POST and the WebSocket reader never deliver
	// concurrently and a POST payload is delivered as a whole.
	dmu sync.Mutex

	mu          sync.Mutex
	h           Handler
	state       sockState
	reason      string        // OnClose reason, once closed
	done        chan struct{} // closed when the session ends; made by Done, nil until asked for
	closeReason string        // reason a graceful close ends with
	delivering  bool          // OnMessage is running: it calls OnClose if the session closes meanwhile
	fire        bool          // OnClose is due: s.unlock calls it

	queue    []*Message
	spare    []*Message // an emptied queue kept for reuse
	queued   int        // bytes in queue
	inflight int        // bytes taken by a write in progress

	poll   *polling // long-polling transport; nil on WebSocket (after the upgrade too)
	ws     *wsConn  // WebSocket transport
	probe  *wsConn  // WebSocket being upgraded to
	probed bool     // "3probe" sent: polls are released with noops until the upgrade ends
	upTmr  *time.Timer

	timer            *time.Timer // the one heartbeat/close timer
	tmode            timerMode
	tdeadline        time.Time
	refreshed        bool // the pong timeout was already extended once by another packet
	corked           int  // Cork depth: queued messages wait for Uncork (so that replies coalesce)
	clientClosedPoll bool // the client closed the session over polling with no poll pending

	zws atomic.Bool // the transport is a WebSocket that negotiated permessage-deflate
}

func newSocket(srv *Server, id string, hs *Handshake) *Socket {
	return &Socket{srv: srv, id: id, hs: hs, h: nopHandler{}}
}

func (s *Socket) releaseAdmission() {
	if s.admitted != nil {
		s.releaseOnce.Do(s.admitted)
	}
}

// closedChan is what Done returns once the session has ended.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done returns a channel closed when the session ends (as soon as it is closed, before OnClose
// runs): a Handler blocked in OnMessage for backpressure waits on it too. The channel is made on
// the first call, so a session nobody asks costs nothing.
func (s *Socket) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		if s.state == stateClosed {
			return closedChan
		}
		s.done = make(chan struct{})
	}
	return s.done
}

// limit reports a limit the client hit to Options.OnLimit; call it without s.mu held.
func (srv *Server) limit(name string) {
	if f := srv.o.OnLimit; f != nil {
		f(name)
	}
}

// ID returns the session id.
func (s *Socket) ID() string { return s.id }

// Handshake returns the copy of the request that opened the session. Do not modify it.
func (s *Socket) Handshake() *Handshake { return s.hs }

// SetHandler sets the session's handler; call it from OnConnection.
func (s *Socket) SetHandler(h Handler) {
	if h == nil {
		h = nopHandler{}
	}
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
}

// Transport returns the current transport: "polling" or "websocket".
func (s *Socket) Transport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != nil {
		return "websocket"
	}
	return "polling"
}

// Send appends msgs to the outbound queue, contiguous and in order. It returns false when the
// session is closing or closed, or when the queue would exceed MaxBuffered (the session is then
// closed with "transport error"). It never blocks on the network.
func (s *Socket) Send(msgs ...*Message) bool {
	if s.zws.Load() {
		// Compressed here, by the sender, rather than by the one flusher all connections share.
		for _, m := range msgs {
			if s.compresses(m) {
				m.deflated()
			}
		}
	}
	s.mu.Lock()
	if s.state != stateOpen {
		s.mu.Unlock()
		return false
	}
	n := 0
	for _, m := range msgs {
		n += m.size()
	}
	if s.queued+s.inflight+n > s.srv.o.MaxBuffered {
		s.srv.log.Debug().Str("sid", s.id).Int("queued", s.queued+s.inflight).Msg("eio: client too slow, closing")
		s.closeLocked("transport error")
		s.unlockAPI()
		s.srv.limit(LimitSlowConsumer)
		return false
	}
	s.pushLocked(msgs, n)
	s.mu.Unlock()
	if t := s.srv.traffic; t != nil {
		t.PacketsOut.Add(int64(len(msgs)))
		t.BytesOut.Add(int64(n))
	}
	return true
}

// SendVolatile is Send for what may be lost (Node's volatile emits): msgs
// are dropped unless the transport is writable now, a WebSocket with nothing
// queued or being written, or a pending poll. It returns whether they were
// queued.
func (s *Socket) SendVolatile(msgs ...*Message) bool {
	s.mu.Lock()
	writable := s.writableLocked()
	s.mu.Unlock()
	if !writable {
		return false
	}
	return s.Send(msgs...)
}

// writableLocked is Node's transport.writable: nothing waits to be written
// and the transport can take a write now.
func (s *Socket) writableLocked() bool {
	return s.state == stateOpen && len(s.queue) == 0 && s.inflight == 0 && s.probe == nil &&
		(s.ws != nil && !s.ws.flushing || s.ws == nil && s.poll != nil && s.poll.wake != nil)
}

func (s *Socket) pushLocked(msgs []*Message, n int) {
	if s.queue == nil {
		s.queue, s.spare = s.spare, nil
	}
	s.queue = append(s.queue, msgs...)
	s.queued += n
	if s.corked == 0 {
		s.kickDeferredLocked()
	}
}

// kickDeferredLocked hands a WebSocket with something to write to the
// server's flusher, which writes the ready connections one after the other:
// what is queued for a connection meanwhile (the next broadcasts) goes out in
// the same write. Polling wakes its pending request as before.
func (s *Socket) kickDeferredLocked() {
	if s.ws == nil {
		s.kickLocked()
		return
	}
	if s.ws.takeFlushLocked() {
		s.srv.flusher.add(s.ws)
	}
}

// Cork holds what Send queues until the matching Uncork, so that what a
// handler sends while processing input (its ack, a broadcast it is a member
// of) leaves in one write. Corks nest; a close is not held.
func (s *Socket) Cork() {
	s.mu.Lock()
	s.corked++
	s.mu.Unlock()
}

// Uncork releases a Cork and writes what was held. On WebSocket the caller
// writes it itself, at once: the replies to a client's input (its acks) then
// leave before the deliveries of broadcasts to other connections that are
// waiting for their writers, which keep coalescing what arrives meanwhile.
func (s *Socket) Uncork() {
	s.mu.Lock()
	if s.corked > 0 {
		s.corked--
	}
	inline := false
	if s.corked == 0 && len(s.queue) > 0 && s.state != stateClosed {
		if s.ws != nil {
			inline = s.ws.takeFlushLocked()
		} else {
			s.kickLocked()
		}
	}
	c := s.ws
	s.mu.Unlock()
	if inline {
		c.flush()
	}
}

// Flush writes what is queued now on a WebSocket, corked or not, and returns
// once it is written: what is sent next leaves in a later write. (Polling
// answers carry the whole queue anyway.)
func (s *Socket) Flush() {
	s.mu.Lock()
	inline := len(s.queue) > 0 && s.state != stateClosed && s.ws != nil && s.ws.takeFlushLocked()
	c := s.ws
	s.mu.Unlock()
	if inline {
		c.flush()
	}
}

// takeLocked removes the whole queue for a write; the caller gives it back with doneLocked.
func (s *Socket) takeLocked() []*Message {
	q := s.queue
	s.queue = nil
	s.inflight, s.queued = s.queued, 0
	return q
}

func (s *Socket) doneLocked(q []*Message) {
	s.inflight = 0
	clear(q)
	if cap(q) <= 16 && s.spare == nil && s.state != stateClosed {
		s.spare = q[:0]
	}
}

// kickLocked gets the queue moving: starts the WebSocket writer or wakes the pending poll.
func (s *Socket) kickLocked() {
	if s.ws != nil {
		s.ws.kickLocked()
	} else if s.poll != nil {
		s.poll.wakeLocked()
	}
}

// Close closes the session gracefully: what is already queued is delivered, then the transport is
// closed (polling: a close packet after the data; WebSocket: a close frame). OnClose gets
// "forced close".
func (s *Socket) Close() { s.closeGracefully("forced close") }

func (s *Socket) closeGracefully(reason string) {
	s.mu.Lock()
	if s.state == stateOpen {
		s.state = stateClosing
		s.closeReason = reason
		s.armLocked(timerClose, s.srv.closeTimeout)
		s.kickLocked() // the writer (or the pending poll) finishes the close once the queue is empty
	}
	s.unlockAPI()
}

// CloseNow closes the transport at once; queued data is dropped. OnClose gets "forced close".
func (s *Socket) CloseNow() {
	s.mu.Lock()
	s.closeLocked("forced close")
	s.unlockAPI()
}

// closeLocked ends the session: it drops the queue, closes the transports and makes OnClose due.
func (s *Socket) closeLocked(reason string) {
	if s.state == stateClosed {
		return
	}
	s.state = stateClosed
	s.reason = reason
	if t := s.srv.traffic; t != nil {
		t.close(reason)
	}
	if s.done != nil {
		close(s.done)
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.probe != nil {
		s.abortProbeLocked()
	}
	s.queue, s.spare, s.queued = nil, nil, 0
	if s.poll != nil {
		s.poll.closeLocked()
	}
	if s.ws != nil {
		s.ws.shutdownLocked(closeNormal)
	}
	if !s.delivering {
		s.fire = true
	}
	s.srv.log.Debug().Str("sid", s.id).Str("reason", reason).Msg("eio: session closed")
}

// unlock releases s.mu and, if the session just ended, removes it and calls OnClose.
func (s *Socket) unlock() { s.release(false) }

// unlockAPI is unlock for Send, Close and CloseNow: OnClose then runs on its own goroutine, so
// that the application may call them while holding a lock its OnClose takes.
func (s *Socket) unlockAPI() { s.release(true) }

func (s *Socket) release(async bool) {
	fire, h, reason, closedPoll := s.fire, s.h, s.reason, s.clientClosedPoll
	s.fire = false
	s.mu.Unlock()
	if !fire {
		return
	}
	s.srv.remove(s, closedPoll)
	if async {
		go h.OnClose(reason)
	} else {
		h.OnClose(reason)
	}
}

// armLocked sets the session's one timer. Stale expiries are recognised by the deadline.
func (s *Socket) armLocked(mode timerMode, d time.Duration) {
	s.tmode = mode
	s.tdeadline = time.Now().Add(d)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.onTimer)
	} else {
		s.timer.Reset(d)
	}
}

func (s *Socket) onTimer() {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	if d := time.Until(s.tdeadline); d > 0 { // re-armed after this expiry was scheduled
		s.timer.Reset(d)
		s.mu.Unlock()
		return
	}
	switch s.tmode {
	case timerPing:
		s.refreshed = false
		s.pushLocked([]*Message{pingPacket}, pingPacket.size())
		s.armLocked(timerPong, s.srv.o.PingTimeout)
	case timerPong:
		s.closeLocked("ping timeout")
	case timerClose:
		s.closeLocked(s.closeReason)
	}
	s.unlock()
}

// handlePacket processes one packet from the client's current transport; s.dmu must be held. It
// returns false once the session is closed.
func (s *Socket) handlePacket(p eioparser.Packet) bool {
	s.mu.Lock()
	if s.state != stateOpen { // Node ignores packets while closing
		open := s.state != stateClosed
		s.unlock()
		return open
	}
	if s.tmode == timerPong && !s.refreshed && !s.v3 && (p.Binary || p.Type != eioparser.Pong) {
		// Node: any packet while waiting for the pong extends the timeout, once.
		s.refreshed = true
		s.armLocked(timerPong, s.srv.o.PingTimeout)
	}
	switch {
	case p.Binary || p.Type == eioparser.Message:
		if t := s.srv.traffic; t != nil {
			t.PacketsIn.Add(1)
			t.BytesIn.Add(int64(len(p.Data)))
		}
		s.delivering = true
		h := s.h
		s.mu.Unlock()
		s.srv.flusher.throttle()
		h.OnMessage(p.Data, p.Binary)
		s.mu.Lock()
		s.delivering = false
		if s.state == stateClosed { // closed during OnMessage: OnClose is ours to call
			s.fire = true
		}
	case p.Type == eioparser.Pong && s.v3, p.Type == eioparser.Ping && !s.v3:
		s.closeLocked("transport error") // Node: "invalid heartbeat direction"
	case p.Type == eioparser.Pong:
		if s.tmode == timerPong {
			s.armLocked(timerPing, s.srv.o.PingInterval)
		}
	case p.Type == eioparser.Ping: // protocol 3: the client pings, the server answers
		s.pushLocked([]*Message{v3Pong}, v3Pong.size())
		s.armLocked(timerPong, s.srv.o.PingInterval+s.srv.o.PingTimeout)
	case p.Type == eioparser.Close:
		// Node ignores it on WebSocket (the session then ends at the ping timeout); the protocol
		// says the transport may be closed, and some clients send it before closing.
		s.clientClosedPoll = s.ws == nil && s.poll != nil && !s.poll.getActive // its last poll may be on its way (closedpolls.go)
		s.closeLocked("transport close")
	}
	open := s.state != stateClosed
	s.unlock()
	return open
}

// parseError closes the session after an undecodable packet.
func (s *Socket) parseError() {
	s.mu.Lock()
	s.closeLocked("parse error")
	s.unlock()
}
