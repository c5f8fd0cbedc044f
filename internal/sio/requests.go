package sio

import (
	"context"
	"encoding/json"
	"fmt"
)

// Cluster-wide operations of a namespace, as Node's io.of(nsp).fetchSockets,
// socketsJoin, socketsLeave, disconnectSockets, serverSideEmit and
// serverSideEmitWithAck. They reach every node through the cluster link when
// it can ask the others (a Requester); on one node they act on this node's
// sockets only. opts selects sockets as broadcasts do (Rooms, Except;
// Local: this node only; Volatile and Compress are ignored).
//
// This file is shared by the engine implementations: it only uses
// localSide (the namespace's local sockets) and clusterLink (nil on one node).

// FetchSockets describes the sockets opts selects on every node, this
// node's first. When a node does not answer in time (ctx, or 5 s when ctx
// has no deadline) it returns what it has with an error.
func (n *Namespace) FetchSockets(ctx context.Context, opts BroadcastOpts) ([]SocketInfo, error) {
	out := n.localSide().Fetch(opts)
	rq := n.requester()
	if rq == nil || opts.Local {
		return out, nil
	}
	remote, err := rq.FetchSockets(ctx, opts)
	return append(out, remote...), err
}

// SocketsJoin makes the sockets opts selects, on every node, join rooms.
// Like the Node Redis adapter, the cluster applies it on every node in
// order with broadcasts: this node's sockets join once the request came
// back from Redis, so a broadcast sent after SocketsJoin returns reaches
// them, while Conn.In may still report false right after it returns. When
// the cluster is unreachable it is applied on this node only and the error
// says so.
func (n *Namespace) SocketsJoin(ctx context.Context, opts BroadcastOpts, rooms ...string) error {
	return n.request(opts,
		func(rq Requester) error { return rq.SocketsJoin(ctx, opts, rooms) },
		func(l Local) { l.Join(opts, rooms) })
}

// SocketsLeave makes the sockets opts selects, on every node, leave rooms
// (as SocketsJoin).
func (n *Namespace) SocketsLeave(ctx context.Context, opts BroadcastOpts, rooms ...string) error {
	return n.request(opts,
		func(rq Requester) error { return rq.SocketsLeave(ctx, opts, rooms) },
		func(l Local) { l.Leave(opts, rooms) })
}

// DisconnectSockets disconnects the sockets opts selects on every node
// ("io server disconnect"; close also closes their underlying connection).
// It returns once the request is sent: sockets are disconnected one at a
// time, each after what the previous one's disconnect hooks broadcast
// reached the sockets still connected (as Node does), so it may be called
// from a handler of a socket it disconnects.
func (n *Namespace) DisconnectSockets(ctx context.Context, opts BroadcastOpts, close bool) error {
	return n.request(opts,
		func(rq Requester) error { return rq.DisconnectSockets(ctx, opts, close) },
		func(l Local) { go disconnectEach(l, opts, close) })
}

// ServerSideEmit sends event to the other servers of the namespace (Node's
// serverSideEmit): their server-side handlers (OnServerSideEmit, or Node's
// io.on(event)) receive args. This server does not receive it. On one node
// it does nothing. args are plain values ([]byte, []any, map[string]any,
// strings, numbers, bools, nil) or values that encode to JSON.
func (n *Namespace) ServerSideEmit(ctx context.Context, event string, args ...any) error {
	rq := n.requester()
	if rq == nil {
		return nil
	}
	plain, err := plainArgs(args)
	if err != nil {
		return err
	}
	return rq.ServerSideEmit(ctx, event, plain)
}

// ServerSideEmitWithAck sends event to the other servers and returns their
// answers, one per server. As in Node, every other server must answer: one
// without a handler does not, and the call then returns the answers that
// arrived with a timeout error (ctx, or 5 s when ctx has no deadline).
func (n *Namespace) ServerSideEmitWithAck(ctx context.Context, event string, args ...any) ([]any, error) {
	rq := n.requester()
	if rq == nil {
		return []any{}, nil
	}
	plain, err := plainArgs(args)
	if err != nil {
		return nil, err
	}
	return rq.ServerSideEmitWithAck(ctx, event, plain)
}

// OnServerSideEmit sets the handler of the events other servers send to
// this namespace with serverSideEmit (Node's io.on(event, ...) on the other
// side of serverSideEmit). Its result is this server's answer to a
// serverSideEmitWithAck. Without a handler (or with nil) those events are
// dropped unanswered, as by a Node server without a listener. On one node
// nothing ever arrives.
func (n *Namespace) OnServerSideEmit(h ServerSideHandler) {
	rq := n.requester()
	if rq == nil {
		return
	}
	if h == nil {
		rq.OnServerSideEmit(nil)
		return
	}
	rq.OnServerSideEmit(func(ctx context.Context, event string, args []any) any {
		v, err := plainOf(h(ctx, event, args))
		if err != nil {
			return nil
		}
		return v
	})
}

// ServerCount is the number of servers of the namespace, this one included.
func (n *Namespace) ServerCount(ctx context.Context) (int, error) {
	rq := n.requester()
	if rq == nil {
		return 1, nil
	}
	return rq.ServerCount(ctx)
}

func (n *Namespace) requester() Requester {
	if l := n.clusterLink(); l != nil {
		if rq, ok := l.(Requester); ok {
			return rq
		}
	}
	return nil
}

// request sends a join/leave/disconnect to the cluster, which applies it on
// this node too; without one, or when it cannot be sent, local does it here.
func (n *Namespace) request(opts BroadcastOpts, remote func(Requester) error, local func(Local)) error {
	if rq := n.requester(); rq != nil && !opts.Local {
		err := remote(rq)
		if err == nil {
			return nil
		}
		local(n.localSide())
		return fmt.Errorf("sio: cluster request not sent, applied on this node only: %w", err)
	}
	local(n.localSide())
	return nil
}

// disconnectEach disconnects the local sockets opts selects one at a time,
// in Node's order: Local.Disconnect returns after the socket's disconnect
// hooks ran, so what they broadcast (locally delivered at once on one node)
// reaches the sockets disconnected after it, as in Node.
func disconnectEach(l Local, opts BroadcastOpts, close bool) {
	for _, id := range SelectSockets(l, opts) {
		l.Disconnect(BroadcastOpts{Rooms: []string{id}}, close)
	}
}

// SelectSockets lists the ids of the local sockets opts selects (Rooms minus
// Except) in Node's order (see Local.Sockets).
func SelectSockets(l Local, opts BroadcastOpts) []string {
	ids := l.Sockets(opts.Rooms)
	if len(opts.Except) == 0 || len(ids) == 0 {
		return ids
	}
	except := map[string]bool{}
	for _, id := range l.Sockets(opts.Except) {
		except[id] = true
	}
	out := ids[:0]
	for _, id := range ids {
		if !except[id] {
			out = append(out, id)
		}
	}
	return out
}

func plainArgs(args []any) ([]any, error) {
	out := make([]any, len(args))
	for i, a := range args {
		v, err := plainOf(a)
		if err != nil {
			return nil, fmt.Errorf("sio: argument %d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

// plainOf turns v into the plain values nodes exchange: plain values (and
// what our handlers emit) as they are, anything else through JSON.
func plainOf(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, []byte,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return v, nil
	case json.RawMessage, bytesBuffer:
		return plainValue(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			p, err := plainOf(e)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			p, err := plainOf(e)
			if err != nil {
				return nil, err
			}
			out[k] = p
		}
		return out, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}
