package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/server"
)

func hygConfig() server.Config {
	cfg := server.Defaults()
	cfg.JWTSecret = "s"
	cfg.DrainTimeout = 0
	return cfg
}

// hygSid opens an Engine.IO polling session and returns its sid.
func hygSid(t *testing.T, base string) string {
	t.Helper()
	code, body := get(t, base+"/socket.io/?EIO=4&transport=polling")
	var open struct{ Sid string }
	if code != 200 || len(body) < 2 || json.Unmarshal([]byte(body[1:]), &open) != nil || open.Sid == "" {
		t.Fatalf("polling handshake: %d %q", code, body)
	}
	return open.Sid
}

// hygUntilClosed reads c until the server closes it and returns how long that took.
func hygUntilClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %v", limit)
	}
	return took
}

func TestHTTPSlowBodyIsCutAfterReadTimeout(t *testing.T) {
	cfg := hygConfig()
	cfg.HTTPReadTimeout = 300 * time.Millisecond
	n := startNode(t, cfg, nil)
	sid := hygSid(t, n.url)
	c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Headers and a few bytes of a 100-byte body, then nothing (slow loris).
	_, err = io.WriteString(c, "POST /socket.io/?EIO=4&transport=polling&sid="+sid+" HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 100\r\n\r\n4hel")
	if err != nil {
		t.Fatal(err)
	}
	took := hygUntilClosed(t, c, 5*time.Second)
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("stalled POST body cut after %v, want about HTTP_READ_TIMEOUT (300ms)", took)
	}
}

func TestHTTPIdleKeepAliveIsClosed(t *testing.T) {
	cfg := hygConfig()
	cfg.HTTPIdleTimeout = 300 * time.Millisecond
	n := startNode(t, cfg, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d, close %v; want 200 kept alive", resp.StatusCode, resp.Close)
	}
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Fatalf("idle keep-alive connection closed after %v, want about HTTP_IDLE_TIMEOUT (300ms)", took)
	}
}

// A long poll (and a WebSocket) outlives HTTP_READ_TIMEOUT: only bodies have it.
func TestHTTPLongPollOutlivesReadTimeout(t *testing.T) {
	cfg := hygConfig()
	cfg.HTTPReadTimeout = 200 * time.Millisecond
	cfg.PingInterval = time.Second
	cfg.PingTimeout = 3 * time.Second
	n := startNode(t, cfg, nil)
	sid := hygSid(t, n.url)
	poll := n.url + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	for i := range 2 {
		start := time.Now()
		code, body := get(t, poll)
		if code != 200 || body != "2" || time.Since(start) < 700*time.Millisecond {
			t.Fatalf("long poll %d: %d %q after %v; want the ping after PING_INTERVAL", i, code, body, time.Since(start))
		}
		resp, err := http.Post(poll, "text/plain;charset=UTF-8", strings.NewReader("3"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("pong POST: %d %q", resp.StatusCode, b)
		}
	}

	tok, _ := n.sb.MintToken("wsuser", "", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	select {
	case <-ws.Disconnected:
		t.Fatal("the WebSocket was cut while idle: it inherited a read deadline")
	case <-time.After(1500 * time.Millisecond):
	}
	if raw, err := ws.Call(ctx, "join-room", "lobby"); err != nil || !strings.Contains(string(raw), `"ok":true`) {
		t.Fatalf("join-room after idling: %s %v", raw, err)
	}
}

func hygGet(t *testing.T, url string, header http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

func hygBody(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

func TestMetricsToken(t *testing.T) {
	cfg := hygConfig()
	cfg.MetricsToken = "scrape-me"
	n := startNode(t, cfg, nil)
	for _, auth := range []string{"", "Bearer wrong", "Bearer scrape-mf", "Basic scrape-me", "scrape-me", "Bearer "} {
		h := http.Header{}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		r := hygGet(t, n.url+"/metrics", h)
		if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != "Bearer" || strings.Contains(hygBody(r), "switchboard_") {
			t.Fatalf("Authorization %q: %d %q; want 401 with WWW-Authenticate: Bearer", auth, r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
	}
	for _, auth := range []string{"Bearer scrape-me", "bearer scrape-me"} {
		r := hygGet(t, n.url+"/metrics", http.Header{"Authorization": {auth}})
		if r.StatusCode != 200 || !strings.Contains(hygBody(r), "switchboard_accept_errors_total 0") {
			t.Fatalf("Authorization %q: %d", auth, r.StatusCode)
		}
	}
	if code, _ := get(t, n.url+"/healthz"); code != 200 {
		t.Fatalf("healthz with METRICS_TOKEN: %d, want 200 (probes stay open)", code)
	}
}

func hygFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// hygServe runs sb on a fresh loopback listener until stop is called.
func hygServe(t *testing.T, sb *server.Server) (url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sb.Serve(ctx, ln) }()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func hygWaitUp(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never came up: %v", url, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetricsAddrServesMetricsApart(t *testing.T) {
	for _, probes := range []bool{false, true} {
		cfg := hygConfig()
		cfg.MetricsAddr = hygFreeAddr(t)
		cfg.ProbesOnMetricsAddr = probes
		cfg.MetricsToken = "tok"
		sb, err := server.New(cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		pub, stop := hygServe(t, sb)
		priv := "http://" + cfg.MetricsAddr
		hygWaitUp(t, priv+"/metrics")

		if code, _ := get(t, pub+"/metrics"); code != 404 {
			t.Fatalf("probes=%v: public /metrics %d, want 404", probes, code)
		}
		if r := hygGet(t, priv+"/metrics", nil); r.StatusCode != 401 {
			t.Fatalf("probes=%v: METRICS_ADDR /metrics without the token: %d, want 401", probes, r.StatusCode)
		}
		r := hygGet(t, priv+"/metrics", http.Header{"Authorization": {"Bearer tok"}})
		if r.StatusCode != 200 || !strings.Contains(hygBody(r), "switchboard_ready 1") {
			t.Fatalf("probes=%v: METRICS_ADDR /metrics: %d", probes, r.StatusCode)
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			pubCode, _ := get(t, pub+p)
			privCode, _ := get(t, priv+p)
			want := map[bool][2]int{false: {200, 404}, true: {404, 200}}[probes]
			if pubCode != want[0] || privCode != want[1] {
				t.Fatalf("probes=%v: %s public %d, METRICS_ADDR %d; want %v", probes, p, pubCode, privCode, want)
			}
		}
		if code, _ := get(t, pub+"/socket.io/?EIO=4&transport=polling"); code != 200 {
			t.Fatalf("probes=%v: the Socket.IO endpoint answers %d", probes, code)
		}
		stop()
		if c, err := net.DialTimeout("tcp", cfg.MetricsAddr, time.Second); err == nil {
			c.Close()
			t.Fatalf("probes=%v: METRICS_ADDR still listening after shutdown", probes)
		}
	}
}

func TestMetricsAddrUnusableFailsServe(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := hygConfig()
	cfg.MetricsAddr = busy.Addr().String()
	sb, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := sb.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "METRICS_ADDR") {
		t.Fatalf("Serve with a busy METRICS_ADDR = %v", err)
	}
}

func TestMountKeepsMetricsForEmbeddersUnlessMetricsAddr(t *testing.T) {
	cfg := hygConfig()
	sb, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	sb.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("Handler /metrics: %d", rec.Code)
	}
	cfg.MetricsAddr = "127.0.0.1:1"
	cfg.ProbesOnMetricsAddr = true
	sb, err = server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		sb.Handler().ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 404 {
			t.Fatalf("Handler %s with METRICS_ADDR and PROBES_ON_METRICS_ADDR: %d, want 404", p, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	sb.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("MetricsHandler: %d", rec.Code)
	}
}

func TestDevTokenAnswersLoopbackOnly(t *testing.T) {
	cfg := server.Defaults() // no secret: development mode
	cfg.DrainTimeout = 0
	sb, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h := sb.Handler()
	for _, tc := range []struct {
		remote, xff string
		want        int
	}{
		{"203.0.113.7:4444", "", 403},
		{"10.0.0.2:4444", "", 403},
		{"[2001:db8::1]:4444", "", 403},
		{"127.0.0.1:4444", "198.51.100.9", 403}, // relayed by a local proxy for a remote client
		{"127.0.0.1:4444", "", 200},
		{"[::1]:4444", "", 200},
		{"127.0.0.1:4444", "127.0.0.1", 200},
	} {
		req := httptest.NewRequest("GET", "/auth/dev-token?sub=alice", nil)
		req.RemoteAddr = tc.remote
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var body struct{ Token, Error string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != tc.want || (tc.want == 403) != (body.Error != "" && body.Token == "") ||
			!strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("from %s (X-Forwarded-For %q): %d %s; want %d", tc.remote, tc.xff, rec.Code, rec.Body, tc.want)
		}
	}
	// A real loopback client.
	n := startNode(t, cfg, nil)
	if code, body := get(t, n.url+"/auth/dev-token?sub=bob"); code != 200 || !strings.Contains(body, `"token"`) {
		t.Fatalf("loopback dev-token: %d %s", code, body)
	}
}
