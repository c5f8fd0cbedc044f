package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/server"
)

// The HTTP publish API (server/api.go), driven against real nodes with real
// Socket.IO clients.

const apiKey = "api-test-key-0123456789"

func apiConfig() server.Config {
	cfg := server.Defaults()
	cfg.JWTSecret = "s"
	cfg.DrainTimeout = 0
	cfg.APIKey = apiKey
	return cfg
}

type apiResp struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResp) String() string { return strconv.Itoa(r.status) + " " + string(r.body) }

func apiCall(t *testing.T, method, url, key, ctype, body string) apiResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiResp{status: resp.StatusCode, header: resp.Header, body: b}
}

func apiPost(t *testing.T, n node, path, body string) apiResp {
	t.Helper()
	return apiCall(t, http.MethodPost, n.url+path, apiKey, "application/json", body)
}

func apiGet(t *testing.T, n node, path string) apiResp {
	t.Helper()
	return apiCall(t, http.MethodGet, n.url+path, apiKey, "", "")
}

// wantAPIError checks an error answer: status, JSON {error:{code,message}}
// and nothing else.
func wantAPIError(t *testing.T, what string, r apiResp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: %s, want %d %s", what, r, status, code)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	var body map[string]map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 1 || len(body["error"]) != 2 {
		t.Errorf("%s: body %s is not {error:{code,message}}", what, r.body)
		return
	}
	if body["error"]["code"] != code || body["error"]["message"] == "" {
		t.Errorf("%s: body %s, want code %s", what, r.body, code)
	}
}

func dialAs(t *testing.T, n node, user, nsp string) *rawclient.Client {
	t.Helper()
	tok, _ := n.sb.MintToken(user, "N-"+user, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, n.url, "/socket.io/", nsp, map[string]any{"token": tok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// noEvent fails if c receives an event called name within d.
func noEvent(t *testing.T, c *rawclient.Client, name string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		e, err := c.Next(ctx)
		if err != nil {
			return
		}
		if e.Name == name {
			t.Fatalf("unexpected %q %s", name, e.Args)
		}
	}
}

// nextEvent is the next event called name, with all its arguments.
func nextEvent(t *testing.T, c *rawclient.Client, name string, d time.Duration) []json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("no %q event within %v", name, d)
		}
		if e.Name == name {
			return e.Args
		}
	}
}

func compact(t *testing.T, args []json.RawMessage) string {
	t.Helper()
	b, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAPISettings(t *testing.T) {
	d := server.Defaults()
	if d.APIKey != "" || d.APIRate != 100 || d.APIMaxBody != 1<<20 {
		t.Fatalf("defaults: key %q rate %v max body %d", d.APIKey, d.APIRate, d.APIMaxBody)
	}
	for k, v := range map[string]string{"SERVER_API_RATE": "-1", "SERVER_API_MAX_BODY": "0"} {
		if _, err := server.Load(nil, func(e string) string { return map[string]string{k: v}[e] }, io.Discard); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: err = %v", k, v, err)
		}
	}
	c, err := server.Load([]string{"--server-api-key", "k", "--server-api-rate", "0"}, func(string) string { return "" }, io.Discard)
	if err != nil || c.APIKey != "k" || c.APIRate != 0 {
		t.Fatalf("flags: %v %+v", err, c)
	}
}

func TestAPIOffWithoutKey(t *testing.T) {
	cfg := apiConfig()
	cfg.APIKey = ""
	n := startNode(t, cfg, nil)
	r := apiPost(t, n, "/api/v1/emit", `{"event":"x"}`)
	if r.status != http.StatusNotFound || strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("API off: %s, want the page's plain 404", r)
	}
}

func TestAPIEmit(t *testing.T) {
	n := startNode(t, apiConfig(), func(sb *server.Server) { sb.Of("/extra") })
	alice := join(t, n, "alice", "lobby")
	carol := join(t, n, "carol", "lobby")
	bob := join(t, n, "bob", "elsewhere")
	extra := dialAs(t, n, "erin", "/extra")

	// rooms and except, several arguments of every JSON type.
	r := apiPost(t, n, "/api/v1/emit",
		`{"rooms":["lobby"],"except":["user:carol"],"event":"news","args":[{"a": 1, "b": [true, null]}, "two", 3.5]}`)
	if r.status != http.StatusAccepted || string(r.body) != "{\"ok\":true}\n" {
		t.Fatalf("emit: %s", r)
	}
	if got := compact(t, nextEvent(t, alice, "news", 3*time.Second)); got != `[{"a":1,"b":[true,null]},"two",3.5]` {
		t.Fatalf("alice got %s", got)
	}
	noEvent(t, carol, "news", 200*time.Millisecond) // excepted
	noEvent(t, bob, "news", 50*time.Millisecond)    // not in the room
	noEvent(t, extra, "news", 50*time.Millisecond)  // another namespace

	// No rooms: the whole namespace; no args: an event without arguments.
	if r := apiPost(t, n, "/api/v1/emit", `{"namespace":"/","event":"all"}`); r.status != http.StatusAccepted {
		t.Fatalf("emit to all: %s", r)
	}
	for _, c := range []*rawclient.Client{alice, carol, bob} {
		if got := nextEvent(t, c, "all", 3*time.Second); len(got) != 0 {
			t.Fatalf("all: args %s", compact(t, got))
		}
	}
	noEvent(t, extra, "all", 100*time.Millisecond)

	// Another namespace the node registered.
	if r := apiPost(t, n, "/api/v1/emit", `{"namespace":"/extra","event":"hi","args":["erin"],"rooms":null}`); r.status != http.StatusAccepted {
		t.Fatalf("emit to /extra: %s", r)
	}
	if got := compact(t, nextEvent(t, extra, "hi", 3*time.Second)); got != `["erin"]` {
		t.Fatalf("/extra got %s", got)
	}
	noEvent(t, alice, "hi", 100*time.Millisecond)

	// One socket by its id (its own room).
	if r := apiPost(t, n, "/api/v1/emit", `{"rooms":["`+bob.SID+`"],"event":"direct"}`); r.status != http.StatusAccepted {
		t.Fatalf("emit to a socket: %s", r)
	}
	nextEvent(t, bob, "direct", 3*time.Second)
	noEvent(t, alice, "direct", 100*time.Millisecond)

	wantAPIError(t, "unknown namespace", apiPost(t, n, "/api/v1/emit", `{"namespace":"/nope","event":"x"}`), 404, "not_found")
	for _, ev := range []string{"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"} {
		wantAPIError(t, "reserved "+ev, apiPost(t, n, "/api/v1/emit", `{"event":"`+ev+`"}`), 400, "bad_request")
	}
	noEvent(t, alice, "connect", 100*time.Millisecond)
}

type postAck struct {
	OK        bool   `json:"ok"`
	ID        string `json:"id"`
	TS        int64  `json:"ts"`
	Duplicate bool   `json:"duplicate"`
}

func TestAPIRoomMessage(t *testing.T) {
	cfg := apiConfig()
	cfg.MessageMaxBytes = 16
	n := startNode(t, cfg, nil)
	alice := join(t, n, "alice", "lobby")
	bob := join(t, n, "bob", "elsewhere")

	r := apiPost(t, n, "/api/v1/rooms/lobby/messages", `{"text":"hello","clientId":"c1"}`)
	var ack postAck
	if r.status != 200 || json.Unmarshal(r.body, &ack) != nil || !ack.OK || ack.ID == "" || ack.TS == 0 || ack.Duplicate {
		t.Fatalf("post: %s", r)
	}
	var m struct {
		ID, RoomID, UserID, Name, Text, ClientID string
		TS                                       int64
	}
	got := nextNamed(t, alice, "message", 3*time.Second)
	if err := json.Unmarshal(got, &m); err != nil || m.ID != ack.ID || m.TS != ack.TS || m.RoomID != "lobby" ||
		m.UserID != "system" || m.Name != "System" || m.Text != "hello" || m.ClientID != "c1" {
		t.Fatalf("alice got %s for ack %s", got, r.body)
	}
	noEvent(t, bob, "message", 100*time.Millisecond)

	// The same clientId again: the first id and ts, duplicate, not delivered.
	r = apiPost(t, n, "/api/v1/rooms/lobby/messages", `{"text":"hello","clientId":"c1"}`)
	var dup postAck
	if r.status != 200 || json.Unmarshal(r.body, &dup) != nil || !dup.OK || !dup.Duplicate || dup.ID != ack.ID || dup.TS != ack.TS {
		t.Fatalf("repeat: %s, first %+v", r, ack)
	}
	noEvent(t, alice, "message", 200*time.Millisecond)

	// In someone's name; a name defaults to the user id; ids keep increasing in the room's order.
	if r := apiPost(t, n, "/api/v1/rooms/lobby/messages", `{"text":"beep","userId":"bot","name":"Bot"}`); r.status != 200 {
		t.Fatalf("post as bot: %s", r)
	}
	if r := apiPost(t, n, "/api/v1/rooms/lobby/messages", `{"text":"boop","userId":"bot2"}`); r.status != 200 {
		t.Fatalf("post as bot2: %s", r)
	}
	m.ClientID = ""
	_ = json.Unmarshal(nextNamed(t, alice, "message", 3*time.Second), &m)
	if m.UserID != "bot" || m.Name != "Bot" || m.Text != "beep" || m.ClientID != "" {
		t.Fatalf("as bot: %+v", m)
	}
	_ = json.Unmarshal(nextNamed(t, alice, "message", 3*time.Second), &m)
	if m.UserID != "bot2" || m.Name != "bot2" || m.Text != "boop" {
		t.Fatalf("as bot2: %+v", m)
	}

	// The client's own message is broadcast the same way, beside the API's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if raw, err := alice.Call(ctx, "message", map[string]any{"roomId": "lobby", "text": "me", "clientId": "c1"}); err != nil ||
		!strings.Contains(string(raw), `"ok":true`) || strings.Contains(string(raw), "duplicate") {
		t.Fatalf("alice's own message with the system's clientId (another user): %s %v", raw, err)
	}
	_ = json.Unmarshal(nextNamed(t, alice, "message", 3*time.Second), &m)
	if m.UserID != "alice" || m.Text != "me" {
		t.Fatalf("alice's own: %+v", m)
	}

	for _, c := range []struct {
		what, path, body string
		status           int
		code             string
	}{
		{"text over MESSAGE_MAX_BYTES", "/api/v1/rooms/lobby/messages", `{"text":"` + strings.Repeat("x", 17) + `"}`, 413, "payload_too_large"},
		{"empty text", "/api/v1/rooms/lobby/messages", `{"text":""}`, 400, "bad_request"},
		{"no text", "/api/v1/rooms/lobby/messages", `{"userId":"x"}`, 400, "bad_request"},
		{"text not a string", "/api/v1/rooms/lobby/messages", `{"text":5}`, 400, "bad_request"},
		{"empty clientId", "/api/v1/rooms/lobby/messages", `{"text":"a","clientId":""}`, 400, "bad_request"},
		{"long clientId", "/api/v1/rooms/lobby/messages", `{"text":"a","clientId":"` + strings.Repeat("c", 65) + `"}`, 400, "bad_request"},
		{"empty userId", "/api/v1/rooms/lobby/messages", `{"text":"a","userId":""}`, 400, "bad_request"},
		{"unknown field", "/api/v1/rooms/lobby/messages", `{"text":"a","roomId":"lobby"}`, 400, "bad_request"},
		{"invalid room", "/api/v1/rooms/bad%20room/messages", `{"text":"a"}`, 400, "invalid_room"},
		{"reserved room", "/api/v1/rooms/user:alice/messages", `{"text":"a"}`, 400, "forbidden_room"},
	} {
		wantAPIError(t, c.what, apiPost(t, n, c.path, c.body), c.status, c.code)
	}
	noEvent(t, alice, "message", 100*time.Millisecond)
}

func TestAPIPresence(t *testing.T) {
	n := startNode(t, apiConfig(), nil)
	watcher := join(t, n, "walter", "lobby")
	join(t, n, "alice", "lobby")
	join(t, n, "alice", "lobby") // a second tab
	join(t, n, "bob", "elsewhere")

	r := apiGet(t, n, "/api/v1/rooms/lobby/presence")
	var got struct {
		OK      bool            `json:"ok"`
		Room    string          `json:"room"`
		Members json.RawMessage `json:"members"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil || !got.OK || got.Room != "lobby" {
		t.Fatalf("presence: %s", r)
	}
	// What the contract's presence ack says, member for member.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := watcher.Call(ctx, "presence", "lobby")
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		Members json.RawMessage `json:"members"`
	}
	_ = json.Unmarshal(raw, &ack)
	var a, b any
	_ = json.Unmarshal(got.Members, &a)
	_ = json.Unmarshal(ack.Members, &b)
	if !reflect.DeepEqual(a, b) || !strings.Contains(string(got.Members), `{"userId":"alice","name":"N-alice","connections":2}`) {
		t.Fatalf("API presence %s, ack %s", got.Members, ack.Members)
	}
	if r := apiGet(t, n, "/api/v1/rooms/empty/presence"); r.status != 200 || string(r.body) != "{\"members\":[],\"ok\":true,\"room\":\"empty\"}\n" {
		t.Fatalf("empty room: %s", r)
	}
	wantAPIError(t, "invalid room", apiGet(t, n, "/api/v1/rooms/a%21/presence"), 400, "invalid_room")
	wantAPIError(t, "reserved room", apiGet(t, n, "/api/v1/rooms/user:alice/presence"), 400, "forbidden_room")
}

func TestAPIDisconnectUser(t *testing.T) {
	n := startNode(t, apiConfig(), nil)
	tab1 := join(t, n, "alice", "lobby")
	tab2 := dialAs(t, n, "alice", "/")
	bob := join(t, n, "bob", "lobby")

	if r := apiPost(t, n, "/api/v1/users/alice/disconnect", ""); r.status != 200 || string(r.body) != "{\"ok\":true}\n" {
		t.Fatalf("disconnect: %s", r)
	}
	for i, c := range []*rawclient.Client{tab1, tab2} {
		select {
		case <-c.Disconnected:
		case <-time.After(5 * time.Second):
			t.Fatalf("alice's tab %d still connected", i+1)
		}
	}
	// Bob stays, and hears that alice left.
	if got := nextNamed(t, bob, "user-left", 3*time.Second); !strings.Contains(string(got), `"userId":"alice"`) {
		t.Fatalf("user-left: %s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if raw, err := bob.Call(ctx, "presence", "lobby"); err != nil || strings.Contains(string(raw), "alice") {
		t.Fatalf("bob after alice's disconnect: %s %v", raw, err)
	}

	// With a body: close false (namespace "/" only); a user nobody is is fine.
	carol := join(t, n, "carol", "lobby")
	if r := apiPost(t, n, "/api/v1/users/carol/disconnect", `{"close":false}`); r.status != 200 {
		t.Fatalf("disconnect close=false: %s", r)
	}
	select {
	case <-carol.Disconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("carol still connected")
	}
	if r := apiPost(t, n, "/api/v1/users/nobody/disconnect", "{}"); r.status != 200 {
		t.Fatalf("disconnect nobody: %s", r)
	}
	wantAPIError(t, "close not a bool", apiPost(t, n, "/api/v1/users/carol/disconnect", `{"close":"yes"}`), 400, "bad_request")
	wantAPIError(t, "long user id", apiPost(t, n, "/api/v1/users/"+strings.Repeat("u", 129)+"/disconnect", ""), 400, "bad_request")
}

func TestAPIErrors(t *testing.T) {
	cfg := apiConfig()
	cfg.APIMaxBody = 1024
	n := startNode(t, cfg, nil)
	emit := n.url + "/api/v1/emit"
	for _, c := range []struct {
		what, method, url, key, ctype, body string
		status                              int
		code                                string
	}{
		{"no Authorization", "POST", emit, "", "application/json", `{"event":"x"}`, 401, "unauthorized"},
		{"wrong key", "POST", emit, "nope", "application/json", `{"event":"x"}`, 401, "unauthorized"},
		{"key prefix", "POST", emit, apiKey[:10], "application/json", `{"event":"x"}`, 401, "unauthorized"},
		{"unknown route, no key", "GET", n.url + "/api/v1/nope", "", "", "", 401, "unauthorized"},
		{"unknown route", "GET", n.url + "/api/v1/nope", apiKey, "", "", 404, "not_found"},
		{"unknown route below rooms", "POST", n.url + "/api/v1/rooms/lobby/other", apiKey, "application/json", `{}`, 404, "not_found"},
		{"escaped slashes", "GET", n.url + "/api/v1/rooms/%2F%2F/x", apiKey, "", "", 404, "not_found"},
		{"wrong method", "GET", emit, apiKey, "", "", 405, "method_not_allowed"},
		{"wrong method presence", "POST", n.url + "/api/v1/rooms/lobby/presence", apiKey, "application/json", `{}`, 405, "method_not_allowed"},
		{"text/plain", "POST", emit, apiKey, "text/plain", `{"event":"x"}`, 415, "unsupported_media_type"},
		{"no Content-Type", "POST", emit, apiKey, "", `{"event":"x"}`, 415, "unsupported_media_type"},
		{"empty body", "POST", emit, apiKey, "application/json", ``, 400, "bad_request"},
		{"malformed", "POST", emit, apiKey, "application/json", `{"event":`, 400, "bad_request"},
		{"array", "POST", emit, apiKey, "application/json", `[]`, 400, "bad_request"},
		{"null", "POST", emit, apiKey, "application/json", `null`, 400, "bad_request"},
		{"trailing data", "POST", emit, apiKey, "application/json", `{"event":"x"} {}`, 400, "bad_request"},
		{"unknown field", "POST", emit, apiKey, "application/json", `{"event":"x","foo":1}`, 400, "bad_request"},
		{"field in another case", "POST", emit, apiKey, "application/json", `{"Event":"x"}`, 400, "bad_request"},
		{"duplicate field", "POST", emit, apiKey, "application/json", `{"event":"x","event":"y"}`, 400, "bad_request"},
		{"no event", "POST", emit, apiKey, "application/json", `{"args":[]}`, 400, "bad_request"},
		{"event not a string", "POST", emit, apiKey, "application/json", `{"event":1}`, 400, "bad_request"},
		{"rooms a string", "POST", emit, apiKey, "application/json", `{"event":"x","rooms":"lobby"}`, 400, "bad_request"},
		{"rooms of numbers", "POST", emit, apiKey, "application/json", `{"event":"x","rooms":[1]}`, 400, "bad_request"},
		{"empty room name", "POST", emit, apiKey, "application/json", `{"event":"x","except":[""]}`, 400, "bad_request"},
		{"args an object", "POST", emit, apiKey, "application/json", `{"event":"x","args":{"a":1}}`, 400, "bad_request"},
		{"args too deep", "POST", emit, apiKey, "application/json", `{"event":"x","args":[` + strings.Repeat("[", 101) + strings.Repeat("]", 101) + `]}`, 400, "bad_request"},
		{"namespace without slash", "POST", emit, apiKey, "application/json", `{"namespace":"chat","event":"x"}`, 400, "bad_request"},
		{"unknown namespace", "POST", emit, apiKey, "application/json", `{"namespace":"/chat","event":"x"}`, 404, "not_found"},
		{"reserved event", "POST", emit, apiKey, "application/json", `{"event":"disconnect"}`, 400, "bad_request"},
		{"body over SERVER_API_MAX_BODY", "POST", emit, apiKey, "application/json", `{"event":"x","args":["` + strings.Repeat("x", 1100) + `"]}`, 413, "payload_too_large"},
	} {
		wantAPIError(t, c.what, apiCall(t, c.method, c.url, c.key, c.ctype, c.body), c.status, c.code)
	}
	r := apiCall(t, "POST", emit, "", "application/json", `{"event":"x"}`)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: %v", r.header)
	}
	if r := apiCall(t, "GET", emit, apiKey, "", ""); r.header.Get("Allow") != "POST" {
		t.Errorf("405 Allow = %q", r.header.Get("Allow"))
	}
	// A body that announces no length (chunked) over the limit: 413 as well.
	req, _ := http.NewRequest("POST", emit, &slowReader{n: 4096})
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked body over the limit: %d", resp.StatusCode)
	}
	// A scheme in lower case and a JSON media type with parameters are fine.
	req, _ = http.NewRequest("POST", emit, strings.NewReader(`{"event":"ok"}`))
	req.Header.Set("Authorization", "bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Errorf("lower-case bearer, charset: %d", resp.StatusCode)
	}
}

// slowReader yields n bytes of a JSON string without a known length.
type slowReader struct{ n, i int }

func (r *slowReader) Read(p []byte) (int, error) {
	if r.i >= r.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && r.i < r.n {
		if r.i == 0 {
			p[k] = '"'
		} else {
			p[k] = 'x'
		}
		k++
		r.i++
	}
	return k, nil
}

func TestAPIRateLimit(t *testing.T) {
	cfg := apiConfig()
	cfg.APIRate = 2 // a burst of 2, then one every 500 ms
	n := startNode(t, cfg, nil)
	ok, limited := 0, false
	for range 50 {
		r := apiGet(t, n, "/api/v1/rooms/lobby/presence")
		if r.status == 200 {
			ok++
			continue
		}
		wantAPIError(t, "over SERVER_API_RATE", r, 429, "rate_limited")
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		limited = true
		break
	}
	if !limited || ok < 1 || ok > 10 {
		t.Fatalf("%d requests taken before a 429 (limited: %v)", ok, limited)
	}
	// An unauthenticated request is refused before the bucket is looked at.
	if r := apiCall(t, "GET", n.url+"/api/v1/rooms/lobby/presence", "", "", ""); r.status != 401 {
		t.Fatalf("no key while limited: %s", r)
	}
	// The bucket refills.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if r := apiGet(t, n, "/api/v1/rooms/lobby/presence"); r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still limited after 3 s at 2 requests per second")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAPINoContract(t *testing.T) {
	cfg := apiConfig()
	cfg.NoContract = true
	n := startNode(t, cfg, func(sb *server.Server) { sb.Of("/") })
	wantAPIError(t, "messages without the contract", apiPost(t, n, "/api/v1/rooms/lobby/messages", `{"text":"a"}`), 404, "not_found")
	wantAPIError(t, "presence without the contract", apiGet(t, n, "/api/v1/rooms/lobby/presence"), 404, "not_found")
	if r := apiPost(t, n, "/api/v1/emit", `{"event":"x"}`); r.status != 202 {
		t.Fatalf("emit without the contract: %s", r)
	}
}

// Through a cluster on real Redis: what is published through node A
// reaches the clients of node B; with Redis gone, 503.
func TestAPICluster(t *testing.T) {
	r := redistest.Start(t)
	cfg := func(id string) server.Config {
		c := apiConfig()
		c.Adapter, c.RedisURL, c.RedisPrefix, c.NodeID = "redis", r.URL, "sbapi", id
		return c
	}
	a, b := startNode(t, cfg("aa"), nil), startNode(t, cfg("ab"), nil)
	onB := join(t, b, "bob", "lobby")
	join(t, a, "alice", "lobby")
	time.Sleep(100 * time.Millisecond) // subscriptions settle

	if r := apiPost(t, a, "/api/v1/emit", `{"rooms":["lobby"],"event":"news","args":[1]}`); r.status != 202 {
		t.Fatalf("emit through a: %s", r)
	}
	if got := compact(t, nextEvent(t, onB, "news", 3*time.Second)); got != `[1]` {
		t.Fatalf("b's client got %s", got)
	}
	r2 := apiPost(t, a, "/api/v1/rooms/lobby/messages", `{"text":"from a","clientId":"k"}`)
	var ack postAck
	if r2.status != 200 || json.Unmarshal(r2.body, &ack) != nil || ack.ID == "" {
		t.Fatalf("message through a: %s", r2)
	}
	var m struct{ ID, UserID, Text string }
	if err := json.Unmarshal(nextNamed(t, onB, "message", 3*time.Second), &m); err != nil || m.ID != ack.ID || m.UserID != "system" {
		t.Fatalf("b's client got %+v for %s", m, r2.body)
	}
	// The same clientId through the other node: a duplicate (dedupe is cluster-wide).
	var dup postAck
	if r := apiPost(t, b, "/api/v1/rooms/lobby/messages", `{"text":"from a","clientId":"k"}`); r.status != 200 ||
		json.Unmarshal(r.body, &dup) != nil || !dup.Duplicate || dup.ID != ack.ID {
		t.Fatalf("repeat through b: %s", r)
	}
	if r := apiGet(t, a, "/api/v1/rooms/lobby/presence"); r.status != 200 || !strings.Contains(string(r.body), `"userId":"bob"`) {
		t.Fatalf("presence through a: %s", r)
	}
	if r := apiPost(t, a, "/api/v1/users/bob/disconnect", ""); r.status != 200 {
		t.Fatalf("disconnect through a: %s", r)
	}
	select {
	case <-onB.Disconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("bob on node b still connected")
	}

	r.Stop()
	wantAPIError(t, "emit with Redis down", apiPost(t, a, "/api/v1/emit", `{"event":"lost"}`), 503, "unavailable")
	wantAPIError(t, "message with Redis down", apiPost(t, a, "/api/v1/rooms/lobby/messages", `{"text":"lost"}`), 503, "unavailable")
}
