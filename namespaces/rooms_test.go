package namespaces_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
	"github.com/switchboard/switchboard/namespaces"
)

// start serves namespace "/" with a test auth: the auth payload names the user.
func start(t *testing.T, cfg namespaces.RoomsConfig) string {
	t.Helper()
	url, _ := startOpts(t, sio.Options{}, cfg)
	return url
}

// startOpts is start with the server's options (a cluster, say); it also
// returns the namespace.
func startOpts(t *testing.T, opts sio.Options, cfg namespaces.RoomsConfig) (string, *namespaces.Rooms) {
	t.Helper()
	s := sio.NewServer(opts)
	s.Use(func(_ context.Context, h *sio.Handshake) error {
		id, _ := h.Auth["user"].(string)
		var rooms []string
		if r, ok := h.Auth["rooms"].([]any); ok {
			rooms = []string{}
			for _, x := range r {
				rooms = append(rooms, x.(string))
			}
		}
		h.User = &sio.User{ID: id, Name: "N-" + id, Rooms: rooms}
		return nil
	})
	cfg.NodeID = "t"
	r := namespaces.RegisterRooms(s, cfg)
	mux := http.NewServeMux()
	mux.Handle(s.Path(), s.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() { s.Close(); ts.Close() })
	return ts.URL, r
}

func connect(t *testing.T, url, user string, extra ...any) *rawclient.Client {
	t.Helper()
	auth := map[string]any{"user": user}
	if len(extra) == 1 {
		auth["rooms"] = extra[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, url, "/socket.io/", "/", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The first event of a new connection says who it is (and carries a recovery offset).
	if e, err := c.Next(ctx); err != nil || e.Name != "session" || string(e.Args[0]) != `{"userId":"`+user+`","name":"N-`+user+`"}` {
		t.Fatalf("first event = %+v, %v", e, err)
	}
	return c
}

type reply struct {
	OK    bool `json:"ok"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
	ID        string           `json:"id"`
	TS        int64            `json:"ts"`
	Duplicate bool             `json:"duplicate"`
	Members   []map[string]any `json:"members"`
	Room      string           `json:"room"`
}

func call(t *testing.T, c *rawclient.Client, event string, arg any) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := c.Call(ctx, event, arg)
	if err != nil {
		t.Fatal(err)
	}
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s", raw)
	}
	return r
}

func code(r reply) string {
	if r.Error == nil {
		return "ok"
	}
	return r.Error.Code
}

// events drains what c received within d.
func events(c *rawclient.Client, d time.Duration) []rawclient.Event {
	var out []rawclient.Event
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		e, err := c.Next(ctx)
		if err != nil {
			return out
		}
		out = append(out, e)
	}
}

func names(evs []rawclient.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name)
	}
	return out
}

func TestMultiTabPresence(t *testing.T) {
	url := start(t, namespaces.RoomsConfig{})
	watcher := connect(t, url, "w")
	call(t, watcher, "join-room", "r")
	tab1, tab2 := connect(t, url, "alice"), connect(t, url, "alice")
	call(t, tab1, "join-room", "r")
	call(t, tab2, "join-room", "r")
	if got := names(events(watcher, 200*time.Millisecond)); len(got) != 1 || got[0] != "user-joined" {
		t.Fatalf("watcher after two tabs joined: %v, want one user-joined", got)
	}
	if got := names(events(tab1, 50*time.Millisecond)); len(got) != 0 {
		t.Fatalf("joining tab got %v", got)
	}
	p := call(t, watcher, "presence", "r")
	if len(p.Members) != 2 || p.Members[0]["userId"] != "alice" || p.Members[0]["connections"] != float64(2) {
		t.Fatalf("presence = %+v", p.Members)
	}
	call(t, tab1, "leave-room", "r")
	if got := names(events(watcher, 200*time.Millisecond)); len(got) != 0 {
		t.Fatalf("one tab left, watcher got %v", got)
	}
	tab2.Close() // the last connection goes away
	got := events(watcher, time.Second)
	if len(got) != 1 || got[0].Name != "user-left" || string(got[0].Args[0]) != `{"roomId":"r","userId":"alice","name":"N-alice"}` {
		t.Fatalf("after last tab closed: %+v", got)
	}
}

func TestMessageErrorsAndDedupe(t *testing.T) {
	url := start(t, namespaces.RoomsConfig{MessageMaxBytes: 10, MaxRoomsPerConn: 2})
	a := connect(t, url, "a")
	limited := connect(t, url, "l", []any{"team-*"})
	for _, tc := range []struct {
		c     *rawclient.Client
		event string
		arg   any
		want  string
	}{
		{a, "message", map[string]any{"roomId": "r", "text": "hi"}, "not_in_room"},
		{a, "join-room", "bad room!", "invalid_room"},
		{a, "join-room", "user:a", "forbidden_room"},
		{limited, "join-room", "general", "forbidden_room"},
		{limited, "join-room", "team-x", "ok"},
		{limited, "presence", "general", "forbidden_room"},
		{a, "join-room", "r", "ok"},
		{a, "join-room", "r", "ok"}, // idempotent, does not count twice
		{a, "join-room", "s", "ok"},
		{a, "join-room", "t", "too_many_rooms"},
		{a, "leave-room", "t", "not_in_room"},
		{a, "message", map[string]any{"roomId": "r", "text": "0123456789x"}, "payload_too_large"},
		{a, "message", map[string]any{"roomId": "r", "text": ""}, "bad_request"},
		{a, "message", map[string]any{"roomId": "r"}, "bad_request"},
		{a, "message", map[string]any{"roomId": "r", "text": 5}, "bad_request"},
		{a, "message", "r", "bad_request"},
		{a, "message", map[string]any{"roomId": "r", "text": "x", "clientId": ""}, "bad_request"},
	} {
		if got := code(call(t, tc.c, tc.event, tc.arg)); got != tc.want {
			t.Errorf("%s %v: %s, want %s", tc.event, tc.arg, got, tc.want)
		}
	}
	first := call(t, a, "message", map[string]any{"roomId": "r", "text": "once", "clientId": "c-1"})
	again := call(t, a, "message", map[string]any{"roomId": "r", "text": "once", "clientId": "c-1"})
	if !first.OK || first.Duplicate || !again.Duplicate || again.ID != first.ID || again.TS != first.TS {
		t.Fatalf("first %+v, again %+v", first, again)
	}
	var msgs int
	for _, e := range events(a, 200*time.Millisecond) {
		if e.Name == "message" {
			msgs++
		}
	}
	if msgs != 1 {
		t.Fatalf("room saw %d copies of a retried message, want 1", msgs)
	}
}

func TestConcurrentSendersAllMembersSeeOneOrder(t *testing.T) {
	url := start(t, namespaces.RoomsConfig{})
	const perSender = 100
	senders := []*rawclient.Client{connect(t, url, "s1"), connect(t, url, "s2")}
	readers := []*rawclient.Client{connect(t, url, "r1"), connect(t, url, "r2")}
	for _, c := range append(append([]*rawclient.Client{}, senders...), readers...) {
		call(t, c, "join-room", "r")
	}
	events(readers[0], 100*time.Millisecond)
	events(readers[1], 100*time.Millisecond)
	var wg sync.WaitGroup
	for si, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				_ = s.Emit("message", map[string]any{"roomId": "r", "text": string(rune('a'+si)) + string(rune('0'+i%10))})
			}
		}()
	}
	wg.Wait()
	seqs := make([][]string, len(readers))
	for ri, r := range readers {
		deadline := time.Now().Add(10 * time.Second)
		for len(seqs[ri]) < 2*perSender && time.Now().Before(deadline) {
			for _, e := range events(r, 100*time.Millisecond) {
				if e.Name != "message" {
					continue
				}
				var m struct{ ID, UserID, Text string }
				_ = json.Unmarshal(e.Args[0], &m)
				seqs[ri] = append(seqs[ri], m.ID)
			}
		}
		if len(seqs[ri]) != 2*perSender {
			t.Fatalf("reader %d got %d messages, want %d", ri, len(seqs[ri]), 2*perSender)
		}
	}
	for i := range seqs[0] {
		if seqs[0][i] != seqs[1][i] {
			t.Fatalf("readers disagree on the order at %d: %s vs %s", i, seqs[0][i], seqs[1][i])
		}
	}
}
