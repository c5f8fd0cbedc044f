package eio

import (
	"io"
	"sync"
	"testing"

	"github.com/gobwas/ws"
)

// echoHandler sends every text message back.
type echoHandler struct{ s *Socket }

func (h echoHandler) OnMessage(data []byte, binary bool) {
	h.s.Send(TextMessage(data))
}

func (echoHandler) OnClose(string) {}

// BenchmarkWebSocketEcho measures a round trip: client message, OnMessage, Send, client read.
func BenchmarkWebSocketEcho(b *testing.B) {
	e := newEnv(b, func(o *Options) {
		o.OnConnection = func(s *Socket) { s.SetHandler(echoHandler{s}) }
	})
	c := e.dialWS("EIO=4&transport=websocket")
	c.text()
	frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte(`442["chat","hello there"]`))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.conn.Write(frame); err != nil {
			b.Fatal(err)
		}
		h, err := ws.ReadHeader(c.r)
		if err == nil {
			_, err = io.CopyN(io.Discard, c.r, h.Length)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBroadcast sends one shared message to 1000 WebSocket sessions (the writes only).
func BenchmarkBroadcast(b *testing.B) {
	var mu sync.Mutex
	var socks []*Socket
	e := newEnv(b, func(o *Options) {
		o.OnConnection = func(s *Socket) {
			mu.Lock()
			socks = append(socks, s)
			mu.Unlock()
		}
	})
	var clients []*wsClient
	for range 1000 {
		c := e.dialWS("EIO=4&transport=websocket")
		c.text()
		clients = append(clients, c)
	}
	waitFor(b, "sessions", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(socks) == 1000
	})
	done := make(chan struct{})
	for _, c := range clients { // drain
		go func() {
			_, _ = io.Copy(io.Discard, c.conn)
			done <- struct{}{}
		}()
	}
	b.ReportAllocs()
	for b.Loop() {
		m := TextMessage([]byte(`42["news",{"title":"hello","body":"a broadcast to everyone"}]`))
		for _, s := range socks {
			s.Send(m)
		}
	}
	b.StopTimer()
	for _, s := range socks {
		s.CloseNow()
	}
	for range clients {
		<-done
	}
}
