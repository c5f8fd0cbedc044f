package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/middleware"
	"github.com/switchboard/switchboard/server"
)

// lockedLog is a log sink safe for the server's goroutines.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestTokensNeverReachLogs drives every way a token reaches the server, at
// LOG_LEVEL=debug, valid and refused, then checks that no token (nor its
// signature, nor the secret) appears anywhere in the log.
func TestTokensNeverReachLogs(t *testing.T) {
	const secret = "logsecrets-hmac-secret-0123456789"
	cfg := server.Defaults()
	cfg.JWTSecret = secret
	cfg.AuthQueryToken = true
	cfg.LogLevel = "debug"
	cfg.DrainTimeout = 0
	cfg.MetricsToken = "logsecrets-metrics-token"
	var logs lockedLog
	sb, err := server.New(cfg, server.NewLogger(cfg, &logs))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { _ = sb.Serve(ctx, ln); close(served) }()
	defer func() { cancel(); <-served }()

	var tokens []string
	mint := func(sub string) string {
		tok, err := middleware.MintHS256([]byte(secret), sub, "Name "+sub, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		return tok
	}
	sign := func(key string, claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		return tok
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	mustConnect := func(what string, c *rawclient.Client, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if raw, err := c.Call(dctx, "join-room", "lobby"); err != nil || !strings.Contains(string(raw), `"ok":true`) {
			t.Fatalf("%s: join-room %s %v", what, raw, err)
		}
		c.Close()
	}
	mustRefuse := func(what, code string, err error) {
		t.Helper()
		var ce *rawclient.ConnectError
		if !errors.As(err, &ce) || ce.Data["code"] != code {
			t.Fatalf("%s: %v, want connect_error %s", what, err, code)
		}
	}

	// Valid tokens: auth payload, Authorization header, ?token= over WebSocket.
	c, err := rawclient.Dial(dctx, base, "/socket.io/", "/", map[string]any{"token": mint("via-auth")}, nil)
	mustConnect("auth payload", c, err)
	c, err = rawclient.Dial(dctx, base, "/socket.io/", "/", nil, http.Header{"Authorization": {"Bearer " + mint("via-header")}})
	mustConnect("Authorization header", c, err)
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/socket.io/?EIO=4&transport=websocket&token=" + url.QueryEscape(mint("via-query-ws"))
	ws, _, err := websocket.DefaultDialer.DialContext(dctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, open, err := ws.ReadMessage(); err != nil || open[0] != '0' {
		t.Fatalf("?token= WebSocket open: %q %v", open, err)
	}
	_ = ws.WriteMessage(websocket.TextMessage, []byte("40"))
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.HasPrefix(string(msg), `40{"sid"`) {
		t.Fatalf("?token= WebSocket connect: %q %v", msg, err)
	}
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`420["join-room","lobby"]`))
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("?token= WebSocket join-room: %v", err)
		}
		if strings.HasPrefix(string(msg), "430") {
			if !strings.HasPrefix(string(msg), `430[{"ok":true`) {
				t.Fatalf("?token= WebSocket join-room: %q", msg)
			}
			break
		}
	}
	ws.Close()

	// Refused tokens: expired, bad signature, wrong type, garbage, and a
	// malformed CONNECT packet carrying a token.
	now := time.Now()
	expired := sign(secret, jwt.MapClaims{"sub": "expired", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	_, err = rawclient.Dial(dctx, base, "/socket.io/", "/", map[string]any{"token": expired}, nil)
	mustRefuse("expired token", middleware.CodeTokenExpired, err)
	forged := sign("not-the-secret", jwt.MapClaims{"sub": "forged", "exp": now.Add(time.Hour).Unix()})
	_, err = rawclient.Dial(dctx, base, "/socket.io/", "/", map[string]any{"token": forged}, nil)
	mustRefuse("bad signature", middleware.CodeTokenInvalid, err)
	good := mint("spliced")
	parts, fparts := strings.Split(good, "."), strings.Split(forged, ".")
	spliced := parts[0] + "." + parts[1] + "." + fparts[2] // a real header and body, a wrong signature
	tokens = append(tokens, spliced)
	_, err = rawclient.Dial(dctx, base, "/socket.io/", "/", map[string]any{"token": spliced}, nil)
	mustRefuse("spliced signature", middleware.CodeTokenInvalid, err)
	_, err = rawclient.Dial(dctx, base, "/socket.io/", "/", nil, http.Header{"Authorization": {"Bearer " + expired}})
	mustRefuse("expired header token", middleware.CodeTokenExpired, err)
	garbage := "not.a-jwt.logsecrets-garbage-token"
	tokens = append(tokens, garbage)
	_, err = rawclient.Dial(dctx, base, "/socket.io/", "/", map[string]any{"token": garbage}, nil)
	mustRefuse("garbage token", middleware.CodeTokenInvalid, err)

	httpDo := func(method, u, body string, header http.Header) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(dctx, method, u, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eio := base + "/socket.io/?EIO=4"

	// Refused requests carrying ?token= (and an Authorization header).
	for _, q := range []string{
		"&transport=polling&sid=no-such-session&token=",
		"&transport=bogus&token=",
		"&transport=polling&j=1&token=",
	} {
		tok := mint("refused-" + q[11:15])
		for _, method := range []string{"GET", "POST"} {
			if code, _ := httpDo(method, eio+q+url.QueryEscape(tok), "1:6", http.Header{"Authorization": {"Bearer " + tok}}); code != 400 {
				t.Fatalf("%s %s: %d, want 400", method, q, code)
			}
		}
	}
	refusedWS := mint("refused-ws")
	if _, resp, err := websocket.DefaultDialer.DialContext(dctx,
		"ws"+strings.TrimPrefix(base, "http")+"/socket.io/?EIO=4&transport=websocket&sid=no-such-session&token="+refusedWS, nil); err == nil || resp == nil || resp.StatusCode != 400 {
		t.Fatalf("upgrade with an unknown sid: %v", err)
	}

	// A polling session with ?token= on every request; then a refused CONNECT
	// with a token in the body, and a malformed one.
	pollTok := mint("via-query-polling")
	code, body := httpDo("GET", eio+"&transport=polling&token="+url.QueryEscape(pollTok), "", nil)
	i := strings.Index(body, `"sid":"`)
	if code != 200 || i < 0 {
		t.Fatalf("polling handshake with ?token=: %d %q", code, body)
	}
	sid := body[i+7 : i+7+strings.IndexByte(body[i+7:], '"')]
	poll := eio + "&transport=polling&sid=" + sid + "&token=" + url.QueryEscape(pollTok)
	if code, body := httpDo("POST", poll, "40", nil); code != 200 || body != "ok" {
		t.Fatalf("polling CONNECT: %d %q", code, body)
	}
	if code, body := httpDo("GET", poll, "", nil); code != 200 || !strings.Contains(body, `40{"sid"`) {
		t.Fatalf("polling CONNECT answer: %d %q", code, body)
	}
	badBody := mint("connect-body-other-nsp")
	if code, _ := httpDo("POST", poll, `40/nope,{"token":"`+badBody+`"}`, nil); code != 200 {
		t.Fatalf("CONNECT to an unknown namespace: %d", code)
	}
	_, _ = httpDo("GET", poll, "", nil)
	malformed := mint("malformed-connect")
	_, _ = httpDo("POST", poll, `40{"token":"`+malformed+`"`, nil)

	// /metrics with a wrong and the right METRICS_TOKEN.
	if code, _ := httpDo("GET", base+"/metrics", "", http.Header{"Authorization": {"Bearer " + mint("metrics-wrong")}}); code != 401 {
		t.Fatalf("/metrics with a JWT: %d, want 401", code)
	}
	if code, _ := httpDo("GET", base+"/metrics", "", http.Header{"Authorization": {"Bearer " + cfg.MetricsToken}}); code != 200 {
		t.Fatalf("/metrics with METRICS_TOKEN: %d", code)
	}

	cancel() // drain and stop: every log line is written
	<-served
	log := logs.String()
	for _, want := range []string{`"eio: request refused"`, `"level":"debug"`, `"event":"join-room"`} {
		if !strings.Contains(log, want) {
			t.Fatalf("the log lacks %s: is debug logging on?\n%s", want, log)
		}
	}
	secrets := map[string]string{"JWT_SECRET": secret, "METRICS_TOKEN": cfg.MetricsToken}
	for _, tok := range tokens {
		secrets["token "+tok] = tok
		if p := strings.Split(tok, "."); len(p) == 3 {
			secrets["signature of "+tok] = p[2]
		}
		secrets["query-escaped token "+tok] = url.QueryEscape(tok)
	}
	for what, s := range secrets {
		if strings.Contains(log, s) {
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("%s found in the log: %s", what, line)
				}
			}
		}
	}
	t.Logf("checked %d secrets against %d log lines", len(secrets), strings.Count(log, "\n"))
}
