// Package rawclient is a minimal Socket.IO v5 client over a WebSocket
// (Engine.IO v4), speaking the wire protocol directly. Go tests use it to
// drive a real server without a Node process; it is not a general client.
package rawclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

var debugFrames = os.Getenv("RAWCLIENT_DEBUG") != ""

// Event is a server-sent event.
type Event struct {
	Name string
	Args []json.RawMessage
}

// Client is one Socket.IO connection to one namespace.
type Client struct {
	ws     *websocket.Conn
	nsp    string
	wmu    sync.Mutex
	mu     sync.Mutex
	nextID uint64
	acks   map[uint64]chan json.RawMessage
	all    map[uint64]chan []json.RawMessage // CallArgs: every ack argument

	Events       chan Event    // server events, in arrival order
	Disconnected chan struct{} // closed when the server sends DISCONNECT or the connection ends
	SID          string        // Socket.IO session id after CONNECT
	PID          string        // private session id (connection state recovery), if the server sent one
	offset       atomic.Value  // string: last recovery offset received
	done         chan struct{}
	ackEvents    atomic.Pointer[func(Event) any]
	closeOnce    sync.Once
	reason       error // why the read loop ended; read after Disconnected is closed
}

// ConnectError is the server's CONNECT_ERROR.
type ConnectError struct {
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

func (e *ConnectError) Error() string { return "connect_error: " + e.Message }

// HTTPError is a refused WebSocket handshake.
type HTTPError struct {
	Status     int
	RetryAfter string
	err        error
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("handshake refused: HTTP %d: %v", e.Status, e.err)
}

// Dial opens a WebSocket to baseURL (http://host:port) at path (e.g.
// "/socket.io/") and connects to namespace nsp with the auth payload.
func Dial(ctx context.Context, baseURL, path, nsp string, auth any, header http.Header) (*Client, error) {
	return DialFrom(ctx, "", baseURL, path, nsp, auth, header)
}

// DialFrom is Dial from the local IP from (e.g. "127.0.0.2", to act as
// another client address on loopback); "" lets the system choose.
func DialFrom(ctx context.Context, from, baseURL, path, nsp string, auth any, header http.Header) (*Client, error) {
	u := "ws" + strings.TrimPrefix(baseURL, "http") + path + "?EIO=4&transport=websocket"
	d := *websocket.DefaultDialer
	if from != "" {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		d.NetDialContext = nd.DialContext
	}
	ws, resp, err := d.DialContext(ctx, u, header)
	if err != nil {
		if resp != nil {
			return nil, &HTTPError{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), err: err}
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	c := &Client{ws: ws, nsp: nsp, acks: map[uint64]chan json.RawMessage{}, all: map[uint64]chan []json.RawMessage{},
		Events: make(chan Event, 1024), Disconnected: make(chan struct{}), done: make(chan struct{})}
	if _, msg, err := ws.ReadMessage(); err != nil || len(msg) == 0 || msg[0] != '0' {
		ws.Close()
		return nil, fmt.Errorf("engine.io open packet: %q %v", msg, err)
	}
	connect := "40"
	if nsp != "/" {
		connect += nsp + ","
	}
	if auth != nil {
		b, _ := json.Marshal(auth)
		connect += string(b)
	}
	if err := c.write(connect); err != nil {
		ws.Close()
		return nil, err
	}
	var early []string
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("waiting for CONNECT: %w", err)
		}
		s := string(msg)
		if s == "2" {
			_ = c.write("3")
			continue
		}
		typ, body := c.strip(s)
		switch typ {
		case "2": // events before CONNECT (a recovered session's missed packets): keep for later
			early = append(early, s)
		case "0":
			var v struct {
				SID string `json:"sid"`
				PID string `json:"pid"`
			}
			_ = json.Unmarshal([]byte(body), &v)
			c.SID, c.PID = v.SID, v.PID
			for _, f := range early {
				c.handle(f)
			}
			go c.readLoop()
			return c, nil
		case "4":
			ws.Close()
			ce := &ConnectError{}
			_ = json.Unmarshal([]byte(body), ce)
			return nil, ce
		}
	}
}

// strip removes "4" (message), the packet type and the namespace prefix.
func (c *Client) strip(s string) (typ, body string) {
	if len(s) < 2 || s[0] != '4' {
		return "", ""
	}
	typ, body = s[1:2], s[2:]
	if c.nsp != "/" && strings.HasPrefix(body, c.nsp+",") {
		body = body[len(c.nsp)+1:]
	}
	return typ, body
}

func (c *Client) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// WriteRaw sends a raw Engine.IO frame (for malformed-input tests).
func (c *Client) WriteRaw(s string) error { return c.write(s) }

func (c *Client) packet(typ string, id *uint64, data []any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	s := "4" + typ
	if c.nsp != "/" {
		s += c.nsp + ","
	}
	if id != nil {
		s += strconv.FormatUint(*id, 10)
	}
	return c.write(s + string(b))
}

// Emit sends an event without an ack.
func (c *Client) Emit(event string, args ...any) error {
	return c.packet("2", nil, append([]any{event}, args...))
}

// EmitAck sends an event and returns a channel that receives the first ack argument.
func (c *Client) EmitAck(event string, args ...any) (<-chan json.RawMessage, error) {
	ch := make(chan json.RawMessage, 1)
	c.mu.Lock()
	id := c.nextID
	c.nextID++
	c.acks[id] = ch
	c.mu.Unlock()
	return ch, c.packet("2", &id, append([]any{event}, args...))
}

// Call sends an event and waits for its ack.
func (c *Client) Call(ctx context.Context, event string, args ...any) (json.RawMessage, error) {
	ch, err := c.EmitAck(event, args...)
	if err != nil {
		return nil, err
	}
	select {
	case v := <-ch:
		return v, nil
	case <-c.Disconnected:
		select { // an ack read just before the disconnect still counts
		case v := <-ch:
			return v, nil
		default:
		}
		return nil, fmt.Errorf("disconnected before the ack: %w", c.reason)
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for ack of %q: %w", event, ctx.Err())
	}
}

// CallArgs sends an event and waits for its ack, returning every argument
// of the ack (none included), as a socket.io-client callback receives them.
func (c *Client) CallArgs(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	ch := make(chan []json.RawMessage, 1)
	c.mu.Lock()
	id := c.nextID
	c.nextID++
	c.all[id] = ch
	c.mu.Unlock()
	if err := c.packet("2", &id, append([]any{event}, args...)); err != nil {
		return nil, err
	}
	select {
	case v := <-ch:
		return v, nil
	case <-c.Disconnected:
		return nil, fmt.Errorf("disconnected before the ack: %w", c.reason)
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for ack of %q: %w", event, ctx.Err())
	}
}

// AckEvents makes the client acknowledge the server's events that expect
// it (an EVENT with an id) with fn's result as the only argument, as a
// socket.io-client listener calling its callback; nil stops answering.
// fn runs on the read loop.
func (c *Client) AckEvents(fn func(e Event) any) {
	if fn == nil {
		c.ackEvents.Store(nil)
		return
	}
	c.ackEvents.Store(&fn)
}

// Next returns the next server event.
func (c *Client) Next(ctx context.Context) (Event, error) {
	select {
	case e := <-c.Events:
		return e, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

func (c *Client) readLoop() {
	defer c.closeOnce.Do(func() { close(c.Disconnected) })
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.reason = err
			return
		}
		s := string(msg)
		if debugFrames {
			println("rawclient <-", s)
		}
		if s == "2" {
			_ = c.write("3")
			continue
		}
		if !c.handle(s) {
			c.reason = errors.New("server disconnect")
			return
		}
	}
}

// handle processes one frame after CONNECT; false means DISCONNECT.
func (c *Client) handle(s string) bool {
	typ, body := c.strip(s)
	switch typ {
	case "1": // DISCONNECT
		return false
	case "2": // EVENT
		// An id before the array: the server expects an ack.
		hasID, id := false, uint64(0)
		if i := strings.IndexByte(body, '['); i > 0 {
			n, err := strconv.ParseUint(body[:i], 10, 64)
			if err != nil {
				return true
			}
			hasID, id, body = true, n, body[i:]
		}
		var arr []json.RawMessage
		if json.Unmarshal([]byte(body), &arr) != nil || len(arr) == 0 {
			return true
		}
		var name string
		_ = json.Unmarshal(arr[0], &name)
		// As socket.io-client does: with a pid, the last argument is the offset.
		if c.PID != "" && len(arr) >= 2 && len(arr[len(arr)-1]) > 0 && arr[len(arr)-1][0] == '"' {
			var off string
			_ = json.Unmarshal(arr[len(arr)-1], &off)
			c.offset.Store(off)
			arr = arr[:len(arr)-1]
		}
		ev := Event{Name: name, Args: arr[1:]}
		if fn := c.ackEvents.Load(); hasID && fn != nil {
			_ = c.packet("3", &id, []any{(*fn)(ev)})
		}
		select {
		case c.Events <- ev:
		default: // a test not reading events must not stall acks
		}
	case "3": // ACK
		i := strings.IndexByte(body, '[')
		if i <= 0 {
			return true
		}
		id, err := strconv.ParseUint(body[:i], 10, 64)
		if err != nil {
			return true
		}
		var arr []json.RawMessage
		_ = json.Unmarshal([]byte(body[i:]), &arr)
		c.mu.Lock()
		ch, all := c.acks[id], c.all[id]
		delete(c.acks, id)
		delete(c.all, id)
		c.mu.Unlock()
		if all != nil {
			all <- arr
		}
		if ch != nil && len(arr) > 0 {
			ch <- arr[0]
		}
	}
	return true
}

// Offset is the last recovery offset received ("" if none).
func (c *Client) Offset() string {
	s, _ := c.offset.Load().(string)
	return s
}

// Recovered reports whether the server resumed the session given in the
// auth payload (the CONNECT reply carried the same sid).
func (c *Client) Recovered(previousSID string) bool { return c.SID == previousSID }

// Close closes the WebSocket without a DISCONNECT packet (a transport drop).
func (c *Client) Close() error { return c.ws.Close() }
