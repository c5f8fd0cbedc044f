package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/server"
)

func TestLoadFlagsWinOverEnv(t *testing.T) {
	env := map[string]string{"MAX_PAYLOAD": "2048", "RATE_LIMIT": "5", "JWT_LEEWAY": "1m", "CORS_ORIGINS": "http://a, http://b"}
	cfg, err := server.Load([]string{"--rate-limit", "7", "--addr", ":4000"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxPayload != 2048 || cfg.RateLimit != 7 || cfg.Addr != ":4000" || cfg.JWTLeeway != time.Minute {
		t.Fatalf("cfg = %+v", cfg)
	}
	if len(cfg.CORSOrigins) != 2 || cfg.CORSOrigins[1] != "http://b" {
		t.Fatalf("cors = %q", cfg.CORSOrigins)
	}
	d := server.Defaults()
	if d.Addr != "" || d.MaxPayload != 1_000_000 || d.MessageMaxBytes != 4096 || d.RateLimit != 20 ||
		d.MaxConnections != 10000 || d.MaxConnsPerUser != 20 || d.RecoveryWindow != 2*time.Minute ||
		d.DedupeWindow != 5*time.Minute || d.JWTLeeway != 30*time.Second || !d.AuthRequireExp || d.AuthQueryToken {
		t.Fatalf("defaults = %+v", d)
	}
	if _, err := server.Load(nil, func(k string) string {
		return map[string]string{"PING_INTERVAL": "soon"}[k]
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "PING_INTERVAL") {
		t.Fatalf("bad env value: err = %v", err)
	}
}

type node struct {
	url string
	sb  *server.Server
}

func startNode(t *testing.T, cfg server.Config, setup func(*server.Server)) node {
	t.Helper()
	sb, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(sb)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sb.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return node{url: "http://" + ln.Addr().String(), sb: sb}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDevModeServesTokensAndProductionDoesNot(t *testing.T) {
	dev := server.Defaults()
	dev.DrainTimeout = 0
	n := startNode(t, dev, nil)
	code, body := get(t, n.url+"/auth/dev-token?sub=alice&name=Alice")
	if code != 200 {
		t.Fatalf("dev-token: %d %s", code, body)
	}
	var tok struct{ Token string }
	_ = json.Unmarshal([]byte(body), &tok)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok.Token}, nil)
	if err != nil {
		t.Fatalf("connect with dev token: %v", err)
	}
	c.Close()

	prod := dev
	prod.JWTSecret = "s"
	p := startNode(t, prod, nil)
	if code, _ := get(t, p.url+"/auth/dev-token?sub=alice"); code != 404 {
		t.Fatalf("production dev-token: %d, want 404", code)
	}
}

func TestEmbeddedHandlerPanicKeepsProcessAlive(t *testing.T) {
	cfg := server.Defaults()
	cfg.JWTSecret = "s"
	cfg.DrainTimeout = 0
	n := startNode(t, cfg, func(sb *server.Server) {
		ns := sb.Of("/buggy")
		server.Handle(ns, "crash", func(context.Context, *server.Conn, any) (any, error) {
			var m map[string]int
			m["nil map"]++ // a real bug: assignment to a nil map panics
			return nil, nil
		})
		server.Handle(ns, "ping", func(context.Context, *server.Conn, any) (string, error) { return "pong", nil })
	})
	tok, _ := n.sb.MintToken("bob", "Bob", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	auth := map[string]any{"token": tok}
	a, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/buggy", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/buggy", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for range 3 {
		raw, err := a.Call(ctx, "crash", nil)
		if err != nil || string(raw) != `{"ok":false,"error":{"code":"internal","message":"internal error"}}` {
			t.Fatalf("crash ack = %s, %v", raw, err)
		}
	}
	for _, c := range []*rawclient.Client{a, b} {
		raw, err := c.Call(ctx, "ping", nil)
		if err != nil || string(raw) != `{"ok":true,"data":"pong"}` {
			t.Fatalf("ping after panics = %s, %v", raw, err)
		}
	}
	if code, _ := get(t, n.url+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	_, metrics := get(t, n.url+"/metrics")
	if !strings.Contains(metrics, `switchboard_handler_panics_total{event="crash",namespace="/buggy"} 3`) {
		t.Fatalf("panic metric missing:\n%s", grep(metrics, "panics"))
	}
}

func TestShutdownDrainsAndReportsNotReady(t *testing.T) {
	cfg := server.Defaults()
	cfg.JWTSecret = "s"
	cfg.DrainTimeout = 300 * time.Millisecond
	n := startNode(t, cfg, nil)
	tok, _ := n.sb.MintToken("carol", "", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var clients []*rawclient.Client
	for range 3 {
		c, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	if code, _ := get(t, n.url+"/readyz"); code != 200 {
		t.Fatalf("readyz before drain: %d", code)
	}
	drained := make(chan struct{})
	go func() { n.sb.Shutdown(ctx); close(drained) }()
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, _ := get(t, n.url+"/readyz")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz while draining: %d, want 503", code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil); err == nil {
		t.Fatal("a new session was accepted while draining")
	}
	for i, c := range clients {
		select {
		case <-c.Disconnected:
		case <-time.After(5 * time.Second):
			t.Fatalf("client %d not disconnected by the drain", i)
		}
	}
	<-drained
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
