package eio

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/switchboard/switchboard/internal/engine/eioparser"
)

const (
	readBufSize = 512         // initial read buffer of a connection
	maxKeepBuf  = 4 << 10     // larger read/assembly buffers are released after the message
	closeWait   = time.Second // how long a closing connection waits for the peer's close frame
	// maxCtrl bounds the control frames waiting for a write (pongs, "3probe", the close frame),
	// so that a client that sends pings without reading cannot grow them: one pong at most is
	// pending (a newer ping replaces it, as RFC 6455 allows), and extra probe answers are dropped.
	maxCtrl = 4
)

var (
	closeNormal = ws.CompiledCloseNormalClosure
	errPeerGone = errors.New("eio: websocket closed by the peer")
)

// protocolError is a WebSocket protocol violation by the client: the connection is closed with
// code and the session ends with "transport error".
type protocolError struct{ code ws.StatusCode }

func (e *protocolError) Error() string {
	return "eio: websocket protocol error " + strconv.Itoa(int(e.code))
}

var (
	errProtocol = &protocolError{ws.StatusProtocolError}
	errTooBig   = &protocolError{ws.StatusMessageTooBig}
	errBadUTF8  = &protocolError{ws.StatusInvalidFramePayloadData}
	// A compressed message that does not inflate: 1007, as Node's ws.
	errBadDeflate = &protocolError{ws.StatusInvalidFramePayloadData}
)

func (e *protocolError) frame() []byte {
	switch e.code {
	case ws.StatusMessageTooBig:
		return ws.CompiledCloseMessageTooBig
	case ws.StatusInvalidFramePayloadData:
		return ws.CompiledCloseInvalidFramePayloadData
	}
	return ws.CompiledCloseProtocolError
}

// wsConn is one WebSocket connection: the session's transport, or the one it is upgrading to.
//
// It has exactly one goroutine at rest, its reader. A writer goroutine runs only while there is
// something to write (see kickLocked).
type wsConn struct {
	s    *Socket
	conn net.Conn // set under s.mu; nil until the upgrade is done

	// Guarded by s.mu.
	ctrl        [][]byte  // raw frames written before queued messages (pongs, "3probe", close)
	pongAt      int       // 1 + index in ctrl of the pending pong; 0 when none is pending
	closeBy     time.Time // write deadline of the closing handshake (zero until then)
	flushing    bool      // the writer goroutine is running
	closeQueued bool      // the close frame is in ctrl: nothing is written after it
	closeSent   bool      // the close frame was written (or writing failed)
	rdone       bool      // the reader has exited

	// Owned by the reader goroutine.
	active   bool // this is the session's transport (not an upgrade probe)
	rbuf     []byte
	r, w     int // unread bytes are rbuf[r:w]
	hb       [ws.MaxHeaderSize - 2]byte
	frag     []byte // fragmented message being assembled
	fragOp   ws.OpCode
	fragging bool
	zmsg     bool    // the message being read is compressed (RSV1 on its first frame)
	zbuf     *[]byte // its inflated bytes (from inflateBufs) until it is handled

	deflate bool // permessage-deflate was negotiated; set before the connection is used
}

// attach takes over a hijacked connection. Bytes net/http already buffered are moved into our
// own small buffer, so that its bufio reader and writer can be released.
func (c *wsConn) attach(conn net.Conn, rw *bufio.ReadWriter) {
	n := 0
	if rw != nil {
		n = rw.Reader.Buffered()
	}
	c.rbuf = make([]byte, max(readBufSize, n))
	if n > 0 {
		c.w, _ = rw.Reader.Read(c.rbuf[:n])
	}
	// net/http may have left a deadline of its own (an http.Server's ReadTimeout, say): from now
	// on the connection's deadlines are ours.
	_ = conn.SetDeadline(time.Time{})
	c.conn = conn
}

// upgradeWS answers the WebSocket handshake, accepting permessage-deflate when enabled and
// offered; deflate tells whether it was.
func (srv *Server) upgradeWS(w http.ResponseWriter, r *http.Request, header http.Header) (conn net.Conn, rw *bufio.ReadWriter, deflate bool, err error) {
	up := ws.HTTPUpgrader{Header: header}
	var ext *wsflate.Extension
	if srv.o.Compression.PerMessageDeflate {
		ext = &wsflate.Extension{Parameters: deflateParams}
		up.Negotiate = ext.Negotiate
	}
	conn, rw, _, err = up.Upgrade(r, w)
	if ext != nil {
		_, deflate = ext.Accepted()
	}
	return conn, rw, deflate, err
}

// handshakeWebSocket opens a WebSocket-only session.
func (srv *Server) handshakeWebSocket(s *Socket, w http.ResponseWriter, r *http.Request) {
	var header http.Header
	if srv.cookie != "" {
		header = http.Header{"Set-Cookie": {srv.cookie}}
	}
	conn, rw, deflate, err := srv.upgradeWS(w, r, header)
	if err != nil { // gobwas has answered the client
		s.releaseAdmission()
		if conn != nil {
			_ = conn.Close()
		}
		return
	}
	c := &wsConn{s: s, active: true, deflate: deflate}
	c.attach(conn, rw)
	s.ws = c
	s.zws.Store(deflate)
	if !srv.register(s) {
		_ = conn.Close()
		return
	}
	open := s.openPacket(srv.openTailWS)
	s.mu.Lock()
	s.pushLocked([]*Message{open}, open.size())
	s.mu.Unlock()
	s.start()
	go c.readLoop()
}

// upgrade handles a WebSocket upgrade request of an existing polling session (Node's
// _maybeUpgrade): the connection probes ("2probe"/"3probe"), then switches ("5").
func (srv *Server) upgrade(s *Socket, w http.ResponseWriter, r *http.Request) {
	c := &wsConn{s: s}
	s.mu.Lock()
	if s.state != stateOpen {
		s.mu.Unlock()
		writeUpgradeError(w, errBadRequest)
		return
	}
	if s.poll == nil || s.probe != nil {
		// Already upgraded, or upgrading: Node accepts the WebSocket and
		// closes it at once; the session goes on untouched.
		s.mu.Unlock()
		if conn, _, _, err := (ws.HTTPUpgrader{}).Upgrade(r, w); err == nil {
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_ = ws.WriteFrame(conn, ws.NewCloseFrame(nil))
			_ = conn.Close()
		} else if conn != nil {
			_ = conn.Close()
		}
		return
	}
	s.probe = c // reserved: a concurrent upgrade is refused
	s.mu.Unlock()

	conn, rw, deflate, err := srv.upgradeWS(w, r, nil)
	s.mu.Lock()
	if err != nil || s.probe != c { // failed, or aborted (session closed) meanwhile
		if s.probe == c {
			s.probe = nil
		}
		s.unlock()
		if conn != nil {
			_ = conn.Close()
		}
		return
	}
	c.deflate = deflate
	c.attach(conn, rw)
	s.upTmr = time.AfterFunc(srv.o.UpgradeTimeout, func() {
		s.mu.Lock()
		if s.probe == c {
			s.srv.log.Debug().Str("sid", s.id).Msg("eio: upgrade timed out")
			s.abortProbeLocked()
		}
		s.unlock()
	})
	s.mu.Unlock()
	go c.readLoop()
}

// abortProbeLocked gives up the upgrade in progress and closes its connection only.
func (s *Socket) abortProbeLocked() {
	c := s.probe
	s.probe, s.probed = nil, false
	if s.upTmr != nil {
		s.upTmr.Stop()
		s.upTmr = nil
	}
	c.shutdownLocked(closeNormal)
}

// onProbePacket handles a packet on a connection the session is upgrading to.
func (s *Socket) onProbePacket(c *wsConn, p eioparser.Packet, err error) {
	s.mu.Lock()
	upgraded := false
	defer func() {
		h := s.h
		s.unlock()
		if u, ok := h.(upgradeHandler); ok && upgraded {
			u.OnUpgrade()
		}
	}()
	if s.probe != c {
		return
	}
	switch {
	case err == nil && !p.Binary && p.Type == eioparser.Ping && string(p.Data) == "probe":
		if len(c.ctrl) < maxCtrl && !c.closeQueued { // repeated probes to a client that does not read: dropped
			c.ctrl = append(c.ctrl, probePong.frame)
			c.kickLocked()
		}
		s.probed = true
		if s.poll != nil {
			s.poll.wakeLocked() // release the pending poll with a noop so the client can pause
		}
	case err == nil && !p.Binary && p.Type == eioparser.Upgrade:
		s.probe, s.probed = nil, false
		if s.upTmr != nil {
			s.upTmr.Stop()
			s.upTmr = nil
		}
		if old := s.poll; old != nil {
			s.poll = nil
			old.wakeLocked() // a pending poll answers a noop
		}
		s.ws = c
		s.zws.Store(c.deflate)
		c.active = true // we are c's reader goroutine
		c.kickLocked()  // queued messages now go here (and a pending graceful close completes)
		upgraded = true
	default:
		s.abortProbeLocked()
	}
}

// shutdownLocked queues frame (a close frame) as the last frame of the connection and bounds the
// time left to write it and to read the peer's answer.
func (c *wsConn) shutdownLocked(frame []byte) {
	if c.closeQueued {
		return
	}
	c.closeQueued = true
	if c.conn == nil { // upgrade not done: its goroutine closes the connection
		return
	}
	c.ctrl = append(c.ctrl, frame)
	deadline := time.Now().Add(closeWait)
	c.closeBy = deadline
	_ = c.conn.SetWriteDeadline(deadline)
	if !c.rdone {
		_ = c.conn.SetReadDeadline(deadline)
	}
	c.kickLocked()
}

// kickLocked starts the writer goroutine unless it runs. It exits once nothing is left to write,
// so an idle connection has none.
func (c *wsConn) kickLocked() {
	if !c.flushing && !c.closeSent && c.conn != nil {
		c.flushing = true
		go c.flush()
	}
}

// takeFlushLocked claims the writer role for the calling goroutine: true
// means the caller must run c.flush itself (without s.mu held).
func (c *wsConn) takeFlushLocked() bool {
	if !c.flushing && !c.closeSent && c.conn != nil {
		c.flushing = true
		return true
	}
	return false
}

var buffersPool = sync.Pool{New: func() any { return new(net.Buffers) }}

// flush writes control frames and the session's queue with vectored writes until both are empty.
func (c *wsConn) flush() { c.flushLoop(false) }

// sharedStall bounds a write on the shared flusher: a client that does not
// take it in time is finished on a goroutine of its own, so that one slow
// reader never holds up the deliveries to the others.
const sharedStall = 2 * time.Millisecond

// flushLoop is flush; shared is set when it runs on the server's flusher.
func (c *wsConn) flushLoop(shared bool) {
	s := c.s
	bp := buffersPool.Get().(*net.Buffers)
	bufs := (*bp)[:0]
	defer func() {
		clear(bufs[:cap(bufs)])
		if cap(bufs) <= 1024 {
			*bp = bufs[:0]
			buffersPool.Put(bp)
		}
	}()
	var msgs []*Message
	wroteClose, wrote := false, false
	s.mu.Lock()
	for {
		if msgs != nil {
			s.doneLocked(msgs)
			msgs = nil
		}
		if wroteClose {
			c.closeSent = true
		}
		if shared && wrote {
			// One write per turn: what is left (or came meanwhile) waits
			// for the next round, behind the other ready connections.
			s.unlock()
			s.srv.flusher.add(c)
			return
		}
		bufs = bufs[:0]
		if !c.closeSent {
			bufs = append(bufs, c.ctrl...)
			wroteClose = c.closeQueued // the close frame, if queued, is the last of ctrl
			clear(c.ctrl)
			c.ctrl, c.pongAt = c.ctrl[:0], 0
			if s.ws == c && !c.closeQueued {
				if len(s.queue) > 0 {
					msgs = s.takeLocked()
					for _, m := range msgs {
						bufs = c.appendFrame(bufs, m)
					}
				} else if s.state == stateClosing {
					s.closeLocked(s.closeReason) // graceful close: all delivered, queues our close frame
					continue
				}
			}
		}
		if len(bufs) == 0 {
			c.flushing = false
			closeConn := c.closeSent && c.rdone
			s.unlock()
			if closeConn {
				_ = c.conn.Close()
			}
			return
		}
		limit := shared && !c.closeQueued
		if limit {
			_ = c.conn.SetWriteDeadline(time.Now().Add(sharedStall))
		} else {
			_ = c.conn.SetWriteDeadline(c.writeDeadlineLocked())
		}
		s.unlock()
		wb := bufs // WriteTo consumes its receiver
		_, err := wb.WriteTo(c.conn)
		s.mu.Lock()
		if limit && err != nil && errors.Is(err, os.ErrDeadlineExceeded) && len(wb) > 0 {
			rest := append(net.Buffers(nil), wb...)
			s.unlock()
			go c.finishSlow(rest, msgs)
			return
		}
		wrote = true
		if err != nil {
			if msgs != nil {
				s.doneLocked(msgs)
			}
			c.writeFailed(err)
			return
		}
	}
}

// finishSlow completes a write the shared flusher gave up waiting for, then
// goes on as the connection's own writer.
func (c *wsConn) finishSlow(rest net.Buffers, msgs []*Message) {
	s := c.s
	s.mu.Lock()
	_ = c.conn.SetWriteDeadline(c.writeDeadlineLocked())
	s.mu.Unlock()
	_, err := rest.WriteTo(c.conn)
	s.mu.Lock()
	if msgs != nil {
		s.doneLocked(msgs)
	}
	if err != nil {
		c.writeFailed(err)
		return
	}
	s.mu.Unlock()
	c.flushLoop(false)
}

// writeDeadlineLocked is the deadline of a write by the connection's own
// writer: WriteTimeout from now, or the closing handshake's if sooner.
func (c *wsConn) writeDeadlineLocked() time.Time {
	d := time.Now().Add(c.s.srv.o.WriteTimeout)
	if !c.closeBy.IsZero() && c.closeBy.Before(d) {
		return c.closeBy
	}
	return d
}

// writeFailed ends the writer after a failed write and closes the connection
// (which ends the reader); s.mu is held and released. A write that outlived
// WriteTimeout cuts off a client that does not read: "transport error",
// reported as a slow consumer.
func (c *wsConn) writeFailed(err error) {
	s := c.s
	c.flushing, c.closeSent = false, true
	slow := false
	switch {
	case s.ws == c:
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.closeQueued && s.state != stateClosed {
			slow = true
			s.srv.log.Debug().Str("sid", s.id).Msg("eio: write timed out, closing a slow client")
			s.closeLocked("transport error")
		} else {
			s.closeLocked("transport close") // as ws: a dead socket closes, it is not an error
		}
	case s.probe == c:
		s.abortProbeLocked()
	}
	s.unlock()
	_ = c.conn.Close()
	if slow {
		s.srv.limit(LimitSlowConsumer)
	}
}

// compresses tells whether m goes compressed on a connection that negotiated
// permessage-deflate (binary as base64 text to a b64 client never does).
func (s *Socket) compresses(m *Message) bool {
	return m.size()-int(m.hdr) >= s.srv.o.Compression.PerMessageDeflateThreshold && (!m.binary || !s.b64 && !s.v3)
}

// appendFrame appends the frame(s) of m; binary is sent as base64 text to b64 clients.
func (c *wsConn) appendFrame(bufs net.Buffers, m *Message) net.Buffers {
	if c.deflate && c.s.compresses(m) {
		if z := m.deflated(); z != nil {
			return append(bufs, z)
		}
	}
	switch {
	case m.binary && c.s.v3 && c.s.b64:
		return append(bufs, m.v3Base64Frame())
	case m.binary && c.s.v3:
		return append(bufs, m.v3Frame())
	case !m.binary || !c.s.b64:
		return append(bufs, m.frame)
	}
	p := m.polling()
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p))}
	w := sliceWriter{b: make([]byte, 0, ws.HeaderSize(h))}
	_ = ws.WriteHeader(&w, h)
	return append(bufs, w.b, p)
}

// readLoop is the connection's goroutine: it reads messages until the connection fails or
// closes, and ends the session (or the upgrade) accordingly.
func (c *wsConn) readLoop() {
	s := c.s
	delivered := false
	for {
		if delivered && c.r == c.w {
			// About to wait, with a stack the handler may have grown (GC shrinks it only to
			// 4 KB): an idle connection keeps a fresh goroutine's minimal stack instead.
			go c.readLoop()
			return
		}
		// Wait for the next frame here rather than deep in the header parser, for the same reason.
		err := c.fill(1)
		var op ws.OpCode
		var data []byte
		if err == nil {
			op, data, err = c.next()
		}
		if err == nil && op == ws.OpText && !utf8.Valid(data) {
			err = errBadUTF8
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		decode := eioparser.DecodePacket
		if s.v3 {
			decode = eioparser.DecodePacketV3
		}
		pkt, perr := decode(data, op == ws.OpBinary)
		switch {
		case !c.active:
			s.onProbePacket(c, pkt, perr)
		case perr != nil:
			s.parseError()
		default:
			s.dmu.Lock()
			s.handlePacket(pkt)
			s.dmu.Unlock()
			delivered = true
		}
		c.release()
	}
}

// readFailed ends the reader: the session (or upgrade) ends and the connection is closed once the
// close frame is written.
func (c *wsConn) readFailed(err error) {
	s := c.s
	reason := "transport close"
	s.mu.Lock()
	var pe *protocolError
	if errors.As(err, &pe) {
		c.shutdownLocked(pe.frame())
		reason = "transport error"
	}
	switch {
	case s.ws == c:
		s.closeLocked(reason)
	case s.probe == c:
		s.abortProbeLocked()
	}
	c.rdone = true
	c.shutdownLocked(closeNormal)
	closeNow := !c.flushing
	s.unlock()
	if closeNow {
		_ = c.conn.Close()
	}
	c.rbuf, c.frag = nil, nil
}

// release drops the buffers a large message needed, so an idle connection stays small.
func (c *wsConn) release() {
	if c.zbuf != nil {
		if cap(*c.zbuf) <= maxPooledBuf {
			*c.zbuf = (*c.zbuf)[:0]
			inflateBufs.Put(c.zbuf)
		}
		c.zbuf = nil
	}
	if cap(c.frag) > maxKeepBuf {
		c.frag = nil
	} else {
		c.frag = c.frag[:0]
	}
	if len(c.rbuf) > maxKeepBuf && c.w-c.r <= maxKeepBuf {
		nb := make([]byte, max(readBufSize, c.w-c.r))
		c.w = copy(nb, c.rbuf[c.r:c.w])
		c.r = 0
		c.rbuf = nb
	}
}

// next returns the next complete data message, answering control frames on the way. data aliases
// the read buffers and is valid until the next call.
func (c *wsConn) next() (ws.OpCode, []byte, error) {
	maxPayload := c.s.srv.o.MaxPayload
	for {
		h, err := ws.ReadHeaderBuffer(c, c.hb[:])
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return 0, nil, errProtocol
			}
			return 0, nil, err
		}
		state := ws.StateServerSide
		if c.fragging {
			state |= ws.StateFragmented
		}
		if c.deflate {
			// RSV1 marks a compressed message on its first frame only (RFC 7692 6).
			var z bool
			if h, z, err = wsflate.UnsetBit(h); err != nil {
				return 0, nil, errProtocol
			}
			if h.OpCode == ws.OpText || h.OpCode == ws.OpBinary {
				c.zmsg = z
			}
		}
		if ws.CheckHeader(h, state) != nil {
			return 0, nil, errProtocol
		}
		if h.OpCode.IsControl() {
			p, err := c.payload(h)
			if err != nil {
				return 0, nil, err
			}
			switch h.OpCode {
			case ws.OpPing:
				c.pong(p)
			case ws.OpClose:
				return 0, nil, c.peerClose(p)
			}
			continue
		}
		if h.Length > maxPayload-int64(len(c.frag)) {
			return 0, nil, errTooBig
		}
		p, err := c.payload(h)
		if err != nil {
			return 0, nil, err
		}
		if h.OpCode != ws.OpContinuation {
			if h.Fin {
				return c.message(h.OpCode, p)
			}
			c.fragging, c.fragOp = true, h.OpCode
		}
		c.frag = append(c.frag, p...)
		if h.Fin {
			c.fragging = false
			return c.message(c.fragOp, c.frag)
		}
	}
}

// message returns a complete message, inflated when it is compressed: MaxPayload bounds what
// it inflates to as it bounds what is read (a decompression bomb is errTooBig, 1009).
func (c *wsConn) message(op ws.OpCode, p []byte) (ws.OpCode, []byte, error) {
	if !c.zmsg {
		return op, p, nil
	}
	if c.zbuf == nil {
		c.zbuf = inflateBufs.Get().(*[]byte)
	}
	data, err := inflate(c.zbuf, p, c.s.srv.o.MaxPayload)
	return op, data, err
}

// payload reads and unmasks the payload of a frame whose header was just read.
func (c *wsConn) payload(h ws.Header) ([]byte, error) {
	n := int(h.Length)
	if err := c.fill(n); err != nil {
		return nil, err
	}
	p := c.rbuf[c.r : c.r+n : c.r+n]
	c.r += n
	ws.Cipher(p, h.Mask, 0)
	return p, nil
}

// pong answers a ping. While a write is blocked only the answer to the most
// recent ping waits (RFC 6455, 5.5.3), so pings from a client that does not
// read cost nothing more.
func (c *wsConn) pong(p []byte) {
	f := ws.MustCompileFrame(ws.NewPongFrame(p)) // copies p
	c.s.mu.Lock()
	switch {
	case c.closeQueued:
	case c.pongAt > 0:
		c.ctrl[c.pongAt-1] = f
	case len(c.ctrl) < maxCtrl:
		c.ctrl = append(c.ctrl, f)
		c.pongAt = len(c.ctrl)
		c.kickLocked()
	}
	c.s.mu.Unlock()
}

// peerClose answers the client's close frame with the same status code.
func (c *wsConn) peerClose(p []byte) error {
	frame := ws.CompiledClose
	if len(p) > 0 {
		if len(p) < 2 {
			return errProtocol
		}
		code, reason := ws.ParseCloseFrameData(p)
		if err := ws.CheckCloseFrameData(code, reason); err != nil {
			if errors.Is(err, ws.ErrProtocolInvalidUTF8) {
				return errBadUTF8
			}
			return errProtocol
		}
		frame = ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
	}
	c.s.mu.Lock()
	c.shutdownLocked(frame)
	c.s.mu.Unlock()
	return errPeerGone
}

// Read implements io.Reader over the connection's buffer, for ws.ReadHeaderBuffer.
func (c *wsConn) Read(p []byte) (int, error) {
	if err := c.fill(1); err != nil {
		return 0, err
	}
	n := copy(p, c.rbuf[c.r:c.w])
	c.r += n
	return n, nil
}

// fill reads until at least n unread bytes are buffered.
func (c *wsConn) fill(n int) error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	for c.w-c.r < n {
		if c.w == len(c.rbuf) {
			c.makeRoom(n)
		}
		m, err := c.conn.Read(c.rbuf[c.w:])
		c.w += m
		if err != nil && c.w-c.r < n {
			return err
		}
	}
	return nil
}

// makeRoom compacts or grows the full buffer. It grows by doubling, up to n, so a peer that
// announces a large frame has to send the data to make the buffer grow.
func (c *wsConn) makeRoom(n int) {
	have := c.w - c.r
	size := len(c.rbuf)
	if size < n && (c.r == 0 || 2*have > size) {
		size = min(max(2*size, readBufSize), n)
	}
	buf := c.rbuf
	if size != len(buf) {
		buf = make([]byte, size)
	}
	copy(buf, c.rbuf[c.r:c.w])
	c.rbuf, c.r, c.w = buf, 0, have
}
