package loadclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverFrame is an unmasked server frame (fin=false for a first fragment).
func serverFrame(op byte, fin bool, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
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

// readClientFrame reads one masked client frame.
func readClientFrame(br *bufio.Reader) (op byte, p []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		return
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err = io.ReadFull(br, x[:]); err != nil {
			return
		}
		n = int(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err = io.ReadFull(br, x[:]); err != nil {
			return
		}
		n = int(binary.BigEndian.Uint64(x[:]))
	}
	var mk [4]byte
	if h[1]&0x80 != 0 {
		if _, err = io.ReadFull(br, mk[:]); err != nil {
			return
		}
	}
	p = make([]byte, n)
	if _, err = io.ReadFull(br, p); err != nil {
		return
	}
	for i := range p {
		p[i] ^= mk[i&3]
	}
	return h[0] & 0x0f, p, nil
}

// fakeServer accepts one WebSocket session, completes the Engine.IO and
// Socket.IO handshakes, then hands the connection to script.
func fakeServer(t *testing.T, script func(nc net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		nc.Write(serverFrame(opText, true, []byte(`0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000}`)))
		if _, p, err := readClientFrame(br); err != nil || !bytes.HasPrefix(p, []byte("40")) {
			return
		}
		nc.Write(serverFrame(opText, true, []byte(`40{"sid":"s1"}`)))
		script(nc, br)
	}()
	return ln.Addr().String()
}

// TestReactorFraming sends messages split at random byte boundaries (so
// frames straddle reads), a message larger than the read buffer, a
// fragmented message, pings of both layers and a close, and checks that
// every message arrives intact and in order and that pings are answered.
func TestReactorFraming(t *testing.T) {
	const count = 3000
	var want []string
	for i := 0; i < count; i++ {
		want = append(want, fmt.Sprintf(`["message",{"text":"0:%d:%d%s"}]`, i, 1700000000000000000+i, strings.Repeat("x", i%300)))
	}
	big := `["message",{"text":"0:` + fmt.Sprint(count) + `:1` + strings.Repeat("y", 100<<10) + `"}]`
	want = append(want, big, `["message",{"text":"fragmented"}]`)

	answers := make(chan string, 4)
	addr := fakeServer(t, func(nc net.Conn, br *bufio.Reader) {
		go func() { // what the client sends back
			for {
				op, p, err := readClientFrame(br)
				if err != nil {
					close(answers)
					return
				}
				answers <- fmt.Sprintf("%d:%s", op, p)
			}
		}()
		var stream []byte
		for i := 0; i < count; i++ {
			stream = append(stream, serverFrame(opText, true, []byte("42"+want[i]))...)
		}
		stream = append(stream, serverFrame(opText, true, []byte("42"+big))...)
		stream = append(stream, serverFrame(opText, false, []byte(`42["message",{"te`))...)
		stream = append(stream, serverFrame(opPing, true, []byte("hi"))...)
		stream = append(stream, serverFrame(opContinuation, true, []byte(`xt":"fragmented"}]`))...)
		stream = append(stream, serverFrame(opText, true, []byte("2"))...)
		rng := rand.New(rand.NewPCG(1, 2))
		for len(stream) > 0 {
			n := min(len(stream), 1+rng.IntN(9000))
			if _, err := nc.Write(stream[:n]); err != nil {
				return
			}
			stream = stream[n:]
			if rng.IntN(4) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		time.Sleep(100 * time.Millisecond)
		nc.Write(serverFrame(opClose, true, nil))
		time.Sleep(100 * time.Millisecond)
	})

	r, err := NewReactor()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, &Dialer{}, addr, "/socket.io/", "tok")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	closed := make(chan error, 1)
	err = c.StartOn(r, Handlers{
		EventAt: func(p []byte, now int64) {
			if now == 0 {
				t.Error("EventAt without a time")
			}
			mu.Lock()
			got = append(got, string(p))
			mu.Unlock()
		},
		Closed: func(err error) { closed <- err },
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != ErrClosed {
			t.Errorf("closed with %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("no close")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: got %.80q, want %.80q", i, got[i], want[i])
		}
	}
	var ans []string
	for a := range answers {
		ans = append(ans, a)
	}
	// pong to the WebSocket ping, Engine.IO pong "3", then the close reply.
	if len(ans) < 2 || ans[0] != fmt.Sprintf("%d:hi", opPong) || ans[1] != fmt.Sprintf("%d:3", opText) {
		t.Fatalf("client answers %q", ans)
	}
	if r.Len() != 0 {
		t.Fatalf("reactor still holds %d connections", r.Len())
	}
	c.Close(true) // after the reactor dropped it: a no-op
}

// TestReactorEmitAndClose checks writes on an adopted connection, acks,
// and closing from the owner's side while the reactor runs.
func TestReactorEmitAndClose(t *testing.T) {
	addr := fakeServer(t, func(nc net.Conn, br *bufio.Reader) {
		for {
			_, p, err := readClientFrame(br)
			if err != nil {
				return
			}
			// 42<id>["message",...] -> 43<id>[{"ok":true}]
			if bytes.HasPrefix(p, []byte("42")) {
				i := 2
				for i < len(p) && p[i] >= '0' && p[i] <= '9' {
					i++
				}
				nc.Write(serverFrame(opText, true, append(append([]byte("43"), p[2:i]...), `[{"ok":true}]`...)))
			}
		}
	})
	r, err := NewReactor()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, &Dialer{}, addr, "/socket.io/", "tok")
	if err != nil {
		t.Fatal(err)
	}
	acks := make(chan uint64, 100)
	closed := make(chan error, 1)
	if err := c.StartOn(r, Handlers{
		Ack:    func(id uint64, p []byte) { acks <- id },
		Closed: func(err error) { closed <- err },
	}, true); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 50; id++ {
		if err := c.Emit(id, "message", []byte(`{"roomId":"r","text":"t"}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-acks:
			if got != id {
				t.Fatalf("ack %d, want %d", got, id)
			}
		case <-ctx.Done():
			t.Fatalf("no ack for %d", id)
		}
	}
	c.Close(true)
	if r.Len() != 0 {
		t.Fatalf("reactor still holds %d connections", r.Len())
	}
	if err := c.Emit(99, "message", nil); err == nil {
		t.Fatal("emit after close succeeded")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Closed(%v) for a close of our own, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Closed not called")
	}
}

// BenchmarkReactorConsume measures the user-space part of the receive path
// (frame parsing, dispatch, message parsing) on a buffer of 64 frames such
// as one read returns, and checks that it allocates nothing.
func BenchmarkReactorConsume(b *testing.B) {
	var stream []byte
	for i := 0; i < 64; i++ {
		msg := fmt.Sprintf(`42["message",{"id":"mwwjumtb-9a3667c9-%d","roomId":"fanout","userId":"u1","name":"User 1","text":"0:%d:%dxxxxxxxxxxxxxxxxxx","ts":1795636904447},"Q8KJC7_.1"]`,
			i, i, 1795636904447000000+i)
		stream = append(stream, serverFrame(opText, true, []byte(msg))...)
	}
	buf := make([]byte, len(stream))
	var n, sum int64
	var hint int
	c := &Conn{closing: make(chan struct{})}
	rc := &reactorConn{c: c, ws: &fdWS{fd: -1}, h: Handlers{EventAt: func(p []byte, now int64) {
		_, seq, nanos, _, ok := ParseMessageHint(p, &hint)
		if ok {
			n++
			sum += int64(seq) + nanos - now
		}
	}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, stream)
		rc.consume(buf, 1)
	}
	b.StopTimer()
	if n != int64(b.N)*64 {
		b.Fatalf("parsed %d of %d", n, b.N*64)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/frame")
}
