package main

// blast: a stand-in fan-out server that does almost nothing, to measure
// the load generator's own ceiling (how many deliveries per second one
// load process can receive and account) without a real server being the
// limit. It speaks just enough Engine.IO v4 / Socket.IO v5 over WebSocket
// for the fanout scenario: open packet, CONNECT, join-room, and `message`,
// which it acks once the message has been written to every member.
// Messages that arrive while a broadcast is being written go out together
// in the next one: one write per member per batch, so with --window W the
// receivers get up to W frames per read. Not a server: no auth, no rooms
// beyond one set, no pings. Loopback only.

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func blast(args []string) error {
	fs := flag.NewFlagSet("switchboard-load blast", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:39190", "listen address (loopback only)")
	batch := fs.Int("batch", 1, "messages per broadcast write: wait until this many are pending (or 20 ms passed); with the load generator's --window equal to it, receivers get that many frames per read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := loopbackHostPort("http://" + *addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := newBlaster()
	b.batch = max(1, *batch)
	go b.broadcaster(ctx)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	logf("blast listening on %s", ln.Addr())
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	err = srv.Serve(ln)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type blastConn struct {
	nc  net.Conn
	wmu sync.Mutex
}

func (c *blastConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

type blastMsg struct {
	from  *blastConn
	ackID []byte
	frame []byte // the server frame of the broadcast
	id    int64
}

type blaster struct {
	mu      sync.Mutex
	members []*blastConn
	pending []blastMsg
	wake    chan struct{}
	nextSID int64
	nextID  int64
	batch   int
}

func newBlaster() *blaster { return &blaster{wake: make(chan struct{}, 1)} }

// appendServerFrame appends an unmasked final text frame.
func appendServerFrame(b, p []byte) []byte {
	b = append(b, 0x81)
	switch n := len(p); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, p...)
}

func (b *blaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("transport") != "websocket" || r.Header.Get("Upgrade") != "websocket" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	h := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetLinger(0)
	}
	c := &blastConn{nc: nc}
	b.mu.Lock()
	b.nextSID++
	sid := strconv.FormatInt(b.nextSID, 36)
	b.mu.Unlock()
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"
	out := append([]byte(resp), appendServerFrame(nil,
		[]byte(`0{"sid":"`+sid+`","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`))...)
	if err := c.write(out); err != nil {
		return
	}
	br := brw.Reader
	defer b.leave(c)
	var msg []byte
	for {
		msg, err = readClientMessage(br, msg[:0])
		if err != nil {
			return
		}
		if err := b.handle(c, sid, msg); err != nil {
			return
		}
	}
}

// readClientMessage reads one whole (masked) client message.
func readClientMessage(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, err
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var x [2]byte
			if _, err := io.ReadFull(br, x[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(x[:]))
		case 127:
			var x [8]byte
			if _, err := io.ReadFull(br, x[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(x[:])
		}
		if n > 1<<20 {
			return nil, errors.New("frame too large")
		}
		var mk [4]byte
		if hdr[1]&0x80 != 0 {
			if _, err := io.ReadFull(br, mk[:]); err != nil {
				return nil, err
			}
		}
		start := len(buf)
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(br, buf[start:]); err != nil {
			return nil, err
		}
		for i := range buf[start:] {
			buf[start+i] ^= mk[i&3]
		}
		switch op := hdr[0] & 0x0f; op {
		case opCodeClose:
			return nil, io.EOF
		case opCodePing, opCodePong:
			buf = buf[:start]
			continue
		}
		if hdr[0]&0x80 != 0 {
			return buf, nil
		}
	}
}

const (
	opCodeClose = 0x8
	opCodePing  = 0x9
	opCodePong  = 0xA
)

var (
	blastJoin    = []byte(`["join-room"`)
	blastMessage = []byte(`["message",`)
	blastText    = []byte(`"text":"`)
)

func (b *blaster) handle(c *blastConn, sid string, msg []byte) error {
	if len(msg) < 2 || msg[0] != '4' {
		return nil // pong, noop
	}
	switch msg[1] {
	case '0': // CONNECT
		return c.write(appendServerFrame(nil, []byte(`40{"sid":"`+sid+`"}`)))
	case '2': // EVENT
	default:
		return nil
	}
	p := msg[2:]
	i := 0
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	ackID, p := append([]byte(nil), p[:i]...), p[i:]
	switch {
	case hasPrefix(p, blastJoin):
		b.mu.Lock()
		b.members = append(b.members, c)
		b.mu.Unlock()
		if len(ackID) > 0 {
			return c.write(appendServerFrame(nil, append(append([]byte("43"), ackID...), `[{"ok":true}]`...)))
		}
	case hasPrefix(p, blastMessage):
		t := indexOf(p, blastText)
		if t < 0 {
			return nil
		}
		text := p[t+len(blastText):]
		e := 0
		for e < len(text) && text[e] != '"' {
			e++
		}
		b.mu.Lock()
		b.nextID++
		id := b.nextID
		b.mu.Unlock()
		payload := []byte(`42["message",{"id":"b-`)
		payload = strconv.AppendInt(payload, id, 10)
		payload = append(payload, `","roomId":"fanout","text":"`...)
		payload = append(payload, text[:e]...)
		payload = append(payload, `","ts":`...)
		payload = strconv.AppendInt(payload, time.Now().UnixMilli(), 10)
		payload = append(payload, `}]`...)
		b.mu.Lock()
		b.pending = append(b.pending, blastMsg{from: c, ackID: ackID, frame: appendServerFrame(nil, payload), id: id})
		b.mu.Unlock()
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func hasPrefix(p, pre []byte) bool { return len(p) >= len(pre) && string(p[:len(pre)]) == string(pre) }

func indexOf(p, sub []byte) int {
	for i := 0; i+len(sub) <= len(p); i++ {
		if string(p[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

func (b *blaster) leave(c *blastConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range b.members {
		if m == c {
			b.members = append(b.members[:i], b.members[i+1:]...)
			return
		}
	}
}

// broadcaster writes every pending message to every member, one write per
// member per batch, then acks the batch's messages.
func (b *blaster) broadcaster(ctx context.Context) {
	var batch []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
		if b.batch > 1 {
			deadline := time.Now().Add(20 * time.Millisecond)
			for {
				b.mu.Lock()
				n := len(b.pending)
				b.mu.Unlock()
				if n >= b.batch || time.Now().After(deadline) {
					break
				}
				select {
				case <-b.wake:
				case <-time.After(time.Until(deadline)):
				case <-ctx.Done():
					return
				}
			}
		}
		b.mu.Lock()
		msgs := b.pending
		b.pending = nil
		members := append([]*blastConn(nil), b.members...)
		b.mu.Unlock()
		if len(msgs) == 0 {
			continue
		}
		batch = batch[:0]
		for _, m := range msgs {
			batch = append(batch, m.frame...)
		}
		for _, c := range members {
			_ = c.write(batch)
		}
		for _, m := range msgs {
			ack := append(append([]byte("43"), m.ackID...), `[{"ok":true,"id":"b-`...)
			ack = strconv.AppendInt(ack, m.id, 10)
			ack = append(ack, `"}]`...)
			_ = m.from.write(appendServerFrame(nil, ack))
		}
	}
}
