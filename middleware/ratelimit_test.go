package middleware

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/sio"
)

func TestRateLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		at       time.Duration
		ok       bool
		refusals int
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst then refusal", 10, 3, []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, false, 1}, {0, false, 2},
		}},
		{"refill over time", 10, 2, []step{
			{0, true, 0}, {0, true, 0}, {0, false, 1},
			{50 * time.Millisecond, false, 2}, // half a token
			{100 * time.Millisecond, true, 0}, // one token back
			{100 * time.Millisecond, false, 1},
			{time.Hour, true, 0}, // refill caps at burst
			{time.Hour, true, 0},
			{time.Hour, false, 1},
		}},
		{"allowed event resets the counter", 1, 1, []step{
			{0, true, 0}, {0, false, 1}, {0, false, 2}, {0, false, 3},
			{time.Second, true, 0},
			{time.Second, false, 1},
		}},
		{"time going backwards does not refill", 1, 1, []step{
			{10 * time.Second, true, 0}, {0, false, 1}, {10 * time.Second, false, 2}, {11 * time.Second, true, 0},
		}},
		{"fractional rate", 0.5, 1, []step{
			{0, true, 0}, {time.Second, false, 1}, {2 * time.Second, true, 0},
		}},
		{"burst 0 treated as 1", 1, 0, []step{{0, true, 0}, {0, false, 1}}},
		{"negative burst treated as 1", 1, -5, []step{{0, true, 0}, {0, false, 1}}},
		{"unlimited with rate 0", 0, 1, []step{{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0}}},
		{"unlimited with negative rate", -1, 0, []step{{0, true, 0}, {0, true, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewRateLimiter(tt.rate, tt.burst)
			for i, s := range tt.steps {
				ok, n := l.Allow(at(s.at))
				if ok != s.ok || n != s.refusals {
					t.Fatalf("step %d at %v: Allow = (%v, %d), want (%v, %d)", i, s.at, ok, n, s.ok, s.refusals)
				}
			}
		})
	}
}

// TestRateLimiterConcurrent checks under -race that the bucket hands out
// exactly its burst when hammered at one instant.
func TestRateLimiterConcurrent(t *testing.T) {
	const burst = 50
	l := NewRateLimiter(1, burst)
	now := time.Unix(1_700_000_000, 0)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 200 {
		wg.Go(func() {
			if ok, _ := l.Allow(now); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != burst {
		t.Fatalf("allowed %d events, want %d", allowed, burst)
	}
}

// floodServer serves namespaces "/" and "/b" with a connect middleware that
// takes the user from auth {user}, the cool-down refusal and the flood kick
// (rate 5/s, burst 5, kicked on the 4th refusal in a row).
func floodServer(t *testing.T, cd *Cooldown) (url string, kicks, refusals *atomic.Int32, gone chan string) {
	t.Helper()
	kicks, refusals = new(atomic.Int32), new(atomic.Int32)
	gone = make(chan string, 16)
	s := sio.NewServer(sio.Options{PingInterval: time.Second, PingTimeout: 2 * time.Second})
	s.Use(func(_ context.Context, h *sio.Handshake) error {
		user, _ := h.Auth["user"].(string)
		h.User = &sio.User{ID: user, Name: user}
		return nil
	})
	s.Use(KickCooldown(cd, func() { refusals.Add(1) }))
	s.Intercept(RateLimit(5, 5, 3, cd, func() { kicks.Add(1) }))
	for _, name := range []string{"/", "/b"} {
		n := s.Of(name)
		sio.Handle(n, "ping", func(context.Context, *sio.Conn, string) (string, error) { return "pong", nil })
		n.OnDisconnect(func(_ context.Context, _ *sio.Conn, reason string) { gone <- name + " " + reason })
	}
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return ts.URL, kicks, refusals, gone
}

// wsSession is one raw Engine.IO WebSocket session carrying several namespaces.
type wsSession struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialSession(t *testing.T, url string) *wsSession {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/socket.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	s := &wsSession{t: t, ws: ws}
	if f, err := s.read(); err != nil || !strings.HasPrefix(f, "0{") {
		t.Fatalf("open packet %q, %v", f, err)
	}
	return s
}

func (s *wsSession) read() (string, error) {
	_ = s.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := s.ws.ReadMessage()
		if err != nil {
			return "", err
		}
		if string(b) == "2" {
			_ = s.ws.WriteMessage(websocket.TextMessage, []byte("3"))
			continue
		}
		return string(b), nil
	}
}

func (s *wsSession) send(f string) {
	if err := s.ws.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
		s.t.Fatalf("write %q: %v", f, err)
	}
}

// connect joins nsp as user and returns the CONNECT or CONNECT_ERROR frame.
func (s *wsSession) connect(nsp, user string) string {
	s.t.Helper()
	prefix := ""
	if nsp != "/" {
		prefix = nsp + ","
	}
	s.send(fmt.Sprintf(`40%s{"user":%q}`, prefix, user))
	for {
		f, err := s.read()
		if err != nil {
			s.t.Fatalf("waiting for CONNECT to %s: %v", nsp, err)
		}
		if strings.HasPrefix(f, "40"+prefix) || strings.HasPrefix(f, "44"+prefix) {
			return f
		}
	}
}

// TestRateLimitClosesTheSessionAndHolds: a flooder on "/" loses its
// whole session ("/b" on the same transport too); its user and IP are then
// refused until the cool-down ends.
func TestRateLimitClosesTheSessionAndHolds(t *testing.T) {
	clock := newFakeClock()
	cd := NewCooldown(CooldownConfig{Base: 10 * time.Second, Now: clock.Now})
	url, kicks, refusals, gone := floodServer(t, cd)

	s := dialSession(t, url)
	if f := s.connect("/", "alice"); !strings.HasPrefix(f, "40{") {
		t.Fatalf("connect /: %q", f)
	}
	if f := s.connect("/b", "alice"); !strings.HasPrefix(f, "40/b,{") {
		t.Fatalf("connect /b: %q", f)
	}
	for i := range 20 {
		s.send(fmt.Sprintf(`42%d["ping","x"]`, i))
	}
	var frames []string
	var readErr error
	for range 100 { // bounded: 20 acks, a DISCONNECT, then the transport ends
		f, err := s.read()
		if err != nil {
			readErr = err
			break
		}
		frames = append(frames, f)
	}
	var ne net.Error
	if readErr == nil || errors.As(readErr, &ne) && ne.Timeout() {
		t.Fatalf("the transport is still open after the kick (%v); frames %q", readErr, frames)
	}
	var ok, limited, disconnects int
	for _, f := range frames {
		switch {
		case strings.HasPrefix(f, "43") && strings.Contains(f, `"pong"`):
			ok++
		case strings.HasPrefix(f, "43") && strings.Contains(f, `rate_limited`):
			limited++
		case f == "41":
			disconnects++
		}
	}
	if ok != 5 || limited != 4 || disconnects != 1 {
		t.Fatalf("acks ok %d, rate_limited %d, DISCONNECT %d; want 5, 4, 1 (frames %q)", ok, limited, disconnects, frames)
	}
	seen := map[string]string{}
	for range 2 {
		select {
		case r := <-gone:
			nsp, reason, _ := strings.Cut(r, " ")
			seen[nsp] = reason
		case <-time.After(5 * time.Second):
			t.Fatalf("namespaces disconnected: %v, want / and /b", seen)
		}
	}
	t.Logf("disconnect reasons: %v", seen)
	if seen["/"] != "server namespace disconnect" || seen["/b"] == "" || strings.Contains(seen["/b"], "ping") {
		t.Fatalf("disconnect reasons %v: want / kicked and /b closed with the transport", seen)
	}
	if kicks.Load() != 1 {
		t.Fatalf("kicks counted %d, want 1", kicks.Load())
	}

	// The user, and anyone from the same IP, is refused during the cool-down.
	for _, user := range []string{"alice", "bob"} {
		f := dialSession(t, url).connect("/", user)
		if !strings.HasPrefix(f, "44") || !strings.Contains(f, `"code":"rate_limited"`) || !strings.Contains(f, "try again in 10s") {
			t.Fatalf("%s during the cool-down: %q, want connect_error rate_limited", user, f)
		}
	}
	if refusals.Load() != 2 {
		t.Fatalf("refusals counted %d, want 2", refusals.Load())
	}
	clock.Advance(10 * time.Second)
	if f := dialSession(t, url).connect("/", "alice"); !strings.HasPrefix(f, "40{") {
		t.Fatalf("alice after the cool-down: %q", f)
	}
}

// TestRateLimitWithoutCooldown: with cool-downs off (nil) a kick still
// closes the session, and the user may come back at once.
func TestRateLimitWithoutCooldown(t *testing.T) {
	url, kicks, _, _ := floodServer(t, nil)
	s := dialSession(t, url)
	s.connect("/", "alice")
	for i := range 20 {
		s.send(fmt.Sprintf(`42%d["ping","x"]`, i))
	}
	closed := false
	for range 100 {
		if _, err := s.read(); err != nil {
			closed = true
			break
		}
	}
	if !closed || kicks.Load() != 1 {
		t.Fatalf("transport closed %v, kicks %d; want true, 1", closed, kicks.Load())
	}
	if f := dialSession(t, url).connect("/", "alice"); !strings.HasPrefix(f, "40{") {
		t.Fatalf("reconnect: %q", f)
	}
}

func TestRateLimitOff(t *testing.T) {
	if err := RateLimit(0, 1, 0, nil, nil)(context.Background(), nil, "x"); err != nil {
		t.Fatalf("rate 0: %v", err)
	}
}
