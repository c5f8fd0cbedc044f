// Package namespaces holds Switchboard's namespaces, one file each, with
// their event handlers. They see only the seam's types (internal/sio).
package namespaces

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/adapter"
	"github.com/switchboard/switchboard/internal/sio"
	"github.com/switchboard/switchboard/middleware"
)

// Error codes of namespace "/" (see docs/CONTRACT.md).
const (
	CodeInvalidRoom     = "invalid_room"
	CodeForbiddenRoom   = "forbidden_room"
	CodeNotInRoom       = "not_in_room"
	CodePayloadTooLarge = "payload_too_large"
	CodeTooManyRooms    = "too_many_rooms"
)

// RoomsConfig configures namespace "/". Zero values mean the defaults.
type RoomsConfig struct {
	MessageMaxBytes int           // max bytes of a message text; default 4096
	DedupeWindow    time.Duration // how long a clientId is remembered; default 5m
	MaxRoomsPerConn int           // rooms one connection may join; default 50
	NodeID          string        // makes message ids unique across the cluster
	Presence        adapter.Presence
	Dedupe          adapter.Dedupe
	// OnError receives presence-store failures, which do not fail the event:
	// room membership and delivery go on, presence may lag; and presence
	// notifications the cluster could not take (nil: ignored).
	OnError func(error)
}

// Rooms serves namespace "/": rooms, messages and presence.
type Rooms struct {
	cfg RoomsConfig
	ns  *sio.Namespace
	seq atomic.Uint64

	linesMu sync.Mutex       // guards lines (map operations only, never held across I/O)
	lines   map[string]*line // per-room order of accepted messages, rooms with one in flight

	keysMu sync.Mutex
	keys   map[string]chan struct{} // held on this node: clientIds with a message in flight, presence changes (holdPresence)
}

// RegisterRooms installs namespace "/" on srv.
func RegisterRooms(srv *sio.Server, cfg RoomsConfig) *Rooms {
	if cfg.MessageMaxBytes <= 0 {
		cfg.MessageMaxBytes = 4096
	}
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = 5 * time.Minute
	}
	if cfg.MaxRoomsPerConn <= 0 {
		cfg.MaxRoomsPerConn = 50
	}
	if cfg.Presence == nil {
		cfg.Presence = adapter.NewMemoryPresence()
	}
	if cfg.Dedupe == nil {
		cfg.Dedupe = adapter.NewMemoryDedupe()
	}
	if cfg.OnError == nil {
		cfg.OnError = func(error) {}
	}
	r := &Rooms{cfg: cfg, ns: srv.Of("/"), lines: map[string]*line{}, keys: map[string]chan struct{}{}}
	r.ns.OnConnect(r.connected)
	r.ns.OnDisconnect(r.disconnected)
	r.ns.RefuseUnknownEvents() // the contract answers unknown events bad_request
	sio.Handle(r.ns, "join-room", r.join)
	sio.Handle(r.ns, "leave-room", r.leave)
	sio.Handle(r.ns, "message", r.message)
	sio.Handle(r.ns, "presence", r.presence)
	return r
}

// UserRoom is the room every connection of a user is in.
func UserRoom(userID string) string { return "user:" + userID }

// MemberRef is a member as user-joined, user-left and join-room show it.
type MemberRef struct {
	RoomID string `json:"roomId,omitempty"`
	UserID string `json:"userId"`
	Name   string `json:"name"`
}

type joinAck struct {
	Room    string      `json:"room"`
	Members []MemberRef `json:"members"`
}

type leaveAck struct {
	Room string `json:"room"`
}

type presenceAck struct {
	Room    string           `json:"room"`
	Members []adapter.Member `json:"members"`
}

// MessageIn is the payload of a client's message event.
type MessageIn struct {
	RoomID   *string `json:"roomId"`
	Text     *string `json:"text"`
	ClientID *string `json:"clientId"`
}

// DecodeRawArg implements sio.RawArgDecoder: messages are the hot path, so
// they are decoded from the client's JSON once, straight into the struct.
func (m *MessageIn) DecodeRawArg(raw json.RawMessage) error {
	type plain MessageIn
	if err := json.Unmarshal(raw, (*plain)(m)); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("field %q must be a string", te.Field)
		}
		return errors.New("message must be an object")
	}
	return nil
}

// DecodeArg implements sio.ArgDecoder: messages are the hot path, so they
// are read from the decoded map directly (same rules as JSON decoding).
func (m *MessageIn) DecodeArg(v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return errors.New("message must be an object")
	}
	for _, f := range []struct {
		key string
		dst **string
	}{{"roomId", &m.RoomID}, {"text", &m.Text}, {"clientId", &m.ClientID}} {
		switch x := obj[f.key].(type) {
		case nil:
		case string:
			*f.dst = &x
		default:
			return fmt.Errorf("field %q must be a string", f.key)
		}
	}
	return nil
}

// Message is what room members receive.
type Message struct {
	ID       string `json:"id"`
	RoomID   string `json:"roomId"`
	UserID   string `json:"userId"`
	Name     string `json:"name"`
	Text     string `json:"text"`
	TS       int64  `json:"ts"`
	ClientID string `json:"clientId,omitempty"`
}

type messageAck struct {
	ID        string `json:"id"`
	TS        int64  `json:"ts"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// joined is the per-connection set of rooms joined through join-room.
type joined map[string]struct{}

type joinedKey struct{}

func rooms(c *sio.Conn) joined {
	j, _ := c.Value(joinedKey{}).(joined)
	if j == nil {
		j = joined{}
		c.SetValue(joinedKey{}, j)
	}
	return j
}

// Session is the first event of a new (not recovered) connection. Besides
// telling the client who it is, it carries a recovery offset: a client that
// drops before any room event arrives still resumes its session.
type Session struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
}

func (r *Rooms) connected(ctx context.Context, c *sio.Conn) {
	u := c.User()
	c.Join(UserRoom(u.ID))
	if !c.Recovered() {
		if err := c.Emit("session", Session{UserID: u.ID, Name: u.Name}); err != nil {
			r.cfg.OnError(err)
		}
		return
	}
	// A recovered session got its rooms back from the engine: restore presence.
	j := rooms(c)
	for _, room := range c.Rooms() {
		if room == UserRoom(u.ID) || !middleware.ValidRoomID(room) {
			continue
		}
		j[room] = struct{}{}
		r.addPresence(ctx, c, room)
	}
}

func (r *Rooms) disconnected(ctx context.Context, c *sio.Conn, _ string) {
	for room := range rooms(c) {
		r.dropPresence(ctx, c, room)
	}
}

func (r *Rooms) checkRoom(c *sio.Conn, room string) error {
	if !middleware.ValidRoomID(room) {
		return sio.Errorf(CodeInvalidRoom, "room ids are 1-128 characters of A-Z a-z 0-9 _ . : -")
	}
	if middleware.ReservedRoom(room) {
		return sio.Errorf(CodeForbiddenRoom, "rooms named user:* are reserved")
	}
	if !middleware.RoomAllowed(c.User().Rooms, room) {
		return sio.Errorf(CodeForbiddenRoom, "your token does not allow room %q", room)
	}
	return nil
}

func (r *Rooms) join(ctx context.Context, c *sio.Conn, room string) (joinAck, error) {
	if err := r.checkRoom(c, room); err != nil {
		return joinAck{}, err
	}
	j := rooms(c)
	if _, ok := j[room]; !ok {
		if len(j) >= r.cfg.MaxRoomsPerConn {
			return joinAck{}, sio.Errorf(CodeTooManyRooms, "a connection may join at most %d rooms", r.cfg.MaxRoomsPerConn)
		}
		j[room] = struct{}{}
		c.Join(room)
		r.addPresence(ctx, c, room)
	}
	members, err := r.cfg.Presence.Members(ctx, room)
	if err != nil {
		r.cfg.OnError(err)
		u := c.User()
		members = []adapter.Member{{UserID: u.ID, Name: u.Name, Connections: 1}}
	}
	refs := make([]MemberRef, len(members))
	for i, m := range members {
		refs[i] = MemberRef{UserID: m.UserID, Name: m.Name}
	}
	return joinAck{Room: room, Members: refs}, nil
}

func (r *Rooms) leave(ctx context.Context, c *sio.Conn, room string) (leaveAck, error) {
	if !middleware.ValidRoomID(room) {
		return leaveAck{}, sio.Errorf(CodeInvalidRoom, "room ids are 1-128 characters of A-Z a-z 0-9 _ . : -")
	}
	j := rooms(c)
	if _, ok := j[room]; !ok {
		return leaveAck{}, sio.Errorf(CodeNotInRoom, "not in room %q", room)
	}
	delete(j, room)
	c.Leave(room)
	r.dropPresence(ctx, c, room)
	return leaveAck{Room: room}, nil
}

func (r *Rooms) presence(ctx context.Context, c *sio.Conn, room string) (presenceAck, error) {
	if err := r.checkRoom(c, room); err != nil {
		return presenceAck{}, err
	}
	members, err := r.cfg.Presence.Members(ctx, room)
	if err != nil {
		return presenceAck{}, err
	}
	return presenceAck{Room: room, Members: members}, nil
}

func (r *Rooms) message(ctx context.Context, c *sio.Conn, in MessageIn) (messageAck, error) {
	if in.RoomID == nil || in.Text == nil {
		return messageAck{}, sio.Errorf(sio.CodeBadRequest, "message needs roomId and text strings")
	}
	room, text := *in.RoomID, *in.Text
	clientID, err := r.checkMessage(room, text, in.ClientID)
	if err != nil {
		return messageAck{}, err
	}
	if _, ok := rooms(c)[room]; !ok {
		return messageAck{}, sio.Errorf(CodeNotInRoom, "join room %q before sending to it", room)
	}
	u := c.User()
	return r.send(ctx, room, text, u.ID, u.Name, clientID)
}

// checkMessage applies the contract's rules to a message's room, text and
// clientId (nil: none), and returns the clientId ("" for none).
func (r *Rooms) checkMessage(room, text string, clientID *string) (string, error) {
	if !middleware.ValidRoomID(room) {
		return "", sio.Errorf(CodeInvalidRoom, "room ids are 1-128 characters of A-Z a-z 0-9 _ . : -")
	}
	if text == "" {
		return "", sio.Errorf(sio.CodeBadRequest, "text must not be empty")
	}
	if len(text) > r.cfg.MessageMaxBytes {
		return "", sio.Errorf(CodePayloadTooLarge, "text is over %d bytes", r.cfg.MessageMaxBytes)
	}
	if clientID == nil {
		return "", nil
	}
	if *clientID == "" || utf8.RuneCountInString(*clientID) > 64 {
		return "", sio.Errorf(sio.CodeBadRequest, "clientId must be 1-64 characters")
	}
	return *clientID, nil
}

// Post sends a message to room from the server side (the HTTP publish
// API) as a client's message event would be broadcast: the same rules for
// room, text (MESSAGE_MAX_BYTES: payload_too_large) and clientId (nil:
// none), the same id, ts, order among the room's messages and clientId
// de-duplication (keyed by userID), in the name of userID and name (no
// membership needed; rooms named user:* are forbidden_room). It returns
// what the message ack says: id, ts, and whether it was a duplicate.
func (r *Rooms) Post(ctx context.Context, room, text, userID, name string, clientID *string) (id string, ts int64, duplicate bool, err error) {
	cid, err := r.checkMessage(room, text, clientID)
	if err != nil {
		return "", 0, false, err
	}
	if middleware.ReservedRoom(room) {
		return "", 0, false, sio.Errorf(CodeForbiddenRoom, "rooms named user:* are reserved")
	}
	if n := utf8.RuneCountInString(userID); n < 1 || n > 128 {
		return "", 0, false, sio.Errorf(sio.CodeBadRequest, "userId must be 1-128 characters")
	}
	if utf8.RuneCountInString(name) > 128 {
		return "", 0, false, sio.Errorf(sio.CodeBadRequest, "name must be at most 128 characters")
	}
	ack, err := r.send(ctx, room, text, userID, name, cid)
	return ack.ID, ack.TS, ack.Duplicate, err
}

// Members is the presence of room as the presence ack gives it, from the
// server side (the HTTP publish API): invalid_room and the user:*
// reservation apply, no token claims.
func (r *Rooms) Members(ctx context.Context, room string) ([]adapter.Member, error) {
	if !middleware.ValidRoomID(room) {
		return nil, sio.Errorf(CodeInvalidRoom, "room ids are 1-128 characters of A-Z a-z 0-9 _ . : -")
	}
	if middleware.ReservedRoom(room) {
		return nil, sio.Errorf(CodeForbiddenRoom, "rooms named user:* are reserved")
	}
	return r.cfg.Presence.Members(ctx, room)
}

// send broadcasts an accepted message of user (userID, name) to room,
// de-duplicated by clientID when it is not empty, in the room's order.
func (r *Rooms) send(ctx context.Context, room, text, userID, name, clientID string) (messageAck, error) {
	// One attempt at a time per clientId on this node: a retry that arrives
	// over another connection while the first attempt is still in flight
	// waits for its outcome rather than being answered "duplicate" for a
	// message that may yet fail.
	var key string
	if clientID != "" {
		key = userID + "\x00" + clientID
		done, err := r.holdKey(ctx, key)
		if err != nil {
			return messageAck{}, err
		}
		defer done()
	}

	// Members see a room's messages in the order they were accepted (id and
	// ts assigned): a message takes its place in the room's line when it is
	// accepted and publishes when the earlier ones are done. The dedupe claim
	// runs meanwhile, outside any lock; nothing is shared between rooms.
	l, p, acc := r.enterLine(room)
	defer r.leaveLine(room, l, p)
	msg := Message{RoomID: room, UserID: userID, Name: name, Text: text, ClientID: clientID}
	if key != "" && r.ns.OnceSupported() {
		// The cluster claims and publishes in one step (sio.Once): a retry
		// after a lost answer is a duplicate exactly when it was delivered.
		if err := p.wait(ctx); err != nil {
			return messageAck{}, fmt.Errorf("message to %q: earlier messages of the room still publishing: %w", room, sio.ErrUnavailable)
		}
		val, _ := json.Marshal(acc)
		msg.ID, msg.TS = acc.ID, acc.TS
		prev, err := r.ns.To(room).EmitOnce(sio.Once{Key: key, Value: val, TTL: r.cfg.DedupeWindow}, "message", msg)
		if err != nil {
			return messageAck{}, err
		}
		if prev != nil {
			var got adapter.Accepted
			_ = json.Unmarshal(prev, &got)
			return messageAck{ID: got.ID, TS: got.TS, Duplicate: true}, nil
		}
		return messageAck{ID: acc.ID, TS: acc.TS}, nil
	}
	if key != "" {
		got, dup, err := r.cfg.Dedupe.Claim(ctx, key, acc, r.cfg.DedupeWindow)
		if err != nil {
			return messageAck{}, err
		}
		if dup {
			return messageAck{ID: got.ID, TS: got.TS, Duplicate: true}, nil
		}
	}
	if err := p.wait(ctx); err != nil {
		r.release(ctx, key, acc)
		return messageAck{}, fmt.Errorf("message to %q: earlier messages of the room still publishing: %w", room, sio.ErrUnavailable)
	}
	msg.ID, msg.TS = acc.ID, acc.TS
	if err := r.ns.To(room).Emit("message", msg); err != nil {
		// Not delivered anywhere (sio.ErrUnavailable: the cluster is
		// unreachable): the claim goes, so that a retry is delivered.
		r.release(ctx, key, acc)
		return messageAck{}, err
	}
	return messageAck{ID: acc.ID, TS: acc.TS}, nil
}

// release forgets the dedupe claim of a message that was not delivered.
func (r *Rooms) release(ctx context.Context, key string, acc adapter.Accepted) {
	if key == "" {
		return
	}
	// Even when the handler's deadline has passed: the claim must go.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := r.cfg.Dedupe.Release(rctx, key, acc); err != nil {
		r.cfg.OnError(fmt.Errorf("dedupe release: %w", err))
	}
}

// releaseTimeout bounds a dedupe release.
const releaseTimeout = time.Second

// holdKey waits until no other message with key is in flight on this node
// (bounded by ctx) and marks key in flight until done is called.
func (r *Rooms) holdKey(ctx context.Context, key string) (done func(), err error) {
	for {
		r.keysMu.Lock()
		busy, ok := r.keys[key]
		if !ok {
			mine := make(chan struct{})
			r.keys[key] = mine
			r.keysMu.Unlock()
			return func() {
				r.keysMu.Lock()
				delete(r.keys, key)
				r.keysMu.Unlock()
				close(mine)
			}, nil
		}
		r.keysMu.Unlock()
		select {
		case <-busy: // that attempt is over: look again
		case <-ctx.Done():
			return nil, fmt.Errorf("an earlier attempt of this message is still in flight: %w", sio.ErrUnavailable)
		}
	}
}

// line orders the messages of one room: each takes a place when it is
// accepted and publishes once every earlier place of the line is done. A
// line exists only while its room has a message in flight, so there are at
// most as many as rooms in use.
type line struct {
	refs   int        // places taken and not yet left (guarded by Rooms.linesMu)
	mu     sync.Mutex // guards places
	places []*place   // in acceptance order; places[0] is not done and has the turn
}

type place struct {
	turn chan struct{} // closed when the place gets the turn; nil: had it from the start
	done bool
}

var linePool = sync.Pool{New: func() any { return new(line) }}

// enterLine accepts a message to room (its id and ts) and gives it a place in
// the room's line.
func (r *Rooms) enterLine(room string) (*line, *place, adapter.Accepted) {
	r.linesMu.Lock()
	l := r.lines[room]
	if l == nil {
		l = linePool.Get().(*line)
		r.lines[room] = l
	}
	l.refs++
	r.linesMu.Unlock()

	l.mu.Lock()
	acc := adapter.Accepted{ID: r.nextID(), TS: time.Now().UnixMilli()}
	p := &place{}
	if len(l.places) > 0 {
		p.turn = make(chan struct{})
	}
	l.places = append(l.places, p)
	l.mu.Unlock()
	return l, p, acc
}

// wait returns once p has the turn, or ctx's error first.
func (p *place) wait(ctx context.Context) error {
	if p.turn == nil {
		return nil
	}
	select {
	case <-p.turn:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leaveLine marks p done (published, or given up) and hands the turn on.
func (r *Rooms) leaveLine(room string, l *line, p *place) {
	l.mu.Lock()
	p.done = true
	i := 0
	for i < len(l.places) && l.places[i].done {
		i++
	}
	if i > 0 {
		clear(l.places[:i])
		l.places = l.places[i:]
		if len(l.places) > 0 {
			close(l.places[0].turn)
		}
	}
	l.mu.Unlock()

	r.linesMu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(r.lines, room)
		l.places = l.places[:0]
		linePool.Put(l)
	}
	r.linesMu.Unlock()
}

// Lines is the number of rooms with a message in flight on this node (for
// tests and metrics).
func (r *Rooms) Lines() int {
	r.linesMu.Lock()
	defer r.linesMu.Unlock()
	return len(r.lines)
}

func (r *Rooms) addPresence(ctx context.Context, c *sio.Conn, room string) {
	u := c.User()
	defer r.holdPresence(ctx, room, u.ID)()
	first, err := r.cfg.Presence.Join(ctx, room, u.ID, u.Name, presenceID(c))
	if err != nil {
		r.cfg.OnError(err)
		return
	}
	if first {
		r.emit(r.ns.To(room).Except(c.ID()), "user-joined", MemberRef{RoomID: room, UserID: u.ID, Name: u.Name})
	}
}

func (r *Rooms) dropPresence(ctx context.Context, c *sio.Conn, room string) {
	u := c.User()
	defer r.holdPresence(ctx, room, u.ID)()
	last, err := r.cfg.Presence.Leave(ctx, room, u.ID, presenceID(c))
	if err != nil {
		r.cfg.OnError(err)
		return
	}
	if last {
		// Not to the leaving connection itself: a recovered session would
		// otherwise replay its own user-left.
		r.emit(r.ns.To(room).Except(c.ID()), "user-left", MemberRef{RoomID: room, UserID: u.ID, Name: u.Name})
	}
}

// holdPresence makes one connection's presence change of user in room, and
// the user-joined or user-left it decides, happen before the next one's on
// this node: a recovered connection's join and its dead predecessor's leave
// run on two queues, and each one's notification must leave in the order of
// the decisions (else the room hears "joined" then "left" for a user who is
// back). Held only by that user's changes in that room; past ctx it goes on
// unordered.
func (r *Rooms) holdPresence(ctx context.Context, room, userID string) (done func()) {
	done, err := r.holdKey(ctx, "presence\x00"+room+"\x00"+userID)
	if err != nil {
		return func() {}
	}
	return done
}

// UserGone tells room that the user's last connection left it (also used
// when a dead node's connections are reaped).
func (r *Rooms) UserGone(room, userID, name string) {
	r.emit(r.ns.To(room), "user-left", MemberRef{RoomID: room, UserID: userID, Name: name})
}

// emit sends a presence notification. One that the cluster cannot take
// (sio.ErrUnavailable) is not sent anywhere and only reported: the join or
// leave itself stands, and presence answers from the store.
func (r *Rooms) emit(b sio.Broadcast, event string, v any) {
	if err := b.Emit(event, v); err != nil {
		r.cfg.OnError(fmt.Errorf("%s not sent: %w", event, err))
	}
}

type presenceKey struct{}

// presenceID names this connection in the presence store. A recovered
// connection keeps its socket id, possibly on another node, while its dead
// predecessor's entries wait to be reaped: a fresh name keeps the two apart.
func presenceID(c *sio.Conn) string {
	if id, ok := c.Value(presenceKey{}).(string); ok {
		return id
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := c.ID() + "." + hex.EncodeToString(b[:])
	c.SetValue(presenceKey{}, id)
	return id
}

// nextID is unique across the cluster: node id plus a node-local sequence,
// prefixed with the time so ids sort roughly by acceptance.
func (r *Rooms) nextID() string {
	n := r.seq.Add(1)
	b := make([]byte, 0, 32)
	b = strconv.AppendInt(b, time.Now().UnixMilli(), 36)
	b = append(b, '-')
	b = append(b, r.cfg.NodeID...)
	b = append(b, '-')
	b = strconv.AppendUint(b, n, 36)
	return string(b)
}
