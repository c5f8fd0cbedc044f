package sio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// Node's event model: handlers that get every argument the client sent and
// answer its acknowledgement callback with any arguments, as
// socket.on("x", (a, b, cb) => cb(a, b)) does. Handle (the typed helper with
// {ok, ...} acks) is one shape built on the same dispatch.

// Args are a client event's arguments in the order it sent them: JSON values
// as map[string]any, []any, string, float64, bool or nil, and binary
// attachments as []byte wherever the client put them.
type Args []any

// Ack calls the client's acknowledgement callback with args, as Node's cb(...)
// does: any number of values, []byte anywhere among them sent as binary.
// Only the first call sends; later ones return ErrAckSent. It may be called
// from any goroutine, after the handler has returned. The Ack a handler gets
// is nil when the client asked for no acknowledgement.
type Ack func(args ...any) error

// ErrAckSent is returned by an Ack called more than once.
var ErrAckSent = errors.New("sio: ack already sent")

// ErrConnClosed is returned by an Ack whose connection has ended.
var ErrConnClosed = errors.New("sio: connection closed")

// EventHandler is a handler of one client event with Node's shape. Handlers
// of one connection run one at a time, in the order the client sent the
// events; a panic is recovered and logged (no ack is sent for it).
type EventHandler func(ctx context.Context, c *Conn, args Args, ack Ack)

// AnyHandler sees every event of a connection, incoming (Conn.OnAny) or
// outgoing (Conn.OnAnyOutgoing), with its arguments, as Node's onAny and
// onAnyOutgoing listeners do. It must not block.
type AnyHandler func(event string, args Args)

// On registers the handler of a client event, Node's socket.on(event, fn).
// An event has one handler: On replaces what On or Handle registered before.
func (n *Namespace) On(event string, h EventHandler) {
	if reservedEvents[event] {
		panic(fmt.Sprintf("sio: %q is a reserved event name", event))
	}
	delete(n.handlers, event)
	n.raw[event] = h
}

// RefuseUnknownEvents makes the namespace answer an event it has no handler
// for, when the client asked for an ack, with
// {ok:false, error:{code:"bad_request"}} (the contract's behaviour). Without
// it such an event is dropped and gets no ack, as in Node, so that the
// client's timeout() fires.
func (n *Namespace) RefuseUnknownEvents() { n.refuseUnknown = true }

// newAck returns the Ack of the client's packet id, which sends at most once.
func (c *Conn) newAck(id uint64) Ack {
	var sent atomic.Bool
	return func(args ...any) error {
		if !sent.CompareAndSwap(false, true) {
			return ErrAckSent
		}
		data, atts, err := argsData(args)
		if err != nil {
			return fmt.Errorf("ack of %s: %w", c.n.name, err)
		}
		if !c.cl.send(sioparser.Ack, c.n.name, id, true, data, atts) {
			return ErrConnClosed
		}
		return nil
	}
}

// argsData encodes args as a packet's data array: [a, b, ...], []byte
// anywhere becoming an attachment.
func argsData(args []any) (json.RawMessage, [][]byte, error) {
	if len(args) == 0 {
		return json.RawMessage("[]"), nil, nil
	}
	wire := make([]any, len(args))
	for i, a := range args {
		w, err := toWire(a)
		if err != nil {
			return nil, nil, err
		}
		wire[i] = w
	}
	return sioparser.MarshalData(wire)
}

// eventArgsData encodes [event, args...] the same way; one argument takes the
// path of eventData (pre-encoded JSON passes through).
func eventArgsData(event string, args []any) (json.RawMessage, [][]byte, error) {
	if len(args) == 1 {
		return eventData(event, args[0])
	}
	wire := make([]any, 0, len(args)+1)
	wire = append(wire, event)
	for _, a := range args {
		w, err := toWire(a)
		if err != nil {
			return nil, nil, err
		}
		wire = append(wire, w)
	}
	return sioparser.MarshalData(wire)
}

// eventArgsPlain decodes an event's arguments for an EventHandler or AnyHandler.
func eventArgsPlain(a eventArgs) (Args, error) {
	if a.raw == nil {
		return Args(a.vals), nil
	}
	out := make(Args, len(a.raw))
	for i, r := range a.raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OnAny adds a listener of every event this connection receives, before its
// handler runs (Node's socket.onAny). It runs on the connection's queue, so
// it sees the events in order.
func (c *Conn) OnAny(fn AnyHandler) {
	c.mu.Lock()
	c.anyIn = append(c.anyIn[:len(c.anyIn):len(c.anyIn)], fn)
	c.mu.Unlock()
}

// OnAnyOutgoing adds a listener of every event sent to this connection with
// Emit or EmitWithAck (Node's socket.onAnyOutgoing; broadcasts are not
// included, as in Node).
func (c *Conn) OnAnyOutgoing(fn AnyHandler) {
	c.mu.Lock()
	c.anyOut = append(c.anyOut[:len(c.anyOut):len(c.anyOut)], fn)
	c.mu.Unlock()
}

func (c *Conn) listeners(out bool) []AnyHandler {
	c.mu.Lock()
	defer c.mu.Unlock()
	if out {
		return c.anyOut
	}
	return c.anyIn
}

func (c *Conn) notifyAny(out bool, event string, args Args) {
	for _, fn := range c.listeners(out) {
		fn(event, args)
	}
	if i := c.n.srv.instrument(); i != nil {
		if out {
			i.EventSent(c, event, args)
		} else {
			i.EventReceived(c, event, args)
		}
	}
}

// notifyIncoming calls the OnAny listeners, decoding the arguments only when
// there are some.
func (c *Conn) notifyIncoming(event string, a eventArgs) {
	if len(c.listeners(false)) == 0 && c.n.srv.instrument() == nil {
		return
	}
	args, err := eventArgsPlain(a)
	if err != nil {
		return
	}
	c.notifyAny(false, event, args)
}

// Data is what SetData stored (Node's socket.data); nil by default.
func (c *Conn) Data() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.data
}

// SetData stores v as the connection's data, Node's socket.data. It must
// encode to JSON: other nodes see it in FetchSockets, and a connection that
// recovers its session gets it back in that form (maps, slices, float64s).
func (c *Conn) SetData(v any) {
	c.mu.Lock()
	c.data = v
	c.mu.Unlock()
	if i := c.n.srv.instrument(); i != nil {
		i.Updated(c)
	}
}

// EmitWithAck sends event with args to this connection and waits for the
// client's acknowledgement, Node's socket.timeout(ms).emitWithAck(...): it
// returns the ack's arguments. It fails when ctx ends first (give it the
// timeout), when the connection closes, or when the client already owes
// the server too many acks; ctx without a deadline still ends at AckTimeout.
func (c *Conn) EmitWithAck(ctx context.Context, event string, args ...any) (Args, error) {
	data, atts, err := eventArgsData(event, args)
	if err != nil {
		return nil, fmt.Errorf("emit %q with ack: %w", event, err)
	}
	got := make(chan []any, 1)
	id, ok := c.sendWithAck(data, atts, func(a []any) { got <- a })
	if !ok {
		return nil, fmt.Errorf("emit %q with ack: %w", event, ErrConnClosed)
	}
	c.n.srv.obs.Emitted(c.n.name, event)
	c.notifyAny(true, event, args)
	timeout := time.NewTimer(c.n.srv.opts.AckTimeout)
	defer timeout.Stop()
	select {
	case a := <-got:
		return Args(a), nil
	case <-ctx.Done():
		c.takeAck(id)
		return nil, fmt.Errorf("emit %q with ack: %w", event, ctx.Err())
	case <-timeout.C:
		c.takeAck(id)
		return nil, fmt.Errorf("emit %q with ack: %w", event, context.DeadlineExceeded)
	case <-c.hooksDone:
		select {
		case a := <-got: // answered just before the close
			return Args(a), nil
		default:
		}
		return nil, fmt.Errorf("emit %q with ack: %w", event, ErrConnClosed)
	}
}

// Broadcast targets every connection of the namespace except this one,
// Node's socket.broadcast.
func (c *Conn) Broadcast() Broadcast { return c.n.To().Except(c.id) }

// To targets the members of rooms except this connection, Node's
// socket.to(room).
func (c *Conn) To(rooms ...string) Broadcast { return c.n.To(rooms...).Except(c.id) }

// Auth is the payload the client sent with its CONNECT (Node's
// socket.handshake.auth); nil when it sent none. Do not modify it.
func (c *Conn) Auth() map[string]any { return c.auth }
