package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/server"
)

// liveBody is GET /live.json, decoded strictly.
type liveBody struct {
	Node        string    `json:"node"`
	Adapter     string    `json:"adapter"`
	At          time.Time `json:"at"`
	Connections struct {
		Polling   int `json:"polling"`
		WebSocket int `json:"websocket"`
		Total     int `json:"total"`
	} `json:"connections"`
	Rooms  int `json:"rooms"`
	Events struct {
		In  []uint64 `json:"in"`
		Out []uint64 `json:"out"`
	} `json:"eventsPerSecond"`
	Cluster struct {
		Nodes   []string `json:"nodes"`
		Servers int      `json:"servers"`
		Stale   bool     `json:"stale"`
	} `json:"cluster"`
}

func sum(v []uint64) (n uint64) {
	for _, x := range v {
		n += x
	}
	return n
}

// liveGet fetches url (with an optional Authorization header) and returns
// the status and body.
func liveGet(t *testing.T, url, auth string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// live fetches and decodes /live.json, failing on any field it does not know
// and on any it lacks.
func live(t *testing.T, base string) liveBody {
	t.Helper()
	code, h, b := liveGet(t, base+"/live.json", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("/live.json: %d %q %q %s", code, h.Get("Content-Type"), h.Get("Cache-Control"), b)
	}
	var v liveBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("/live.json %s: %v", b, err)
	}
	var keys map[string]map[string]json.RawMessage
	var top map[string]json.RawMessage
	_ = json.Unmarshal(b, &top)
	keys = map[string]map[string]json.RawMessage{}
	for _, k := range []string{"connections", "eventsPerSecond", "cluster"} {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(top[k], &m); err != nil {
			t.Fatalf("/live.json %s: %q is not an object", b, k)
		}
		keys[k] = m
	}
	want := map[string][]string{
		"":                {"node", "adapter", "at", "connections", "rooms", "eventsPerSecond", "cluster"},
		"connections":     {"polling", "websocket", "total"},
		"eventsPerSecond": {"in", "out"},
		"cluster":         {"nodes", "servers", "stale"},
	}
	for obj, names := range want {
		m := keys[obj]
		if obj == "" {
			m = top
		}
		for _, k := range names {
			if raw, ok := m[k]; !ok || string(raw) == "null" {
				t.Fatalf("/live.json %s: %s.%s missing or null", b, obj, k)
			}
		}
	}
	if len(v.Events.In) != len(v.Events.Out) || len(v.Events.In) > 10 {
		t.Fatalf("/live.json %s: want as many in as out, 10 at most", b)
	}
	if c := v.Connections; c.Total < c.Polling+c.WebSocket {
		t.Fatalf("/live.json %s: total below polling + websocket", b)
	}
	if time.Since(v.At) > 5*time.Second || time.Until(v.At) > time.Second {
		t.Fatalf("/live.json %s: at is not now", b)
	}
	return v
}

// eventuallyLive polls /live.json every 100 ms until ok, for d at most.
func eventuallyLive(t *testing.T, base string, d time.Duration, what string, ok func(liveBody) bool) liveBody {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v := live(t, base)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("/live.json: no %s within %v; last %+v", what, d, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestLiveJSONCountsConnectionsAndEvents(t *testing.T) {
	cfg := server.Defaults() // development mode: open
	cfg.NodeID = "live-a"
	cfg.DrainTimeout = 0
	n := startNode(t, cfg, nil)

	v := live(t, n.url) // starts the sampler
	if v.Node != "live-a" || v.Adapter != "memory" || v.Connections.Total != 0 || v.Rooms != 0 ||
		!slices.Equal(v.Cluster.Nodes, []string{"live-a"}) || v.Cluster.Servers != 1 || v.Cluster.Stale {
		t.Fatalf("idle node: %+v", v)
	}
	if sum(v.Events.In) != 0 || sum(v.Events.Out) != 0 {
		t.Fatalf("events on an idle node: %+v", v.Events)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, _ := n.sb.MintToken("alice", "Alice", time.Hour)
	a, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	eventuallyLive(t, n.url, 5*time.Second, "connection", func(v liveBody) bool {
		return v.Connections.Total == 1 && v.Connections.WebSocket == 1
	})
	for _, call := range []struct {
		event string
		arg   any
	}{
		{"join-room", "lobby"},
		{"message", map[string]any{"roomId": "lobby", "text": "one", "clientId": "l1"}},
		{"message", map[string]any{"roomId": "lobby", "text": "two", "clientId": "l2"}},
	} {
		if raw, err := a.Call(ctx, call.event, call.arg); err != nil || !strings.Contains(string(raw), `"ok":true`) {
			t.Fatalf("%s: %s %v", call.event, raw, err)
		}
	}
	// Three events in; the two message broadcasts out (2 s: the sampler ticks every second).
	v = eventuallyLive(t, n.url, 3*time.Second, "events", func(v liveBody) bool {
		return sum(v.Events.In) >= 3 && sum(v.Events.Out) >= 2
	})
	if v.Rooms < 1 || sum(v.Events.In) > 3 {
		t.Fatalf("after join and 2 messages: %+v", v)
	}
}

func TestLiveJSONAccessFollowsMetrics(t *testing.T) {
	type probe struct {
		metricsAddr bool   // ask METRICS_ADDR's listener rather than ADDR's
		auth        string // Authorization
		want        int
	}
	cases := []struct {
		name        string
		dev         bool
		token       string
		metricsAddr bool
		probes      []probe
	}{
		{"development: open even with METRICS_TOKEN", true, "tok", false, []probe{{false, "", 200}}},
		{"production, METRICS_TOKEN: bearer", false, "tok", false, []probe{
			{false, "", 401}, {false, "Bearer nope", 401}, {false, "Basic tok", 401}, {false, "Bearer tok", 200},
		}},
		{"production, no token: open as /metrics", false, "", false, []probe{{false, "", 200}}},
		{"production, METRICS_ADDR, no token: not on ADDR", false, "", true, []probe{{false, "", 404}, {true, "", 200}}},
		{"production, METRICS_ADDR, METRICS_TOKEN: bearer on both", false, "tok", true, []probe{
			{false, "", 401}, {false, "Bearer tok", 200}, {true, "", 401}, {true, "Bearer tok", 200},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server.Defaults()
			cfg.DrainTimeout = 0
			cfg.NodeID = "acc"
			if !tc.dev {
				cfg.JWTSecret = "s"
			}
			cfg.MetricsToken = tc.token
			var priv string
			if tc.metricsAddr {
				cfg.MetricsAddr = hygFreeAddr(t)
				priv = "http://" + cfg.MetricsAddr
			}
			sb, err := server.New(cfg, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := hygServe(t, sb)
			hygWaitUp(t, pub+"/healthz")
			if priv != "" {
				hygWaitUp(t, priv+"/metrics")
			}
			for _, p := range tc.probes {
				base := pub
				if p.metricsAddr {
					base = priv
				}
				code, h, b := liveGet(t, base+"/live.json", p.auth)
				if code != p.want {
					t.Fatalf("metricsAddr=%v Authorization %q: %d %s, want %d", p.metricsAddr, p.auth, code, b, p.want)
				}
				switch code {
				case 401:
					if h.Get("WWW-Authenticate") != "Bearer" || bytes.Contains(b, []byte("acc")) {
						t.Fatalf("401 without WWW-Authenticate or with the body: %q %s", h.Get("WWW-Authenticate"), b)
					}
				case 200:
					var v liveBody
					if json.Unmarshal(b, &v) != nil || v.Node != "acc" {
						t.Fatalf("200 body %s", b)
					}
				}
			}
		})
	}
}

// With ADAPTER=redis or redis-streams the panel lists the nodes with a live
// presence heartbeat and the server count; when Redis goes away it keeps
// answering at once with the last view, marked stale.
func TestLiveJSONListsClusterNodes(t *testing.T) {
	for _, adapter := range []string{"redis", "redis-streams"} {
		t.Run(adapter, func(t *testing.T) {
			r := redistest.Start(t)
			nodeOf := func(id string) node {
				cfg := server.Defaults()
				cfg.JWTSecret = "cluster-secret"
				cfg.Adapter = adapter
				cfg.RedisURL = r.URL
				cfg.NodeID = id
				cfg.DrainTimeout = 0
				return startNode(t, cfg, nil)
			}
			a, _ := nodeOf("live-na"), nodeOf("live-nb")
			v := eventuallyLive(t, a.url, 15*time.Second, "both nodes", func(v liveBody) bool {
				return slices.Equal(v.Cluster.Nodes, []string{"live-na", "live-nb"}) && v.Cluster.Servers == 2 && !v.Cluster.Stale
			})
			if v.Node != "live-na" || v.Adapter != adapter {
				t.Fatalf("%+v", v)
			}

			r.Stop()
			v = eventuallyLive(t, a.url, 8*time.Second, "stale view", func(v liveBody) bool { return v.Cluster.Stale })
			if !slices.Equal(v.Cluster.Nodes, []string{"live-na", "live-nb"}) {
				t.Fatalf("stale view lost the last known nodes: %+v", v.Cluster)
			}
			for range 5 { // never waits on the dead Redis
				t0 := time.Now()
				live(t, a.url)
				if d := time.Since(t0); d > 500*time.Millisecond {
					t.Fatalf("/live.json took %v with Redis down", d)
				}
			}
		})
	}
}
