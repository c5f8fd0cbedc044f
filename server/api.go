package server

// The HTTP publish API (issue 14): backends reach the sockets of every node
// through any node, as Node's @socket.io/redis-emitter does, without
// speaking Socket.IO or Redis.
//
//	POST /api/v1/emit                        {namespace?, rooms?, except?, event, args?}  202 {ok}
//	POST /api/v1/rooms/{room}/messages       {text, userId?, name?, clientId?}           200 {ok, id, ts, duplicate?}
//	GET  /api/v1/rooms/{room}/presence                                                   200 {ok, room, members}
//	POST /api/v1/users/{userId}/disconnect   {close?} (optional body)                     200 {ok}
//
// Off unless SERVER_API_KEY is set (the routes are not registered); then
// every request needs Authorization: Bearer <SERVER_API_KEY>, compared in
// constant time (401 first, before anything else is looked at). Then
// SERVER_API_RATE (a token bucket per node, burst as large as the rate: 429
// with Retry-After beyond), the route (404 unknown, 405 wrong method), the
// body: at most SERVER_API_MAX_BODY bytes (413), Content-Type
// application/json when there is one (415), one JSON object with known
// member names only, each of its type (400). Every error is
// {"error":{"code","message"}}. Nothing here holds a lock; every call that
// may wait on the cluster runs under a 5 s deadline (a broadcast is bounded
// by the adapter's own publish deadline).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/adapter"
	"github.com/switchboard/switchboard/internal/engine/sioparser"
	"github.com/switchboard/switchboard/internal/sio"
	"github.com/switchboard/switchboard/middleware"
	"github.com/switchboard/switchboard/namespaces"
)

const (
	apiPrefix = "/api/v1/"
	// apiTimeout bounds every call of a request that may wait on the cluster.
	apiTimeout = 5 * time.Second
	// apiMaxBodyDefault is SERVER_API_MAX_BODY's default (also for a zero Config field).
	apiMaxBodyDefault = 1 << 20
	// apiMaxDepth bounds the nesting of an emit's args: what the nodes
	// decode from the cluster is bounded (sioparser.DefaultMaxDepth, with
	// the packet's own levels around the args), and an emit they would all
	// drop must be refused here rather than answered 202.
	apiMaxDepth = 100
)

// API error codes (besides the contract's bad_request, invalid_room,
// forbidden_room, payload_too_large, rate_limited and unavailable).
const (
	apiCodeUnauthorized     = "unauthorized"
	apiCodeNotFound         = "not_found"
	apiCodeMethod           = "method_not_allowed"
	apiCodeUnsupportedMedia = "unsupported_media_type"
)

// api serves the routes under /api/v1/.
type api struct {
	s       *Server
	key     [32]byte                // sha256 of SERVER_API_KEY
	limiter *middleware.RateLimiter // nil: no limit
	rate    float64
	maxBody int64
}

// apiHandler is the HTTP publish API's handler, nil when SERVER_API_KEY is
// not set (the API is off).
func (s *Server) apiHandler() http.Handler {
	if s.cfg.APIKey == "" {
		return nil
	}
	a := &api{s: s, key: sha256.Sum256([]byte(s.cfg.APIKey)), rate: s.cfg.APIRate, maxBody: s.cfg.APIMaxBody}
	if a.maxBody <= 0 {
		a.maxBody = apiMaxBodyDefault
	}
	if a.rate > 0 {
		a.limiter = middleware.NewRateLimiter(a.rate, int(math.Ceil(a.rate)))
	}
	return a
}

// mountAPI registers the HTTP publish API on mux when it is on.
func (s *Server) mountAPI(mux *http.ServeMux) {
	if h := s.apiHandler(); h != nil {
		mux.Handle(apiPrefix, h)
	}
}

type apiErrorBody struct {
	Error apiErrorDetail `json:"error"`
}

type apiErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func apiError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, apiErrorBody{Error: apiErrorDetail{Code: code, Message: fmt.Sprintf(format, args...)}})
}

func (a *api) authorized(r *http.Request) bool {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	// Hashing first makes the comparison constant-time in the length too.
	return strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(got[:], a.key[:]) == 1
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard-api"`)
		apiError(w, http.StatusUnauthorized, apiCodeUnauthorized, "this API requires Authorization: Bearer and the SERVER_API_KEY")
		return
	}
	if a.limiter != nil {
		if ok, _ := a.limiter.Allow(time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Max(1, math.Ceil(1/a.rate)))))
			apiError(w, http.StatusTooManyRequests, sio.CodeRateLimited, "over SERVER_API_RATE (%g requests per second on this node)", a.rate)
			return
		}
	}
	a.route(w, r)
}

// route dispatches on the path below /api/v1/ (segments unescaped one by
// one, so a room or user id may hold an escaped "/").
func (a *api) route(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), apiPrefix), "/")
	for i, seg := range segs {
		v, err := url.PathUnescape(seg)
		if err != nil || v == "" {
			apiError(w, http.StatusNotFound, apiCodeNotFound, "no such route: %s %s", r.Method, clip(r.URL.Path, 200))
			return
		}
		segs[i] = v
	}
	var method string
	var h func(http.ResponseWriter, *http.Request, string)
	switch {
	case len(segs) == 1 && segs[0] == "emit":
		method, h = http.MethodPost, func(w http.ResponseWriter, r *http.Request, _ string) { a.emit(w, r) }
	case len(segs) == 3 && segs[0] == "rooms" && segs[2] == "messages":
		method, h = http.MethodPost, a.post
	case len(segs) == 3 && segs[0] == "rooms" && segs[2] == "presence":
		method, h = http.MethodGet, a.presence
	case len(segs) == 3 && segs[0] == "users" && segs[2] == "disconnect":
		method, h = http.MethodPost, a.disconnect
	default:
		apiError(w, http.StatusNotFound, apiCodeNotFound, "no such route: %s %s", r.Method, clip(r.URL.Path, 200))
		return
	}
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		apiError(w, http.StatusMethodNotAllowed, apiCodeMethod, "%s takes %s", clip(r.URL.Path, 200), method)
		return
	}
	var param string
	if len(segs) == 3 {
		param = segs[1]
	}
	h(w, r, param)
}

// body reads the request body (at most SERVER_API_MAX_BODY bytes); it
// answers the request itself and returns false when the body is too large,
// unreadable, or not application/json. An empty body is returned as nil.
func (a *api) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > a.maxBody {
		apiError(w, http.StatusRequestEntityTooLarge, namespaces.CodePayloadTooLarge, "the body is over SERVER_API_MAX_BODY (%d bytes)", a.maxBody)
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		apiError(w, http.StatusRequestEntityTooLarge, namespaces.CodePayloadTooLarge, "the body is over SERVER_API_MAX_BODY (%d bytes)", a.maxBody)
		return nil, false
	case err != nil:
		apiError(w, http.StatusBadRequest, sio.CodeBadRequest, "the body could not be read")
		return nil, false
	case len(b) == 0:
		return nil, true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		apiError(w, http.StatusUnsupportedMediaType, apiCodeUnsupportedMedia, "the body must be sent as Content-Type: application/json")
		return nil, false
	}
	return b, true
}

// fail answers an error of the namespace or the cluster.
func (a *api) fail(w http.ResponseWriter, what string, err error) {
	var e *sio.Error
	if errors.As(err, &e) {
		status := http.StatusInternalServerError
		switch e.Code {
		case sio.CodeBadRequest, namespaces.CodeInvalidRoom, namespaces.CodeForbiddenRoom:
			status = http.StatusBadRequest
		case namespaces.CodePayloadTooLarge:
			status = http.StatusRequestEntityTooLarge
		case sio.CodeUnavailable:
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		if status == http.StatusInternalServerError {
			a.s.log.Error().Err(err).Str("api", what).Msg("HTTP publish API")
		}
		apiError(w, status, e.Code, "%s", e.Message)
		return
	}
	// A store (presence, dedupe) that did not answer, or the deadline: the
	// node cannot do it now.
	a.s.redisLog.warn(err, "HTTP publish API: "+what)
	w.Header().Set("Retry-After", "1")
	apiError(w, http.StatusServiceUnavailable, sio.CodeUnavailable, "%s: the cluster did not answer in time, retry later", what)
}

// namespace is the namespace called name on this node, nil if there is none
// (never created by a request).
func (a *api) namespace(name string) *sio.Namespace {
	for _, n := range a.s.io.Namespaces() {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// contract answers 404 and returns false when the contract's namespace is
// off (Config.NoContract): rooms, presence and the user rooms are its.
func (a *api) contract(w http.ResponseWriter) bool {
	if a.s.rooms == nil {
		apiError(w, http.StatusNotFound, apiCodeNotFound, "the contract's rooms are not served by this node")
		return false
	}
	return true
}

func (a *api) emit(w http.ResponseWriter, r *http.Request) {
	b, ok := a.body(w, r)
	if !ok {
		return
	}
	req, err := decodeEmit(b)
	if err != nil {
		apiError(w, http.StatusBadRequest, sio.CodeBadRequest, "%s", err.Error())
		return
	}
	ns := a.namespace(req.Namespace)
	if ns == nil {
		apiError(w, http.StatusNotFound, apiCodeNotFound, "no namespace %q on this node", clip(req.Namespace, 200))
		return
	}
	args := make([]any, len(req.Args))
	for i, v := range req.Args {
		args[i] = v
	}
	if err := ns.To(req.Rooms...).Except(req.Except...).Emit(req.Event, args...); err != nil {
		a.fail(w, "emit", err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"ok": true})
}

func (a *api) post(w http.ResponseWriter, r *http.Request, room string) {
	if !a.contract(w) {
		return
	}
	b, ok := a.body(w, r)
	if !ok {
		return
	}
	req, err := decodePost(b)
	if err != nil {
		apiError(w, http.StatusBadRequest, sio.CodeBadRequest, "%s", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	id, ts, dup, err := a.s.rooms.Post(ctx, room, req.Text, req.UserID, req.Name, req.ClientID)
	if err != nil {
		a.fail(w, "message", err)
		return
	}
	if dup {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "duplicate": true, "id": id, "ts": ts})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "id": id, "ts": ts})
}

func (a *api) presence(w http.ResponseWriter, r *http.Request, room string) {
	if !a.contract(w) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	members, err := a.s.rooms.Members(ctx, room)
	if err != nil {
		a.fail(w, "presence", err)
		return
	}
	if members == nil {
		members = []adapter.Member{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "room": room, "members": members})
}

func (a *api) disconnect(w http.ResponseWriter, r *http.Request, userID string) {
	if !a.contract(w) {
		return
	}
	if n := utf8.RuneCountInString(userID); n > 128 {
		apiError(w, http.StatusBadRequest, sio.CodeBadRequest, "user ids are 1-128 characters")
		return
	}
	b, ok := a.body(w, r)
	if !ok {
		return
	}
	req, err := decodeDisconnect(b)
	if err != nil {
		apiError(w, http.StatusBadRequest, sio.CodeBadRequest, "%s", err.Error())
		return
	}
	ns := a.namespace("/")
	if ns == nil {
		apiError(w, http.StatusNotFound, apiCodeNotFound, "no namespace \"/\" on this node")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	opts := sio.BroadcastOpts{Rooms: []string{namespaces.UserRoom(userID)}}
	if err := ns.DisconnectSockets(ctx, opts, req.Close); err != nil {
		a.s.redisLog.warn(err, "HTTP publish API: disconnect")
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, sio.CodeUnavailable,
			"the cluster did not take the request: the user's sockets were disconnected on this node only, retry later")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// Request bodies. Decoding is strict: one JSON object, member names exactly
// as documented (case-sensitive, each once), each of its type; null is the
// same as an absent optional member.

type emitRequest struct {
	Namespace string            // "/" when absent
	Rooms     []string          // none: every socket of the namespace
	Except    []string          //
	Event     string            // required, not a reserved name
	Args      []json.RawMessage // compact JSON values
}

type postRequest struct {
	Text     string
	UserID   string  // "system" when absent
	Name     string  // "System" when neither it nor userId is given, else userId when absent
	ClientID *string // nil: none
}

type disconnectRequest struct {
	Close bool // also close the underlying connections (default true)
}

func decodeEmit(body []byte) (emitRequest, error) {
	m, err := apiObject(body, "namespace", "rooms", "except", "event", "args")
	if err != nil {
		return emitRequest{}, err
	}
	req := emitRequest{Namespace: "/"}
	ns, err := optString(m, "namespace")
	if err != nil {
		return req, err
	}
	if ns != nil {
		if !strings.HasPrefix(*ns, "/") {
			return req, errors.New(`namespace must start with "/"`)
		}
		req.Namespace = *ns
	}
	if req.Rooms, err = optRooms(m, "rooms"); err != nil {
		return req, err
	}
	if req.Except, err = optRooms(m, "except"); err != nil {
		return req, err
	}
	ev, err := optString(m, "event")
	switch {
	case err != nil:
		return req, err
	case ev == nil || *ev == "":
		return req, errors.New("event (a non-empty string) is required")
	case sioparser.IsReservedEvent(*ev):
		return req, fmt.Errorf("%q is a reserved event name", *ev)
	}
	req.Event = *ev
	if req.Args, err = optArgs(m, "args"); err != nil {
		return req, err
	}
	return req, nil
}

func decodePost(body []byte) (postRequest, error) {
	m, err := apiObject(body, "text", "userId", "name", "clientId")
	if err != nil {
		return postRequest{}, err
	}
	var req postRequest
	text, err := optString(m, "text")
	if err != nil {
		return req, err
	}
	if text == nil {
		return req, errors.New("text (a string) is required")
	}
	req.Text = *text
	user, err := optString(m, "userId")
	if err != nil {
		return req, err
	}
	name, err := optString(m, "name")
	if err != nil {
		return req, err
	}
	if req.ClientID, err = optString(m, "clientId"); err != nil {
		return req, err
	}
	req.UserID, req.Name = "system", "System"
	if user != nil {
		req.UserID, req.Name = *user, *user // as a token without a name claim
	}
	if name != nil {
		req.Name = *name
	}
	return req, nil
}

func decodeDisconnect(body []byte) (disconnectRequest, error) {
	req := disconnectRequest{Close: true}
	if body == nil {
		return req, nil
	}
	m, err := apiObject(body, "close")
	if err != nil {
		return req, err
	}
	raw, ok := m["close"]
	if !ok || string(raw) == "null" {
		return req, nil
	}
	if err := json.Unmarshal(raw, &req.Close); err != nil {
		return req, errors.New(`field "close" must be a boolean`)
	}
	return req, nil
}

var errNotObject = errors.New("the body must be one JSON object")

// apiObject splits body into the members of one JSON object; a name not in
// known, a name given twice, or anything after the object is an error.
func apiObject(body []byte, known ...string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	m := make(map[string]json.RawMessage, len(known))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errNotObject
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errNotObject
		}
		if !slices.Contains(known, key) {
			return nil, fmt.Errorf("unknown field %q (known: %s)", clip(key, 64), strings.Join(known, ", "))
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("field %q is given twice", key)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errNotObject
		}
		m[key] = bytes.TrimSpace(raw)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotObject
	}
	return m, nil
}

func apiAbsent(m map[string]json.RawMessage, key string) bool {
	raw, ok := m[key]
	return !ok || string(raw) == "null"
}

func optString(m map[string]json.RawMessage, key string) (*string, error) {
	if apiAbsent(m, key) {
		return nil, nil
	}
	raw := m[key]
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return nil, fmt.Errorf("field %q must be a string", key)
	}
	return &s, nil
}

// optRooms is a list of non-empty room names.
func optRooms(m map[string]json.RawMessage, key string) ([]string, error) {
	if apiAbsent(m, key) {
		return nil, nil
	}
	raw := m[key]
	var elems []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, fmt.Errorf("field %q must be an array of room names", key)
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		if len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &out[i]) != nil || out[i] == "" {
			return nil, fmt.Errorf("field %q must be an array of non-empty strings", key)
		}
	}
	return out, nil
}

// optArgs is a list of JSON values, each compacted, nested at most apiMaxDepth.
func optArgs(m map[string]json.RawMessage, key string) ([]json.RawMessage, error) {
	if apiAbsent(m, key) {
		return nil, nil
	}
	raw := m[key]
	var elems []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, fmt.Errorf("field %q must be an array (the event's arguments)", key)
	}
	for i, e := range elems {
		var buf bytes.Buffer
		if err := json.Compact(&buf, e); err != nil {
			return nil, fmt.Errorf("field %q: argument %d is not JSON", key, i+1)
		}
		if jsonDepth(buf.Bytes()) > apiMaxDepth {
			return nil, fmt.Errorf("field %q: argument %d is nested deeper than %d levels", key, i+1, apiMaxDepth)
		}
		elems[i] = buf.Bytes()
	}
	return elems, nil
}

// jsonDepth is the deepest nesting of arrays and objects in valid JSON v.
func jsonDepth(v []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range v {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
