package loadclient

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Reactor is the light receive path for broadcast receivers: one goroutine
// reads many raw WebSocket connections through an epoll set of its own.
//
//   - Every connection is read as soon as epoll reports it (no deliberate
//     delay: as eager as a reader per connection), with one read syscall per
//     ready socket per round into one 64 KB buffer. All the frames that
//     arrived are parsed from that one read; a socket that had more than
//     64 KB waiting is simply reported again in the next round. A read
//     per connection goroutine, by contrast, costs two syscalls per message
//     (the read, then the EAGAIN that parks it) plus a goroutine wake-up.
//   - Frames are parsed in place; only the tail of an incomplete frame is
//     copied (into a per-connection slice that is reused). Nothing is
//     allocated per frame.
//   - Engine.IO/Socket.IO handling is the minimum: pings are answered, close
//     and disconnect end the session, and EVENT/ACK packets go to the
//     connection's Handlers (a byte scan there, no JSON decoding).
//   - An adopted connection's socket is a private duplicate of the original
//     descriptor, which is then closed, so Go's netpoller no longer watches
//     it: one epoll registration per socket, as before (each registration
//     costs the sending side a wake-up callback per packet, and on loopback
//     that is the server's CPU).
//   - Sockets are registered edge-triggered: a ready socket is polled once
//     per event, not again on the next epoll_wait as level-triggered
//     registration would.
//   - Priority connections (a fan-out sender, whose acks pace the
//     broadcasts) are also read after every prioEvery sockets, so that an
//     ack never waits behind a whole round of receivers.
//   - When nothing is ready the goroutine blocks in its own epoll_wait (a
//     blocking system call; the runtime lends the P to another thread if
//     other goroutines need it). Parking in Go's netpoller instead, with the
//     reactor's epoll descriptor nested in the runtime's, cost three
//     epoll_waits per wake-up and a nested wake-up chain per packet, run in
//     the sender's (the server's) context on loopback: the client's CPU per
//     delivery at Node's rate went from ~9 to ~6.5 µs with the blocking wait.
//   - It yields (runtime.Gosched) every prioEvery sockets and after every
//     round, so that senders, timers and the fan-out ack window run
//     promptly even with GOMAXPROCS=1.
type Reactor struct {
	epfd   int
	buf    []byte
	events []syscall.EpollEvent

	mu     sync.Mutex
	slots  []*reactorConn // by fd
	n      int
	closed bool           // epfd is closed
	prio   []*reactorConn // read every prioEvery sockets (a fan-out sender's acks)
	again  []*reactorConn // read again next round (filled the buffer)
	spare  []*reactorConn

	done     chan struct{}
	stopping atomic.Bool

	// Counters of the receive path (read by Stats).
	reads, bytes, rounds atomic.Int64
}

// ReactorStats describe a reactor's work so far.
type ReactorStats struct {
	Reads, Bytes, Rounds int64
}

type reactorConn struct {
	r       *Reactor
	c       *Conn
	ws      *fdWS
	fd      int
	h       Handlers
	pending []byte // an incomplete frame's bytes
	re      reassembly
	queued  bool // in r.again
}

// epollET is EPOLLET as the uint32 of EpollEvent.Events.
const epollET = 1 << 31

// reactorBuf is the read buffer: enough for many frames per syscall.
const reactorBuf = 64 << 10

// NewReactor starts a reactor goroutine.
func NewReactor() (*Reactor, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r := &Reactor{epfd: fd, buf: make([]byte, reactorBuf),
		events: make([]syscall.EpollEvent, 256), done: make(chan struct{})}
	go r.loop()
	return r, nil
}

// Stats returns the reactor's counters.
func (r *Reactor) Stats() ReactorStats {
	return ReactorStats{Reads: r.reads.Load(), Bytes: r.bytes.Load(), Rounds: r.rounds.Load()}
}

// Len is the number of connections the reactor reads.
func (r *Reactor) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// waitMs bounds one blocking epoll_wait, so that Close is noticed.
const waitMs = 50

func (r *Reactor) loop() {
	defer close(r.done)
	var reads, bytes int64
	read := func(rc *reactorConn) {
		m := rc.readOnce(r.buf)
		if m > 0 {
			reads++
			bytes += int64(m)
		}
		if m == len(r.buf) && !rc.queued {
			// Edge-triggered: a full buffer may have left data behind, and
			// no new edge will say so. Read it again next round.
			rc.queued = true
			r.again = append(r.again, rc)
		}
	}
	for !r.stopping.Load() {
		timeout := waitMs
		if len(r.again) > 0 {
			timeout = 0
		}
		// A blocking system call: the goroutine's thread sleeps in the
		// kernel, and the runtime hands the P to another thread if other
		// goroutines need it meanwhile. One epoll_wait per wake-up, where
		// parking in Go's netpoller took three.
		n, err := syscall.EpollWait(r.epfd, r.events, timeout)
		if err != nil && err != syscall.EINTR {
			return
		}
		r.mu.Lock()
		if len(r.again) > 0 {
			again := r.again
			r.again = r.spare[:0]
			for _, rc := range again {
				rc.queued = false
				if r.slots[rc.fd] == rc {
					read(rc)
				}
			}
			r.spare = again[:0]
		}
		for i := 0; i < n; i++ {
			fd := int(r.events[i].Fd)
			if fd < 0 || fd >= len(r.slots) || r.slots[fd] == nil {
				continue
			}
			read(r.slots[fd])
			if i%prioEvery == prioEvery-1 && i < n-1 {
				// Let a sender that got its ack (and timers) run now,
				// not after the whole round.
				r.readPrio(read)
				r.mu.Unlock()
				runtime.Gosched()
				r.mu.Lock()
			}
		}
		r.readPrio(read)
		r.mu.Unlock()
		r.reads.Store(reads)
		r.bytes.Store(bytes)
		r.rounds.Add(1)
		runtime.Gosched()
	}
}

// prioEvery is how many sockets the reactor reads between two looks at
// its priority connections.
const prioEvery = 16

// readPrio reads the priority connections (r.mu held). An empty socket
// costs one EAGAIN read.
func (r *Reactor) readPrio(read func(*reactorConn)) {
	for _, rc := range r.prio {
		if r.slots[rc.fd] == rc {
			read(rc)
		}
	}
}

// Close stops the reactor (within waitMs). Connections still registered
// stay open (their owners close them); they are no longer read.
func (r *Reactor) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.stopping.Store(true)
	<-r.done
	syscall.Close(r.epfd)
}

// ErrNotAdoptable is returned for connections a reactor cannot read
// (gorilla framing, or not TCP).
var ErrNotAdoptable = errors.New("reactor needs a --ws raw connection")

// StartOn delivers c's packets to h from the reactor instead of from a
// goroutine of its own. c must not have been started. After this c writes
// with plain non-blocking writes on its socket. A priority connection is
// read more often than the others (see Reactor).
func (c *Conn) StartOn(r *Reactor, h Handlers, priority bool) error {
	w, ok := c.ws.(*rawWS)
	if !ok {
		return ErrNotAdoptable
	}
	tc, ok := w.nc.(*net.TCPConn)
	if !ok {
		return ErrNotAdoptable
	}
	sc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var derr error
	if err := sc.Control(func(f uintptr) {
		// A private duplicate, close-on-exec; it shares the original's
		// non-blocking mode.
		nfd, _, e := syscall.Syscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(nfd)
	}); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("dup: %w", derr)
	}
	// Closing the original unregisters it from Go's netpoller; the socket
	// lives on through fd.
	_ = w.nc.Close()
	ws := &fdWS{fd: fd}
	rc := &reactorConn{r: r, c: c, ws: ws, fd: fd, h: h}
	ws.rc = rc
	if w.end > w.start { // bytes read during setup and not yet parsed
		rc.pending = append(rc.pending, w.rbuf[w.start:w.end]...)
	}
	c.h = h
	c.ws = ws

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		ws.closeFD(true)
		return errors.New("reactor closed")
	}
	for fd >= len(r.slots) {
		r.slots = append(r.slots, make([]*reactorConn, len(r.slots)+1024)...)
	}
	r.slots[fd] = rc
	r.n++
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.slots[fd] = nil
		r.n--
		ws.closeFD(true)
		return err
	}
	if priority {
		r.prio = append(r.prio, rc)
	}
	if len(rc.pending) > 0 {
		rc.consume(nil, time.Now().UnixNano())
	}
	return nil
}

// readOnce reads what the socket has (one syscall, r.mu held) and handles
// every complete frame; it returns the bytes read.
func (rc *reactorConn) readOnce(buf []byte) int {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(rc.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	if e == 0 && n > 0 {
		rc.consume(buf[:n], time.Now().UnixNano())
		return int(n)
	}
	if e == syscall.EAGAIN || e == syscall.EINTR {
		return 0
	}
	var err error = e
	if e == 0 {
		err = errors.New("EOF")
	}
	rc.drop(err)
	return 0
}

// detach removes rc from the epoll set and the table (r.mu held).
func (rc *reactorConn) detach() bool {
	r := rc.r
	if rc.fd >= len(r.slots) || r.slots[rc.fd] != rc {
		return false
	}
	if !r.closed {
		_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, rc.fd, nil)
	}
	r.slots[rc.fd] = nil
	r.n--
	for i, p := range r.prio {
		if p == rc {
			r.prio = append(r.prio[:i], r.prio[i+1:]...)
			break
		}
	}
	return true
}

// drop ends the session from the reactor's side (r.mu held).
func (rc *reactorConn) drop(err error) {
	if !rc.detach() {
		return
	}
	rc.ws.closeFD(true)
	select {
	case <-rc.c.closing:
		err = nil
	default:
	}
	if rc.h.Closed != nil {
		go rc.h.Closed(err) // not under r.mu
	}
}

// consume parses frames from pending+b (r.mu held), read at now; an
// incomplete tail is kept in pending.
func (rc *reactorConn) consume(b []byte, now int64) {
	data := b
	if len(rc.pending) > 0 {
		rc.pending = append(rc.pending, b...)
		data = rc.pending
	}
	off := 0
	for {
		fin, op, p, used := parseFrame(data[off:])
		if used == 0 {
			break
		}
		if used < 0 {
			rc.drop(errors.New("websocket frame too large"))
			return
		}
		off += used
		var msg []byte
		switch op {
		case opText, opBinary, opContinuation:
			msg, _ = rc.re.data(op, fin, p) // a stray continuation is ignored
		case opPing:
			_ = rc.ws.writeFrame(opPong, p)
		case opClose:
			_ = rc.ws.writeFrame(opClose, nil)
			rc.drop(ErrClosed)
			return
		}
		if msg != nil {
			if len(msg) == 1 && msg[0] == '2' { // the common control packet: ping
				_ = rc.ws.WriteText(pongPacket)
				continue
			}
			if stop, e := dispatch(msg, &rc.h, rc.c.pong, now); stop {
				rc.drop(e)
				return
			}
		}
	}
	rest := data[off:]
	switch {
	case len(rest) == 0:
		rc.pending = rc.pending[:0]
	case len(rc.pending) > 0: // rest is inside pending: move it to the front
		rc.pending = rc.pending[:copy(rc.pending, rest)]
	default:
		rc.pending = append(rc.pending[:0], rest...)
	}
}

var pongPacket = []byte{'3'}

// fdWS writes frames on a reactor connection's socket with non-blocking
// writes; reads are the reactor's.
type fdWS struct {
	rc *reactorConn

	mu     sync.Mutex
	fd     int
	closed bool
	wbuf   []byte
}

func (w *fdWS) ReadMessage() ([]byte, error) {
	return nil, errors.New("reactor connection: reads belong to the reactor")
}

func (w *fdWS) WriteText(p []byte) error { return w.writeFrame(opText, p) }

// writeFrame writes one masked frame (masking key 0). A full send buffer
// (EAGAIN, which small client writes practically never meet) is waited
// out with short sleeps, up to 5 s.
func (w *fdWS) writeFrame(op byte, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return net.ErrClosed
	}
	b := appendClientFrame(w.wbuf[:0], op, p)
	w.wbuf = b
	var waited time.Duration
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(w.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case e == 0:
			b = b[n:]
		case e == syscall.EINTR:
		case e == syscall.EAGAIN:
			if waited > 5*time.Second {
				return fmt.Errorf("websocket write: send buffer full for %s", waited)
			}
			time.Sleep(100 * time.Microsecond)
			waited += 100 * time.Microsecond
		default:
			return e
		}
	}
	return nil
}

// closeFD closes the socket once (abort: RST, no TIME_WAIT).
func (w *fdWS) closeFD(abort bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if abort {
		_ = syscall.SetsockoptLinger(w.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	}
	_ = syscall.Close(w.fd)
}

// Close unregisters the socket from its reactor, then closes it. As with
// a connection read by its own goroutine, Closed gets nil.
func (w *fdWS) Close(abort bool) error {
	rc := w.rc
	rc.r.mu.Lock()
	detached := rc.detach()
	rc.r.mu.Unlock()
	w.closeFD(abort)
	if detached && rc.h.Closed != nil {
		go rc.h.Closed(nil)
	}
	return nil
}

// appendClientFrame appends a final client frame with masking key 0.
func appendClientFrame(b []byte, op byte, p []byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = append(b, byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, p...)
}
