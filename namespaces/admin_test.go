package namespaces_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
	"github.com/switchboard/switchboard/namespaces"
)

const adminPass = "s3cret"

var adminHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(adminPass), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// startAdmin serves "/" (any user, as start does; a token-like check
// refusing auth {user:""}) and /admin with cfg.
func startAdmin(t *testing.T, cfg namespaces.AdminConfig) string {
	t.Helper()
	s := sio.NewServer(sio.Options{CountTraffic: true})
	s.Use(func(_ context.Context, h *sio.Handshake) error { // the server's auth: never asked for /admin
		id, _ := h.Auth["user"].(string)
		if id == "" {
			return &sio.Error{Code: "token_missing", Message: "Authentication required"}
		}
		h.User = &sio.User{ID: id, Name: "N-" + id}
		return nil
	})
	s.Of("/").On("ping", func(_ context.Context, c *sio.Conn, args sio.Args, ack sio.Ack) {
		_ = c.Emit("pong", args...)
		if ack != nil {
			_ = ack("ok")
		}
	})
	if cfg.PasswordHash == "" && !cfg.NoAuth {
		cfg.PasswordHash = adminHash
	}
	cfg.ServerID = "node-a"
	cfg.StatsInterval = 200 * time.Millisecond
	a, err := namespaces.RegisterAdmin(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() { a.Close(); s.Close(); ts.Close() })
	return ts.URL
}

func dialAdmin(t *testing.T, url string, auth any) (*rawclient.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, url, "/socket.io/", "/admin", auth, nil)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// until returns the first event called name (others are skipped), failing after 5 s.
func until(t *testing.T, c *rawclient.Client, name string, match func(rawclient.Event) bool) rawclient.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", name, err)
		}
		if e.Name == name && (match == nil || match(e)) {
			return e
		}
	}
}

func unmarshal(t *testing.T, b json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

func TestAdminAuthenticationAndSessions(t *testing.T) {
	url := startAdmin(t, namespaces.AdminConfig{})
	for _, auth := range []any{nil, map[string]any{"username": "admin", "password": "wrong"}, map[string]any{"username": "root", "password": adminPass}, map[string]any{"sessionId": "made-up"}} {
		_, err := dialAdmin(t, url, auth)
		var ce *rawclient.ConnectError
		if !errors.As(err, &ce) || ce.Message != "invalid credentials" {
			t.Fatalf("auth %v: %v, want the connect_error the UI recognizes", auth, err)
		}
	}
	c, err := dialAdmin(t, url, map[string]any{"username": "admin", "password": adminPass})
	if err != nil {
		t.Fatal(err)
	}
	var session string
	unmarshal(t, until(t, c, "session", nil).Args[0], &session)
	if len(session) != 16 {
		t.Fatalf("session id %q", session)
	}
	// The UI reconnects with the session id alone.
	if _, err := dialAdmin(t, url, map[string]any{"sessionId": session}); err != nil {
		t.Fatalf("reconnect with the session id: %v", err)
	}
	// /admin does not run the server's auth: no user needed; "/" still does.
	if _, err := rawclient.Dial(context.Background(), url, "/socket.io/", "/", map[string]any{}, nil); err == nil {
		t.Fatal("the server's own auth was skipped for /")
	}
}

func TestAdminConfigStatsAndSocketEvents(t *testing.T) {
	url := startAdmin(t, namespaces.AdminConfig{})
	user := connectUser(t, url, "alice")
	adm, err := dialAdmin(t, url, map[string]any{"username": "admin", "password": adminPass})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ SupportedFeatures []string }
	unmarshal(t, until(t, adm, "config", nil).Args[0], &cfg)
	want := []string{"EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS"}
	if got, _ := json.Marshal(cfg.SupportedFeatures); string(got) != mustJSON(want) {
		t.Fatalf("features %s", got)
	}
	var all []map[string]any
	unmarshal(t, until(t, adm, "all_sockets", nil).Args[0], &all)
	found := false
	for _, s := range all {
		if s["id"] == user.SID {
			found = true
			hs := s["handshake"].(map[string]any)
			if s["nsp"] != "/" || s["transport"] != "websocket" || len(s["clientId"].(string)) != 12 || hs["url"] == "" || hs["address"] != "127.0.0.1" {
				t.Fatalf("socket serialized as %v", s)
			}
			if d := s["data"].(map[string]any); d["userId"] != "alice" {
				t.Fatalf("data %v", d)
			}
		}
	}
	if !found {
		t.Fatalf("all_sockets %v lacks %s", all, user.SID)
	}

	var stats map[string]any
	unmarshal(t, until(t, adm, "server_stats", nil).Args[0], &stats)
	if stats["serverId"] != "node-a" || stats["clientsCount"].(float64) < 2 || stats["pid"].(float64) <= 0 {
		t.Fatalf("server_stats %v", stats)
	}

	// Per-socket events, in development mode.
	bob := connectUser(t, url, "bob")
	until(t, adm, "socket_connected", func(e rawclient.Event) bool {
		var s map[string]any
		unmarshal(t, e.Args[0], &s)
		return s["id"] == bob.SID
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := bob.CallArgs(ctx, "ping", 42); err != nil {
		t.Fatal(err)
	}
	ev := until(t, adm, "event_received", nil)
	if string(ev.Args[0]) != `"/"` || string(ev.Args[1]) != `"`+bob.SID+`"` || string(ev.Args[2]) != `["ping",42]` {
		t.Fatalf("event_received %s", rawArgs(ev))
	}
	ev = until(t, adm, "event_sent", nil)
	if string(ev.Args[2]) != `["pong",42]` {
		t.Fatalf("event_sent %s", rawArgs(ev))
	}
	// The aggregated events count the traffic of each second.
	deadline := time.Now().Add(5 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("no packetsIn in aggregatedEvents")
		}
		unmarshal(t, until(t, adm, "server_stats", nil).Args[0], &stats)
		for _, a := range stats["aggregatedEvents"].([]any) {
			seen = seen || a.(map[string]any)["type"] == "packetsIn"
		}
	}

	// Commands: join, leave, emit to a room, disconnect (over the adapter's requests).
	if err := adm.Emit("join", "/", "vip", bob.SID); err != nil {
		t.Fatal(err)
	}
	until(t, adm, "room_joined", func(e rawclient.Event) bool { return string(e.Args[1]) == `"vip"` })
	if err := adm.Emit("emit", "/", "vip", "notice", "hello"); err != nil {
		t.Fatal(err)
	}
	if e := nextEventNamed(t, bob, "notice"); string(e.Args[0]) != `"hello"` {
		t.Fatalf("emit reached bob as %+v", e)
	}
	if err := adm.Emit("leave", "/", "vip", bob.SID); err != nil {
		t.Fatal(err)
	}
	until(t, adm, "room_left", func(e rawclient.Event) bool { return string(e.Args[1]) == `"vip"` })
	if err := adm.Emit("_disconnect", "/", false, bob.SID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bob.Disconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("_disconnect did not disconnect bob")
	}
	e := until(t, adm, "socket_disconnected", func(e rawclient.Event) bool { return string(e.Args[1]) == `"`+bob.SID+`"` })
	if string(e.Args[2]) != `"server namespace disconnect"` {
		t.Fatalf("reason %s", e.Args[2])
	}

	// Bad arguments and unknown namespaces are refused, the node carries on.
	for _, args := range [][]any{{"/nowhere", nil, "x"}, {42}, {"/", 7, "x"}, {"/", nil, ""}} {
		got, err := adm.CallArgs(ctx, "emit", args...)
		var r reply
		if err == nil && len(got) == 1 {
			unmarshal(t, got[0], &r)
		}
		if err != nil || r.OK || r.Error == nil || r.Error.Code != "bad_request" {
			t.Fatalf("emit %v: %v %s", args, err, got)
		}
	}
	if _, err := adm.CallArgs(ctx, "join", "/", ""); err != nil {
		t.Fatal(err)
	}
	if !alive(user) {
		t.Fatal("a refused command affected another client")
	}
}

func TestAdminReadOnlyAndProduction(t *testing.T) {
	url := startAdmin(t, namespaces.AdminConfig{ReadOnly: true, Production: true})
	user := connectUser(t, url, "alice")
	adm, err := dialAdmin(t, url, map[string]any{"username": "admin", "password": adminPass})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ SupportedFeatures []string }
	unmarshal(t, until(t, adm, "config", nil).Args[0], &cfg)
	if got, _ := json.Marshal(cfg.SupportedFeatures); string(got) != `["AGGREGATED_EVENTS"]` {
		t.Fatalf("features %s", got)
	}
	// No socket list, no per-socket events, commands not served.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = adm.Emit("_disconnect", "/", true)
	for {
		e, err := adm.Next(ctx)
		if err != nil {
			break
		}
		if e.Name != "server_stats" {
			t.Fatalf("production mode sent %s", e.Name)
		}
	}
	if !alive(user) {
		t.Fatal("a read-only admin disconnected a client")
	}
}

func TestAdminRefusesANonBcryptHash(t *testing.T) {
	if _, err := namespaces.RegisterAdmin(sio.NewServer(sio.Options{}), namespaces.AdminConfig{PasswordHash: "plain"}); err == nil {
		t.Fatal("a plain password was taken as a hash")
	}
}

func connectUser(t *testing.T, url, user string) *rawclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, url, "/socket.io/", "/", map[string]any{"user": user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func nextEventNamed(t *testing.T, c *rawclient.Client, name string) rawclient.Event {
	t.Helper()
	return until(t, c, name, nil)
}

func alive(c *rawclient.Client) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.CallArgs(ctx, "ping", 1)
	return err == nil
}

func rawArgs(e rawclient.Event) string {
	b, _ := json.Marshal(e.Args)
	return string(b)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
