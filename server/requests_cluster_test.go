package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/server"
)

// waitServers waits until ns counts n servers.
func waitServers(t *testing.T, ns *server.Namespace, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := ns.ServerCount(ctx)
		cancel()
		if err == nil && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server count %d (%v), want %d", got, err, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// drain reads c's events until it is disconnected (bounded).
func drain(t *testing.T, c *rawclient.Client, d time.Duration) []rawclient.Event {
	t.Helper()
	var out []rawclient.Event
	timeout := time.After(d)
	for {
		select {
		case e := <-c.Events:
			out = append(out, e)
		case <-c.Disconnected:
			for {
				select {
				case e := <-c.Events:
					out = append(out, e)
				default:
					return out
				}
			}
		case <-timeout:
			t.Fatalf("not disconnected within %v", d)
		}
	}
}

func userLeft(events []rawclient.Event) []string {
	out := []string{}
	for _, e := range events {
		if e.Name == "user-left" {
			var m struct{ UserID string }
			_ = json.Unmarshal(e.Args[0], &m)
			out = append(out, m.UserID)
		}
	}
	return out
}

// The cluster-wide operations of a Namespace, between two nodes.
func TestNamespaceRequestsAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	a, b := clusterNode(t, r.URL, "qa"), clusterNode(t, r.URL, "qb")
	nsA, nsB := a.sb.Of("/"), b.sb.Of("/")
	waitServers(t, nsA, 2)
	waitServers(t, nsB, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	alice := join(t, a, "alice", "lobby")
	bob := join(t, b, "bob", "lobby")
	erin := join(t, b, "erin", "lobby")
	carol := join(t, b, "carol", "elsewhere")

	// fetchSockets: this node's and the other's.
	socks, err := nsA.FetchSockets(ctx, server.BroadcastOpts{Rooms: []string{"lobby"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range socks {
		m, _ := s.Data.(map[string]any)
		got = append(got, fmt.Sprintf("%s/%v", s.ID, m["userId"]))
	}
	sort.Strings(got)
	want := []string{alice.SID + "/alice", bob.SID + "/bob", erin.SID + "/erin"}
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fetchSockets(lobby) = %v, want %v", got, want)
	}
	if local, _ := nsA.FetchSockets(ctx, server.BroadcastOpts{Rooms: []string{"lobby"}, Local: true}); len(local) != 1 {
		t.Fatalf("local fetchSockets = %v", local)
	}

	// socketsJoin from node b, then a broadcast from node a to the new room.
	if err := nsB.SocketsJoin(ctx, server.BroadcastOpts{Rooms: []string{"lobby"}, Except: []string{erin.SID}}, "vip"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, _ := nsA.FetchSockets(ctx, server.BroadcastOpts{Rooms: []string{"vip"}})
		if len(s) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vip has %d members", len(s))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := nsA.To("vip").Emit("vip-news", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	nextNamed(t, alice, "vip-news", 3*time.Second)
	nextNamed(t, bob, "vip-news", 3*time.Second)

	// serverSideEmit: node b's handler answers node a.
	received := make(chan string, 4)
	nsB.OnServerSideEmit(func(_ context.Context, event string, args []any) any {
		received <- fmt.Sprint(event, args)
		return map[string]any{"from": "qb", "event": event}
	})
	if err := nsA.ServerSideEmit(ctx, "note", "x", 2); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-received:
		if e != "note[x 2]" {
			t.Fatalf("node b received %q", e)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("node b received nothing")
	}
	acks, err := nsA.ServerSideEmitWithAck(ctx, "ping")
	if err != nil || !reflect.DeepEqual(acks, []any{map[string]any{"from": "qb", "event": "ping"}}) {
		t.Fatalf("serverSideEmitWithAck = %#v, %v", acks, err)
	}

	// disconnectSockets: as Node, node b disconnects its lobby members one at
	// a time (in join order) and each one's user-left reaches those still
	// connected; alice's (node a) arrives after the whole batch.
	if err := nsA.DisconnectSockets(ctx, server.BroadcastOpts{Rooms: []string{"lobby"}}, false); err != nil {
		t.Fatal(err)
	}
	evAlice, evBob, evErin := drain(t, alice, 5*time.Second), drain(t, bob, 5*time.Second), drain(t, erin, 5*time.Second)
	if got := userLeft(evBob); len(got) != 0 {
		t.Errorf("bob (disconnected first) got user-left %v", got)
	}
	if got := userLeft(evErin); !reflect.DeepEqual(got, []string{"bob"}) {
		t.Errorf("erin got user-left %v, want [bob]", got)
	}
	if got := userLeft(evAlice); len(got) != 0 {
		t.Errorf("alice got user-left %v", got)
	}
	select {
	case <-carol.Disconnected:
		t.Fatal("carol (not in lobby) was disconnected")
	case <-time.After(200 * time.Millisecond):
	}
}

// On one node the same calls act locally.
func TestNamespaceRequestsOneNode(t *testing.T) {
	cfg := server.Defaults()
	cfg.JWTSecret = "one-node-secret"
	cfg.DrainTimeout = 0
	n := startNode(t, cfg, nil)
	ns := n.sb.Of("/")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bob := join(t, n, "bob", "lobby")
	erin := join(t, n, "erin", "lobby")
	if c, err := ns.ServerCount(ctx); err != nil || c != 1 {
		t.Fatalf("serverCount = %d, %v", c, err)
	}
	socks, err := ns.FetchSockets(ctx, server.BroadcastOpts{Rooms: []string{"lobby"}})
	if err != nil || len(socks) != 2 || socks[0].ID != bob.SID || socks[1].ID != erin.SID {
		t.Fatalf("fetchSockets = %+v, %v (in join order)", socks, err)
	}
	if err := ns.SocketsJoin(ctx, server.BroadcastOpts{Rooms: []string{bob.SID}}, "solo"); err != nil {
		t.Fatal(err)
	}
	if s, _ := ns.FetchSockets(ctx, server.BroadcastOpts{Rooms: []string{"solo"}}); len(s) != 1 || s[0].ID != bob.SID {
		t.Fatalf("solo = %+v", s)
	}
	if err := ns.SocketsLeave(ctx, server.BroadcastOpts{}, "solo"); err != nil {
		t.Fatal(err)
	}
	if s, _ := ns.FetchSockets(ctx, server.BroadcastOpts{Rooms: []string{"solo"}}); len(s) != 0 {
		t.Fatalf("solo after leave = %+v", s)
	}
	if acks, err := ns.ServerSideEmitWithAck(ctx, "x"); err != nil || len(acks) != 0 {
		t.Fatalf("serverSideEmitWithAck alone = %v, %v", acks, err)
	}
	if err := ns.DisconnectSockets(ctx, server.BroadcastOpts{Rooms: []string{"lobby"}}, false); err != nil {
		t.Fatal(err)
	}
	if got := userLeft(drain(t, erin, 5*time.Second)); !reflect.DeepEqual(got, []string{"bob"}) {
		t.Errorf("erin got user-left %v, want [bob]", got)
	}
	if got := userLeft(drain(t, bob, 5*time.Second)); len(got) != 0 {
		t.Errorf("bob got user-left %v", got)
	}
}
