package eio

import (
	"context"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

type memSample struct {
	heap, stack, rss uint64
	goroutines       int
}

func sampleMem() memSample {
	for range 3 {
		runtime.GC()
	}
	debug.FreeOSMemory() // so that RSS is what is held, not a high-water mark
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{heap: m.HeapInuse, stack: m.StackInuse, rss: rss(), goroutines: runtime.NumGoroutine()}
}

// rss returns the resident set size from /proc (0 where there is none).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

func perConn(a, b uint64, n int) float64 { return (float64(b) - float64(a)) / float64(n) }

// TestIdleWebSocketMemory opens 2000 idle WebSocket sessions in-process and logs what each costs.
// The numbers include the client's end of each TCP connection; the baseline (plain TCP pairs,
// no Engine.IO) tells what the two sockets cost by themselves.
func TestIdleWebSocketMemory(t *testing.T) { idleWebSocketMemory(t, false) }

// TestIdleWebSocketMemoryDeflate is the same with permessage-deflate negotiated (and the message
// of the second part sent compressed): without context takeover it should cost nothing more.
func TestIdleWebSocketMemoryDeflate(t *testing.T) { idleWebSocketMemory(t, true) }

func idleWebSocketMemory(t *testing.T, deflate bool) {
	if testing.Short() {
		t.Skip("opens 2000 connections")
	}
	const n = 2000

	// Baseline: n accepted TCP pairs held open, no goroutine per connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	before := sampleMem()
	var pairs []net.Conn
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, c, <-accepted)
	}
	base := sampleMem()
	tcpHeap := perConn(before.heap, base.heap, n)
	for _, c := range pairs {
		c.Close()
	}
	ln.Close()
	pairs = nil

	var opened atomic.Int32
	e := newEnv(t, func(o *Options) {
		o.OnConnection = func(s *Socket) { // no recorder: its buffers would dwarf the session
			s.SetHandler(deepHandler{s})
			opened.Add(1)
		}
		o.Compression.PerMessageDeflate = deflate
	})
	var dialer ws.Dialer
	if deflate {
		dialer.Extensions = []httphead.Option{wsflate.DefaultParameters.Option()}
	}
	var clients []net.Conn
	t.Cleanup(func() { // before the server's cleanup
		for _, c := range clients {
			c.Close()
		}
	})
	u := "ws" + strings.TrimPrefix(e.url("EIO=4&transport=websocket"), "http")
	m0 := sampleMem()
	for range n {
		conn, br, hs, err := dialer.Dial(context.Background(), u)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if deflate && len(hs.Extensions) != 1 {
			t.Fatalf("permessage-deflate not negotiated")
		}
		var r io.Reader = conn
		if br != nil {
			r = br
		}
		h, err := ws.ReadHeader(r) // the open packet
		if err == nil {
			_, err = io.CopyN(io.Discard, r, h.Length)
		}
		if err != nil {
			t.Fatalf("open packet: %v", err)
		}
		if br != nil {
			ws.PutReader(br)
		}
		clients = append(clients, conn)
	}
	waitFor(t, "all sessions", func() bool { return e.srv.Count() == n && opened.Load() == n })
	// Let the writers that sent the open packets exit.
	waitFor(t, "writers to exit", func() bool { return runtime.NumGoroutine() <= m0.goroutines+n+2 })
	time.Sleep(50 * time.Millisecond)
	m1 := sampleMem()
	if f := os.Getenv("EIO_HEAPPROFILE"); f != "" { // for `go tool pprof`: what an idle session holds
		w, _ := os.Create(f)
		_ = pprof.WriteHeapProfile(w)
		w.Close()
	}

	heap := perConn(m0.heap, m1.heap, n)
	stack := perConn(m0.stack, m1.stack, n)
	t.Logf("race detector: %v (inflates stacks and RSS); permessage-deflate: %v", raceEnabled, deflate)
	t.Logf("per idle WebSocket session, both ends: heap %.0f B + stacks %.0f B = %.0f B; RSS %.0f B; goroutines %.2f",
		heap, stack, heap+stack, perConn(m0.rss, m1.rss, n), float64(m1.goroutines-m0.goroutines)/n)
	t.Logf("baseline TCP pair (client+server sockets): heap %.0f B, so the server side is about %.0f B "+
		"(heap %.0f - one socket %.0f + stacks %.0f)", tcpHeap, heap-tcpHeap/2+stack, heap, tcpHeap/2, stack)

	// Each connection then handles a message with a handler that needs a deep stack, as the
	// Socket.IO layer does: the reader's stack grows, and GC shrinks it back to 4 KB only (it
	// halves a stack only while less than a quarter of it is in use).
	hi := ws.NewTextFrame([]byte("4hi"))
	if deflate {
		if hi, err = wsflate.CompressFrame(hi); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		if err := ws.WriteFrame(c, ws.MaskFrame(hi)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		h, err := ws.ReadHeader(c)
		if err == nil {
			_, err = io.CopyN(io.Discard, c, h.Length)
		}
		if err != nil {
			t.Fatalf("reply: %v", err)
		}
	}
	waitFor(t, "writers to exit", func() bool { return runtime.NumGoroutine() <= m0.goroutines+n+2 })
	time.Sleep(50 * time.Millisecond)
	m2 := sampleMem()
	t.Logf("after one message each (deep handler): heap %.0f B + stacks %.0f B; RSS %.0f B per session",
		perConn(m0.heap, m2.heap, n), perConn(m0.stack, m2.stack, n), perConn(m0.rss, m2.rss, n))

	if g := float64(m1.goroutines-m0.goroutines) / n; g > 1.05 {
		t.Errorf("%.2f goroutines per idle connection, want 1", g)
	}
}

// deepHandler answers each message after using about 8 KB of stack, like a real application.
type deepHandler struct{ s *Socket }

func (h deepHandler) OnMessage(data []byte, binary bool) {
	if deep(64) == 0 {
		h.s.Send(TextMessage([]byte("ok")))
	}
}

func (deepHandler) OnClose(string) {}

//go:noinline
func deep(n int) int {
	var pad [128]byte
	pad[n%128] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%128]) - n%256
}
