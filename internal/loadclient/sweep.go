package loadclient

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// Sweeper reads many raw WebSocket connections from one goroutine: every
// interval it asks its own epoll set which sockets have data and reads each
// of those once. A connection then costs one read syscall per sweep however
// many messages arrived, instead of one syscall and one goroutine wake-up
// per message, so the load generator can receive several times more
// deliveries per core than the server sends. The price is up to one
// interval of extra delay, so swept ("bulk") receivers do not measure
// latency; a few eagerly read connections do.
type Sweeper struct {
	epfd     int
	interval time.Duration

	mu    sync.Mutex
	conns map[int32]*sweptConn

	buf  []byte
	stop chan struct{}
	done chan struct{}
}

type sweptConn struct {
	c       *Conn
	ws      *rawWS
	fd      int
	pending []byte // bytes of an incomplete frame
	re      reassembly
	h       Handlers
}

// NewSweeper starts a sweeper reading every interval.
func NewSweeper(interval time.Duration) (*Sweeper, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	s := &Sweeper{epfd: fd, interval: interval, conns: map[int32]*sweptConn{}, buf: make([]byte, 256<<10),
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

// ErrNotRaw is returned for connections not using the raw framing.
var ErrNotRaw = errors.New("sweeper needs --ws raw connections")

// StartSwept delivers c's packets to h from the sweeper instead of a
// goroutine of its own.
func (c *Conn) StartSwept(s *Sweeper, h Handlers) error {
	w, ok := c.ws.(*rawWS)
	if !ok {
		return ErrNotRaw
	}
	tc, ok := w.nc.(*net.TCPConn)
	if !ok {
		return ErrNotRaw
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	c.h = h
	sc := &sweptConn{c: c, ws: w, fd: fd, h: h}
	// Bytes already buffered during the handshake.
	if w.end > w.start {
		sc.pending = append(sc.pending, w.rbuf[w.start:w.end]...)
		w.start, w.end = 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[int32(fd)] = sc
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(s.conns, int32(fd))
		return err
	}
	if len(sc.pending) > 0 {
		s.consume(sc, nil)
	}
	return nil
}

func (s *Sweeper) loop() {
	defer close(s.done)
	events := make([]syscall.EpollEvent, 1024)
	for {
		start := time.Now()
		n, err := syscall.EpollWait(s.epfd, events, 100)
		select {
		case <-s.stop:
			return
		default:
		}
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		s.mu.Lock()
		for i := 0; i < n; i++ {
			sc := s.conns[events[i].Fd]
			if sc == nil {
				continue
			}
			s.readOnce(sc)
		}
		s.mu.Unlock()
		if n == len(events) {
			continue // more are ready: no pause
		}
		if d := s.interval - time.Since(start); d > 0 && n > 0 {
			select {
			case <-s.stop:
				return
			case <-time.After(d):
			}
		}
	}
}

// readOnce reads what one socket has (one syscall) and parses whole frames.
func (s *Sweeper) readOnce(sc *sweptConn) {
	n, err := syscall.Read(sc.fd, s.buf)
	if n > 0 {
		s.consume(sc, s.buf[:n])
		return
	}
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err == nil {
		err = errors.New("EOF")
	}
	s.drop(sc, err)
}

func (s *Sweeper) drop(sc *sweptConn, err error) {
	_ = syscall.EpollCtl(s.epfd, syscall.EPOLL_CTL_DEL, sc.fd, nil)
	delete(s.conns, int32(sc.fd))
	select {
	case <-sc.c.closing:
		err = nil
	default:
	}
	go func() {
		sc.c.ws.Close(true)
		if sc.h.Closed != nil {
			sc.h.Closed(err)
		}
	}()
}

// consume parses frames from pending+b; an incomplete tail is kept.
func (s *Sweeper) consume(sc *sweptConn, b []byte) {
	data := b
	if len(sc.pending) > 0 {
		sc.pending = append(sc.pending, b...)
		data = sc.pending
	}
	off := 0
	for {
		fin, op, p, used := parseFrame(data[off:])
		if used == 0 {
			break
		}
		off += used
		if used < 0 {
			s.drop(sc, errors.New("websocket frame too large"))
			return
		}
		var msg []byte
		switch op {
		case opText, opBinary, opContinuation:
			msg, _ = sc.re.data(op, fin, p) // a stray continuation is ignored
		case opPing:
			_ = sc.ws.writeFrame(opPong, p)
		case opClose:
			_ = sc.ws.writeFrame(opClose, nil)
			s.drop(sc, ErrClosed)
			return
		}
		if msg != nil {
			if stop, e := dispatch(msg, &sc.h, sc.c.pong, 0); stop {
				s.drop(sc, e)
				return
			}
		}
	}
	rest := data[off:]
	if len(rest) == 0 {
		sc.pending = sc.pending[:0]
		return
	}
	if len(sc.pending) > 0 {
		sc.pending = append(sc.pending[:0], rest...) // overlapping copy is safe with append from a later offset
	} else {
		sc.pending = append(sc.pending, rest...)
	}
}

// parseFrame parses one server frame at the start of b: used is 0 when b
// holds no complete frame, negative when the frame is absurdly large.
func parseFrame(b []byte) (fin bool, op byte, payload []byte, used int) {
	if len(b) < 2 {
		return false, 0, nil, 0
	}
	hdr := 2
	n := uint64(b[1] & 0x7f)
	masked := b[1]&0x80 != 0
	switch n {
	case 126:
		if len(b) < 4 {
			return false, 0, nil, 0
		}
		hdr, n = 4, uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		if len(b) < 10 {
			return false, 0, nil, 0
		}
		hdr, n = 10, binary.BigEndian.Uint64(b[2:10])
		if n > 1<<30 {
			return false, 0, nil, -1
		}
	}
	if masked {
		hdr += 4
	}
	if uint64(len(b)) < uint64(hdr)+n {
		return false, 0, nil, 0
	}
	p := b[hdr : hdr+int(n)]
	if masked {
		mk := b[hdr-4 : hdr]
		for i := range p {
			p[i] ^= mk[i&3]
		}
	}
	return b[0]&0x80 != 0, b[0] & 0x0f, p, hdr + int(n)
}

// Close stops the sweeper (connections are closed by their owners).
func (s *Sweeper) Close() {
	close(s.stop)
	<-s.done
	syscall.Close(s.epfd)
}
