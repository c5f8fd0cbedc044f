package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/server"
)

func clusterNode(t *testing.T, redisURL, id string) node {
	cfg := server.Defaults()
	cfg.JWTSecret = "cluster-secret"
	cfg.Adapter = "redis"
	cfg.RedisURL = redisURL
	cfg.RedisPrefix = "sbtest"
	cfg.NodeID = id
	cfg.DrainTimeout = 0
	return startNode(t, cfg, nil)
}

func join(t *testing.T, n node, user, room string) *rawclient.Client {
	t.Helper()
	tok, _ := n.sb.MintToken(user, "N-"+user, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if raw, err := c.Call(ctx, "join-room", room); err != nil || !json.Valid(raw) {
		t.Fatalf("join: %s %v", raw, err)
	}
	return c
}

func nextNamed(t *testing.T, c *rawclient.Client, name string, d time.Duration) json.RawMessage {
	t.Helper()
	return nextEvent(t, c, name, d)[0]
}

func TestRoomMessagesCrossNodes(t *testing.T) {
	r := redistest.Start(t)
	a, b := clusterNode(t, r.URL, "na"), clusterNode(t, r.URL, "nb")
	ca := join(t, a, "alice", "lobby")
	cb := join(t, b, "bob", "lobby")
	other := join(t, b, "carol", "elsewhere")
	time.Sleep(100 * time.Millisecond) // subscriptions settle
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := ca.Call(ctx, "message", map[string]any{"roomId": "lobby", "text": "hi from a", "clientId": "m1"})
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		OK bool
		ID string
	}
	_ = json.Unmarshal(raw, &ack)
	got := nextNamed(t, cb, "message", 3*time.Second)
	var m struct{ ID, RoomID, UserID, Text string }
	_ = json.Unmarshal(got, &m)
	if !ack.OK || m.ID != ack.ID || m.UserID != "alice" || m.Text != "hi from a" || m.RoomID != "lobby" {
		t.Fatalf("ack %s, node b got %s", raw, got)
	}
	// The sender (on node a) gets its own message exactly once.
	nextNamed(t, ca, "message", 3*time.Second)
	quick, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	for {
		e, err := ca.Next(quick)
		if err != nil {
			break
		}
		if e.Name == "message" {
			t.Fatalf("sender got its message twice")
		}
	}
	// Not a member: nothing.
	for {
		e, err := other.Next(quick)
		if err != nil {
			break
		}
		if e.Name == "message" {
			t.Fatalf("non-member got %s", e.Args[0])
		}
	}
}

func TestPresenceIsClusterWide(t *testing.T) {
	r := redistest.Start(t)
	a, b := clusterNode(t, r.URL, "pa"), clusterNode(t, r.URL, "pb")
	watcher := join(t, b, "walter", "lobby")
	tab1 := join(t, a, "alice", "lobby")
	if got := nextNamed(t, watcher, "user-joined", 3*time.Second); !json.Valid(got) {
		t.Fatal(string(got))
	}
	tab2 := join(t, b, "alice", "lobby") // second tab, other node: no new user-joined
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := watcher.Call(ctx, "presence", "lobby")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Members []struct {
			UserID      string
			Connections int
		}
	}
	_ = json.Unmarshal(raw, &p)
	if len(p.Members) != 2 || p.Members[0].UserID != "alice" || p.Members[0].Connections != 2 {
		t.Fatalf("presence across nodes = %s", raw)
	}
	tab1.Close()
	quiet, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	for {
		e, err := watcher.Next(quiet)
		if err != nil {
			break
		}
		if e.Name == "user-left" || e.Name == "user-joined" {
			t.Fatalf("watcher got %s %s while alice still has a tab", e.Name, e.Args[0])
		}
	}
	tab2.Close()
	if got := nextNamed(t, watcher, "user-left", 3*time.Second); !json.Valid(got) {
		t.Fatal(string(got))
	}
}

func TestPerUserLimitCountsAllNodes(t *testing.T) {
	r := redistest.Start(t)
	cfg := func(id string) server.Config {
		c := server.Defaults()
		c.JWTSecret, c.Adapter, c.RedisURL, c.NodeID, c.DrainTimeout, c.MaxConnsPerUser = "s", "redis", r.URL, id, 0, 2
		return c
	}
	a, b := startNode(t, cfg("la"), nil), startNode(t, cfg("lb"), nil)
	tok, _ := a.sb.MintToken("dora", "Dora", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, n := range []node{a, b} {
		c, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
	}
	_, err := rawclient.Dial(ctx, a.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
	var ce *rawclient.ConnectError
	if !errors.As(err, &ce) || ce.Message != "Too many connections" || ce.Data["code"] != "limit_connections" {
		t.Fatalf("third connection across nodes: %v", err)
	}
}
