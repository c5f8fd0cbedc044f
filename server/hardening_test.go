package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/server"
)

// Loopback source addresses for the per-IP cases.
const (
	attackerIP  = "127.0.0.2"
	bystanderIP = "127.0.0.3"
)

func hardenedConfig() server.Config {
	cfg := server.Defaults()
	cfg.JWTSecret = "s"
	cfg.DrainTimeout = 0
	return cfg
}

// httpFrom is an HTTP client whose connections come from the local IP from.
func httpFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}
}

type answer struct {
	status     int
	retryAfter string
	body       string
}

func do(t *testing.T, c *http.Client, method, url string, header http.Header, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return answer{status: resp.StatusCode} // the body is the WebSocket: not read
	}
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
}

// pollingHandshake opens an Engine.IO session (no namespace) and returns its sid.
func pollingHandshake(t *testing.T, c *http.Client, base string, header http.Header) (string, answer) {
	t.Helper()
	a := do(t, c, "GET", base+"/socket.io/?EIO=4&transport=polling", header, "")
	if a.status != 200 {
		return "", a
	}
	i := strings.Index(a.body, `"sid":"`)
	if i < 0 {
		t.Fatalf("no sid in %q", a.body)
	}
	rest := a.body[i+7:]
	return rest[:strings.IndexByte(rest, '"')], a
}

func metric(t *testing.T, base, line string) bool {
	t.Helper()
	_, m := get(t, base+"/metrics")
	return strings.Contains(m, line)
}

// Measurement 1 of issue 10: a token-less handshake flood from one IP no
// longer locks users out. The attacker's sessions never count against
// MAX_CONNECTIONS, its IP is capped, and a user from another IP connects.
func TestTokenlessFloodLeavesUsersIn(t *testing.T) {
	cfg := hardenedConfig()
	cfg.MaxConnections = 5
	cfg.MaxConnsPerIP = 30
	cfg.HandshakeRatePerIP = 0
	n := startNode(t, cfg, nil)
	attacker := httpFrom(attackerIP)
	accepted, refused := 0, 0
	for range 50 {
		if sid, a := pollingHandshake(t, attacker, n.url, nil); sid != "" {
			accepted++
		} else if a.status == http.StatusTooManyRequests && a.retryAfter != "" {
			refused++
		} else {
			t.Fatalf("attacker handshake: %+v", a)
		}
	}
	if accepted != 30 || refused != 20 {
		t.Fatalf("attacker: %d accepted, %d refused; want 30 and 20 (MAX_CONNECTIONS_PER_IP)", accepted, refused)
	}
	if !metric(t, n.url, `switchboard_handshake_refusals_total{reason="ip_limit"} 20`) ||
		!metric(t, n.url, "switchboard_pending_sessions 30") {
		t.Fatal("refusals or pending sessions not counted")
	}
	tok, _ := n.sb.MintToken("user", "", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range cfg.MaxConnections {
		c, err := rawclient.DialFrom(ctx, bystanderIP, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
		if err != nil {
			t.Fatalf("user connection %d during the flood: %v", i, err)
		}
		defer c.Close()
	}
	_, err := rawclient.DialFrom(ctx, bystanderIP, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
	var ce *rawclient.ConnectError
	if !errors.As(err, &ce) || ce.Data["code"] != "limit_connections" {
		t.Fatalf("connection over MAX_CONNECTIONS: %v, want limit_connections", err)
	}
}

func TestPendingSessionsCappedAndShortLived(t *testing.T) {
	cfg := hardenedConfig()
	cfg.MaxPendingSessions = 5
	cfg.MaxConnsPerIP = 0
	cfg.HandshakeRatePerIP = 0
	cfg.HandshakeTimeout = 400 * time.Millisecond
	n := startNode(t, cfg, nil)
	c := httpFrom(attackerIP)
	for i := range 5 {
		if sid, a := pollingHandshake(t, c, n.url, nil); sid == "" {
			t.Fatalf("handshake %d: %+v", i, a)
		}
	}
	_, a := pollingHandshake(t, c, n.url, nil)
	if a.status != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("handshake over MAX_PENDING_SESSIONS: %+v, want 503 with Retry-After", a)
	}
	// A session that connects is no longer pending: room for another.
	tok, _ := n.sb.MintToken("u", "", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline := time.Now().Add(5 * time.Second)
	for !metric(t, n.url, "switchboard_pending_sessions 0") {
		if time.Now().After(deadline) {
			t.Fatal("pending sessions were not closed after HANDSHAKE_TIMEOUT")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !metric(t, n.url, "switchboard_handshake_timeouts_total 5") {
		t.Fatal("handshake timeouts not counted")
	}
	cl, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 5 {
		if sid, a := pollingHandshake(t, c, n.url, nil); sid == "" {
			t.Fatalf("handshake %d after the timeouts: %+v", i, a)
		}
	}
	if !metric(t, n.url, "switchboard_pending_sessions 5") {
		t.Fatal("a connected session is still counted as pending")
	}
}

func TestHandshakeRatePerIP(t *testing.T) {
	cfg := hardenedConfig()
	cfg.HandshakeRatePerIP = 2
	cfg.HandshakeBurstPerIP = 4
	n := startNode(t, cfg, nil)
	attacker, user := httpFrom(attackerIP), httpFrom(bystanderIP)
	ok, limited := 0, 0
	for range 10 {
		if sid, a := pollingHandshake(t, attacker, n.url, nil); sid != "" {
			ok++
		} else if a.status == http.StatusTooManyRequests && a.retryAfter == "1" {
			limited++
		} else {
			t.Fatalf("unexpected answer %+v", a)
		}
	}
	// 4 of the burst, plus at most one token refilled meanwhile.
	if ok < 4 || ok > 5 || limited != 10-ok {
		t.Fatalf("%d admitted, %d limited; want the burst of 4 (+1) admitted", ok, limited)
	}
	for i := range 4 {
		if sid, a := pollingHandshake(t, user, n.url, nil); sid == "" {
			t.Fatalf("user from another IP refused (%d): %+v", i, a)
		}
	}
	if !metric(t, n.url, fmt.Sprintf(`switchboard_handshake_refusals_total{reason="ip_rate"} %d`, limited)) {
		t.Fatal("rate refusals not counted")
	}
}

func wsUpgradeHeader(origin string) http.Header {
	h := http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return h
}

// Measurement 5: an upgrade from a foreign Origin is refused in production.
func TestOriginChecked(t *testing.T) {
	cfg := hardenedConfig()
	cfg.CORSOrigins = []string{"https://good.example"}
	n := startNode(t, cfg, nil)
	c := &http.Client{Timeout: 5 * time.Second}
	wsURL := n.url + "/socket.io/?EIO=4&transport=websocket"
	for _, tc := range []struct {
		origin string
		want   int
	}{{"https://evil.example", 403}, {"https://good.example", 101}, {"", 101}} {
		if a := do(t, c, "GET", wsURL, wsUpgradeHeader(tc.origin), ""); a.status != tc.want {
			t.Errorf("WebSocket handshake from Origin %q: %d, want %d", tc.origin, a.status, tc.want)
		}
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		want := tc.want
		if want == 101 {
			want = 200
		}
		if _, a := pollingHandshake(t, c, n.url, h); a.status != want {
			t.Errorf("polling handshake from Origin %q: %d, want %d", tc.origin, a.status, want)
		}
	}
	// Upgrading an existing session from a foreign origin is refused too.
	sid, _ := pollingHandshake(t, c, n.url, nil)
	if a := do(t, c, "GET", wsURL+"&sid="+sid, wsUpgradeHeader("https://evil.example"), ""); a.status != 403 {
		t.Errorf("upgrade from a foreign Origin: %d, want 403", a.status)
	}
	if !metric(t, n.url, `switchboard_handshake_refusals_total{reason="origin"} 3`) {
		t.Error("origin refusals not counted")
	}

	// Without CORS_ORIGINS only the same origin may connect.
	same := startNode(t, hardenedConfig(), nil)
	host := strings.TrimPrefix(same.url, "http://")
	if _, a := pollingHandshake(t, c, same.url, http.Header{"Origin": {"http://" + host}}); a.status != 200 {
		t.Errorf("same-origin handshake: %+v", a)
	}
	if _, a := pollingHandshake(t, c, same.url, http.Header{"Origin": {"http://evil.example"}}); a.status != 403 {
		t.Errorf("cross-origin handshake with no CORS_ORIGINS: %d, want 403", a.status)
	}

	// Development mode accepts every origin.
	devCfg := hardenedConfig()
	devCfg.JWTSecret = ""
	dev := startNode(t, devCfg, nil)
	if a := do(t, c, "GET", dev.url+"/socket.io/?EIO=4&transport=websocket", wsUpgradeHeader("https://evil.example"), ""); a.status != 101 {
		t.Errorf("development mode refused a foreign Origin: %d", a.status)
	}
}

// Measurement 7: a sid used from another client IP is an unknown sid.
func TestSessionBoundToClientIP(t *testing.T) {
	for _, bind := range []bool{true, false} {
		t.Run(fmt.Sprint("bind=", bind), func(t *testing.T) {
			cfg := hardenedConfig()
			cfg.SessionBindIP = bind
			n := startNode(t, cfg, nil)
			owner, thief := httpFrom(attackerIP), httpFrom(bystanderIP)
			sid, a := pollingHandshake(t, owner, n.url, nil)
			if sid == "" {
				t.Fatalf("handshake: %+v", a)
			}
			base := n.url + "/socket.io/?EIO=4&transport=polling&sid=" + sid
			post := do(t, thief, "POST", base, nil, "40")
			upg := do(t, thief, "GET", strings.Replace(base, "polling", "websocket", 1), wsUpgradeHeader(""), "")
			if bind {
				if post.status != 400 || !strings.Contains(post.body, "Session ID unknown") {
					t.Fatalf("POST from another IP: %+v, want 400 Session ID unknown", post)
				}
				if upg.status != 400 {
					t.Fatalf("upgrade from another IP: %+v, want 400", upg)
				}
				if !metric(t, n.url, "switchboard_session_ip_mismatch_total 2") {
					t.Fatal("mismatches not counted")
				}
			} else if post.status != 200 || upg.status != 101 {
				t.Fatalf("SESSION_BIND_IP=0: POST %d, upgrade %d; want 200 and 101", post.status, upg.status)
			}
			// The owner's session is intact (bind on) — it can still POST.
			if bind {
				if a := do(t, owner, "POST", base, nil, "40"); a.status != 200 {
					t.Fatalf("owner's POST: %+v", a)
				}
			}
		})
	}
}

// Behind a trusted balancer the per-IP limits apply to X-Forwarded-For's
// client; a forged header from an untrusted peer changes nothing.
func TestTrustedProxiesNameTheClient(t *testing.T) {
	cfg := hardenedConfig()
	cfg.TrustedProxies = []string{"127.0.0.1/32"}
	cfg.MaxConnsPerIP = 2
	cfg.HandshakeRatePerIP = 0
	n := startNode(t, cfg, nil)
	proxy, untrusted := httpFrom("127.0.0.1"), httpFrom(attackerIP)
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	for i := range 2 {
		if sid, a := pollingHandshake(t, proxy, n.url, xff("203.0.113.7")); sid == "" {
			t.Fatalf("client 203.0.113.7 session %d: %+v", i, a)
		}
	}
	if _, a := pollingHandshake(t, proxy, n.url, xff("203.0.113.7")); a.status != 429 {
		t.Fatalf("third session of 203.0.113.7 through the proxy: %d, want 429", a.status)
	}
	if sid, a := pollingHandshake(t, proxy, n.url, xff("203.0.113.8")); sid == "" {
		t.Fatalf("another client behind the same proxy refused: %+v", a)
	}
	// An untrusted peer's forged header is ignored: its own IP counts.
	for i := range 2 {
		if sid, a := pollingHandshake(t, untrusted, n.url, xff(fmt.Sprint("198.51.100.", i))); sid == "" {
			t.Fatalf("untrusted peer session %d: %+v", i, a)
		}
	}
	if _, a := pollingHandshake(t, untrusted, n.url, xff("198.51.100.9")); a.status != 429 {
		t.Fatalf("forged X-Forwarded-For escaped the per-IP limit: %d", a.status)
	}
}

// Measurement 3: idle connections from one IP cannot take every file
// descriptor: beyond 2 x MAX_CONNECTIONS_PER_IP they are answered 429 and
// closed, and idle keep-alive ones are closed after HTTP_IDLE_TIMEOUT.
func TestIdleConnectionsFromOneIPAreBounded(t *testing.T) {
	cfg := hardenedConfig()
	cfg.MaxConnsPerIP = 5
	cfg.HTTPIdleTimeout = 300 * time.Millisecond
	n := startNode(t, cfg, nil)
	addr := strings.TrimPrefix(n.url, "http://")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackerIP)}, Timeout: 2 * time.Second}
	var conns []net.Conn
	refused := 0
	for range 15 {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 512)
		k, _ := c.Read(buf)
		if strings.HasPrefix(string(buf[:k]), "HTTP/1.1 429") {
			refused++
		} else if !strings.HasPrefix(string(buf[:k]), "HTTP/1.1 200") {
			t.Fatalf("answer %q", buf[:k])
		}
	}
	if refused != 5 {
		t.Fatalf("%d of 15 connections refused, want 5 (cap 10)", refused)
	}
	if a := do(t, httpFrom(bystanderIP), "GET", n.url+"/healthz", nil, ""); a.status != 200 {
		t.Fatalf("another IP's /healthz: %+v", a)
	}
	if !metric(t, n.url, `switchboard_handshake_refusals_total{reason="ip_connections"} 5`) {
		t.Fatal("refused connections not counted")
	}
	// The idle keep-alive connections are closed by the server.
	start := time.Now()
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("data on an idle connection")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("idle keep-alive connection still open after %v", time.Since(start))
		}
		c.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		buf := make([]byte, 64)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, _ := c.Read(buf)
		c.Close()
		if strings.HasPrefix(string(buf[:k]), "HTTP/1.1 200") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the attacker's IP still refused after its connections closed: %q", buf[:k])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
