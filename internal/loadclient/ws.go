// Package loadclient is the client side of switchboard-load: a lean
// Engine.IO v4 / Socket.IO v5 client over WebSocket (hand-rolled RFC 6455
// framing, or gorilla/websocket for comparison) and over HTTP long-polling,
// plus the measuring helpers (histograms, /proc sampling, tokens).
//
// It is built to be cheap per message on the client side so that the
// server, not the load generator, is what a benchmark measures: one
// goroutine per connection, frames parsed in place from a reused buffer,
// no allocation per received message, and masked frames written with an
// all-zero masking key (valid per RFC 6455 §5.3: the key is XORed into the
// payload, so a zero key leaves it unchanged and costs nothing).
package loadclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Frame opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// reassembly joins the frames of a fragmented WebSocket message.
type reassembly struct {
	frag []byte
	on   bool // a fragmented message is being received
}

// data takes a text, binary or continuation frame and returns the message it
// completes (nil when none); unexpected reports a continuation frame that
// continues nothing.
func (r *reassembly) data(op byte, fin bool, p []byte) (msg []byte, unexpected bool) {
	switch op {
	case opText, opBinary:
		if fin {
			return p, false
		}
		r.frag = append(r.frag[:0], p...)
		r.on = true
	case opContinuation:
		if !r.on {
			return nil, true
		}
		r.frag = append(r.frag, p...)
		if fin {
			r.on = false
			return r.frag, false
		}
	}
	return nil, false
}

// ErrClosed is returned by reads after the peer sent a close frame.
var ErrClosed = errors.New("websocket closed by peer")

// WS is a WebSocket connection as the Socket.IO layer uses it: read one
// whole message (borrowed slice, valid until the next call), write one text
// message. Reads happen on one goroutine; writes may come from several.
type WS interface {
	ReadMessage() ([]byte, error)
	WriteText(p []byte) error
	Close(abort bool) error
}

// Dialer opens WebSocket connections to a loopback target.
type Dialer struct {
	// Impl is "raw" (default: this package's framing) or "gorilla".
	Impl string
	// LocalIPs are source addresses used in turn (each has its own
	// ephemeral port range); nil lets the kernel choose.
	LocalIPs []net.IP
	Timeout  time.Duration

	mu   sync.Mutex
	next int
}

func (d *Dialer) localAddr() *net.TCPAddr {
	if len(d.LocalIPs) == 0 {
		return nil
	}
	d.mu.Lock()
	ip := d.LocalIPs[d.next%len(d.LocalIPs)]
	d.next++
	d.mu.Unlock()
	return &net.TCPAddr{IP: ip}
}

// Dial connects to hostport and upgrades path (with its query) to a WebSocket.
func (d *Dialer) Dial(ctx context.Context, hostport, pathQuery string) (WS, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	nd := &net.Dialer{Timeout: timeout}
	if la := d.localAddr(); la != nil {
		nd.LocalAddr = la
	}
	if d.Impl == "gorilla" {
		gd := websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: timeout,
			ReadBufferSize:   4096,
			WriteBufferSize:  4096,
		}
		c, resp, err := gd.DialContext(ctx, "ws://"+hostport+pathQuery, nil)
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("websocket upgrade: %s: %w", resp.Status, err)
			}
			return nil, err
		}
		return &gorillaWS{c: c}, nil
	}
	nc, err := nd.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	w, err := rawHandshake(nc, hostport, pathQuery)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return w, nil
}

func rawHandshake(nc net.Conn, host, pathQuery string) (*rawWS, error) {
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET " + pathQuery + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("websocket upgrade: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	w := &rawWS{nc: nc, rbuf: make([]byte, 4096)}
	// Bytes the server sent right after the 101 (the Engine.IO open packet).
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if n > len(w.rbuf) {
			w.rbuf = make([]byte, n)
		}
		w.end = copy(w.rbuf, b)
	}
	return w, nil
}

// rawWS is RFC 6455 framing over a net.Conn: frames are parsed in place from
// rbuf; a message that spans frames is assembled in frag.
type rawWS struct {
	nc         net.Conn
	rbuf       []byte
	start, end int
	re         reassembly

	wmu  sync.Mutex
	wbuf []byte
}

// frame returns the next complete frame in rbuf, reading more as needed.
func (w *rawWS) frame() (fin bool, op byte, payload []byte, err error) {
	for {
		if b := w.rbuf[w.start:w.end]; len(b) >= 2 {
			hdr := 2
			n := int(b[1] & 0x7f)
			masked := b[1]&0x80 != 0
			switch n {
			case 126:
				hdr = 4
				if len(b) >= 4 {
					n = int(binary.BigEndian.Uint16(b[2:4]))
				}
			case 127:
				hdr = 10
				if len(b) >= 10 {
					l := binary.BigEndian.Uint64(b[2:10])
					if l > 1<<30 {
						return false, 0, nil, errors.New("websocket frame too large")
					}
					n = int(l)
				}
			}
			if masked {
				hdr += 4
			}
			if len(b) >= hdr && len(b) >= hdr+n {
				p := b[hdr : hdr+n]
				if masked {
					mk := b[hdr-4 : hdr]
					for i := range p {
						p[i] ^= mk[i&3]
					}
				}
				w.start += hdr + n
				return b[0]&0x80 != 0, b[0] & 0x0f, p, nil
			}
			if need := hdr + n; need > len(w.rbuf) {
				nb := make([]byte, need+4096)
				w.end = copy(nb, b)
				w.start = 0
				w.rbuf = nb
			}
		}
		if w.start == w.end {
			w.start, w.end = 0, 0
		} else if w.end == len(w.rbuf) {
			w.end = copy(w.rbuf, w.rbuf[w.start:w.end])
			w.start = 0
		}
		m, err := w.nc.Read(w.rbuf[w.end:])
		if m > 0 {
			w.end += m
			continue
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return false, 0, nil, err
	}
}

func (w *rawWS) ReadMessage() ([]byte, error) {
	for {
		fin, op, p, err := w.frame()
		if err != nil {
			return nil, err
		}
		switch op {
		case opText, opBinary, opContinuation:
			msg, unexpected := w.re.data(op, fin, p)
			if unexpected {
				return nil, errors.New("websocket: unexpected continuation frame")
			}
			if msg != nil {
				return msg, nil
			}
		case opPing:
			_ = w.writeFrame(opPong, p)
		case opPong:
		case opClose:
			_ = w.writeFrame(opClose, nil)
			return nil, ErrClosed
		default:
			return nil, fmt.Errorf("websocket: unknown opcode %d", op)
		}
	}
}

func (w *rawWS) writeFrame(op byte, p []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	b := AppendClientFrameHeader(w.wbuf[:0], op, len(p))
	b = append(b, p...)
	w.wbuf = b
	_, err := w.nc.Write(b)
	return err
}

func (w *rawWS) WriteText(p []byte) error { return w.writeFrame(opText, p) }

func (w *rawWS) Close(abort bool) error {
	if tc, ok := w.nc.(*net.TCPConn); ok && abort {
		_ = tc.SetLinger(0) // RST: no TIME_WAIT left on the loopback port range
	}
	return w.nc.Close()
}

// gorillaWS adapts gorilla/websocket, reading into a reused buffer.
type gorillaWS struct {
	c   *websocket.Conn
	buf bytes.Buffer
	wmu sync.Mutex
}

func (g *gorillaWS) ReadMessage() ([]byte, error) {
	_, r, err := g.c.NextReader()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, ErrClosed
		}
		return nil, err
	}
	g.buf.Reset()
	if _, err := g.buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return g.buf.Bytes(), nil
}

func (g *gorillaWS) WriteText(p []byte) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	return g.c.WriteMessage(websocket.TextMessage, p)
}

func (g *gorillaWS) Close(abort bool) error {
	if tc, ok := g.c.NetConn().(*net.TCPConn); ok && abort {
		_ = tc.SetLinger(0)
	}
	return g.c.Close()
}

// AppendClientFrameHeader appends the header of a final client frame of
// opcode op with n payload bytes, masked with the zero key (the payload goes
// out unchanged).
func AppendClientFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, 0, 0, 0, 0)
}
