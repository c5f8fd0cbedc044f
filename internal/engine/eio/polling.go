package eio

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eioparser"
)

// upgradePollInterval is how long a poll waits during an upgrade before it is released with a
// noop (Node's "check" interval), so that the client can pause polling and finish the upgrade.
const upgradePollInterval = 100 * time.Millisecond

// polling is the long-polling transport state of a session; guarded by Socket.mu.
type polling struct {
	getActive  bool
	wake       chan struct{} // closed to wake the pending GET; nil when none waits
	postActive bool
	postRC     *http.ResponseController // of the POST whose body is being read
}

func (p *polling) wakeLocked() {
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
}

// closeLocked releases the pending GET (it answers a close packet) and stops a POST body read.
func (p *polling) closeLocked() {
	p.wakeLocked()
	if p.postRC != nil {
		_ = p.postRC.SetReadDeadline(time.Now())
	}
}

// serveGet answers a poll with the whole queue, waiting until there is something to send.
func (s *Socket) serveGet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	p := s.poll
	if p == nil { // upgraded meanwhile
		s.mu.Unlock()
		writeError(w, errBadRequest)
		return
	}
	if p.getActive { // Node: overlapping polls close the session
		s.closeLocked("transport error")
		s.unlock()
		writeError(w, errBadRequest)
		return
	}
	p.getActive = true
	released := false // woken or timed out during an upgrade: answer a noop if nothing else
	// A poll that arrives while a WebSocket is attached for an upgrade and is
	// still waiting when that upgrade completes was sent after the client's
	// upgrade packet (a client pauses polling before sending it): it gets the
	// 400 of a poll after the upgrade, as from Node, which reads the
	// WebSocket's packets before a new request.
	duringProbe := s.probe != nil
	var out []*Message
	var taken bool
	for {
		if duringProbe && s.poll != p {
			p.getActive = false
			s.unlock()
			writeError(w, errBadRequest)
			return
		}
		var ok bool
		if out, taken, ok = s.pollLocked(p, released); ok {
			break
		}
		wake := make(chan struct{})
		p.wake = wake
		var tick <-chan time.Time
		var t *time.Timer
		if s.probed {
			t = time.NewTimer(upgradePollInterval)
			tick = t.C
		}
		s.mu.Unlock()
		aborted := false
		select {
		case <-wake:
		case <-tick:
		case <-r.Context().Done():
			aborted = true
		}
		if t != nil {
			t.Stop()
		}
		s.mu.Lock()
		if p.wake == wake {
			p.wake = nil
		}
		if aborted {
			p.getActive = false
			// The client is gone, unless the polling transport is being replaced anyway.
			if s.poll == p && s.probe == nil {
				s.closeLocked("transport close")
			}
			s.unlock()
			return
		}
		released = true
	}
	p.getActive = false
	s.unlock() // a graceful close may have completed in pollLocked
	err := s.writePoll(w, r, out)
	s.mu.Lock()
	if taken {
		s.doneLocked(out)
	}
	slow := errors.Is(err, os.ErrDeadlineExceeded) && s.state != stateClosed
	switch {
	case slow: // the client does not read its answer: what it holds up is lost anyway
		s.srv.log.Debug().Str("sid", s.id).Msg("eio: poll answer timed out, closing a slow client")
		s.closeLocked("transport error")
	case err != nil && taken && s.state != stateClosed:
		// The answer failed with messages taken off the queue (the client went
		// away mid-answer). They are not put back: the client may have read
		// part of them (a failed write does not tell how much arrived), a
		// later GET, or the WebSocket of an upgrade, may already have written
		// what was queued after them (getActive was cleared before the write),
		// and an Engine.IO client whose poll fails abandons the session
		// anyway. The session is closed instead, as a dead WebSocket is:
		// "transport close" (or the reason of the graceful close under way)
		// is recoverable, so the client's next connection recovers from the
		// last offset it did receive and gets the rest replayed, once (what
		// has no offset, an ack, is lost as it is with a dead WebSocket).
		reason := "transport close"
		if s.state == stateClosing {
			reason = s.closeReason
		}
		s.srv.log.Debug().Str("sid", s.id).Err(err).Msg("eio: poll answer failed, closing the session")
		s.closeLocked(reason)
	}
	s.unlock()
	if slow {
		s.srv.limit(LimitSlowConsumer)
	}
}

// writePoll writes a poll's answer within WriteTimeout, so that a client that
// does not read it holds its data (and the request) that long at most.
func (s *Socket) writePoll(w http.ResponseWriter, r *http.Request, out []*Message) error {
	rc := http.NewResponseController(w)
	if rc.SetWriteDeadline(time.Now().Add(s.srv.o.WriteTimeout)) != nil {
		// A writer without deadlines: net/http's own timeouts apply. What it
		// reports failing is reported (serveGet must not lose it silently).
		return s.writePayload(w, r, out)
	}
	err := s.writePayload(w, r, out)
	if err == nil {
		err = rc.Flush() // written under the deadline, not after the handler returns
	}
	// The connection may serve other requests (keep-alive): no deadline of ours is left on it.
	_ = rc.SetWriteDeadline(time.Time{})
	return err
}

// pollLocked decides what a poll answers: out, taken from the queue or not; ok is false when the
// poll must wait.
func (s *Socket) pollLocked(p *polling, released bool) (out []*Message, taken, ok bool) {
	switch {
	case s.poll != p: // discarded by the upgrade
		return []*Message{noopPacket}, false, true
	case s.state == stateClosed && s.reason == "transport close":
		return []*Message{noopPacket}, false, true // the client closed: just release its poll (Node)
	case s.state == stateClosed:
		return []*Message{closePacket}, false, true
	case len(s.queue) > 0:
		// In a graceful close the close packet goes in the next poll, as in Node (which flushes
		// the buffer, then closes): in one payload with the data, socket.io-client handles the
		// close before a DISCONNECT packet that came first (it defers packets to a microtask).
		return s.takeLocked(), true, true
	case s.state == stateClosing:
		s.closeLocked(s.closeReason)
		return []*Message{closePacket}, false, true
	case s.probed && released:
		return []*Message{noopPacket}, false, true
	}
	return nil, false, false
}

var separator = []byte{eioparser.Separator}

// writePayload writes msgs as one long-polling payload, compressed as Node's polling transport
// does (Compression.HTTP); it returns the first write error.
func (srv *Server) writePayload(w http.ResponseWriter, r *http.Request, msgs []*Message) error {
	n := len(msgs) - 1
	for _, m := range msgs {
		n += len(m.polling())
	}
	if c := &srv.o.Compression; c.HTTP && n >= c.HTTPThreshold {
		if enc := acceptEncoding(r.Header.Values("Accept-Encoding")); enc != encIdentity {
			buf := scratchBufs.Get().(*bytes.Buffer)
			defer putScratch(buf)
			compressPayload(buf, enc, msgs)
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=UTF-8")
			h.Set("Content-Encoding", encodingNames[enc])
			h.Set("Content-Length", strconv.Itoa(buf.Len()))
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			_, err := w.Write(buf.Bytes())
			return err
		}
	}
	return writePayload(w, msgs)
}

// writePayload writes msgs as one uncompressed long-polling payload.
func writePayload(w http.ResponseWriter, msgs []*Message) error {
	n := len(msgs) - 1
	for _, m := range msgs {
		n += len(m.polling())
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(n))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	for i, m := range msgs {
		if i > 0 {
			if _, err := w.Write(separator); err != nil {
				return err
			}
		}
		if _, err := w.Write(m.polling()); err != nil {
			return err
		}
	}
	return nil
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// servePost reads a payload sent by the client and handles its packets in order.
func (s *Socket) servePost(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	p := s.poll
	switch {
	case p == nil:
		s.mu.Unlock()
		writeError(w, errBadRequest)
		return
	case p.postActive, r.Header.Get("Content-Type") == "application/octet-stream" && !s.v3:
		// Node: an overlapping POST, or a binary body (EIO 3 only), is an error of the session.
		s.closeLocked("transport error")
		s.unlock()
		writeError(w, errBadRequest)
		return
	}
	p.postActive = true
	p.postRC = http.NewResponseController(w)
	s.mu.Unlock()

	max := s.srv.o.MaxPayload
	bp := bodyPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			*bp = (*bp)[:0]
			bodyPool.Put(bp)
		}
	}()
	var err error
	if r.ContentLength > max {
		err = eioparser.ErrPayloadTooLarge
	} else {
		*bp, err = eioparser.ReadPayload((*bp)[:0], r.Body, max)
	}

	s.mu.Lock()
	p.postActive, p.postRC = false, nil
	if err != nil {
		// Node answers 413 and leaves the session to time out; its data is lost, so end it now.
		s.closeLocked("transport error")
		s.unlock()
		if errors.Is(err, eioparser.ErrPayloadTooLarge) {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}
		return
	}
	s.mu.Unlock()

	s.dmu.Lock()
	packets := eioparser.SplitPayload(*bp)
	if s.v3 {
		packets = eioparser.SplitPayloadV3(*bp, r.Header.Get("Content-Type") == "application/octet-stream")
	}
	for pkt, err := range packets {
		if err != nil {
			s.parseError()
			break
		}
		if !s.handlePacket(pkt) {
			break
		}
	}
	s.dmu.Unlock()

	s.mu.Lock()
	refused := s.state == stateClosed && (s.reason == "parse error" || s.reason == "transport error")
	s.mu.Unlock()
	if refused { // Node destroys the request; the protocol test suite expects a 400
		writeError(w, errBadRequest)
		return
	}

	// text/html rather than text/plain avoids a download dialog on some user agents (Node, GH-43).
	h := w.Header()
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", "2")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok"))
}
