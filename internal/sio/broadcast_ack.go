package sio

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// AckTimeout bounds EmitWithAck when its context has no deadline (Node
// requires a timeout for a broadcast with acks; this is its requests
// timeout default).
const AckTimeout = 5 * time.Second

// EmitWithAck sends event with payload v to the target, on every node, each
// recipient expecting to acknowledge it, and returns each recipient's first
// ack argument (plain values: JSON types, []byte), as Node's
// io.to(room).timeout(ms).emit(event, v, (err, responses) => ...). It
// returns once every recipient answered, or when ctx ends (or after
// AckTimeout when ctx has no deadline): then with the responses that
// arrived and an error, as Node calls back with err and the partial
// responses. A recipient that disconnects before answering never does. The
// order of the responses is their arrival order.
//
// On one node, or when the cluster cannot be reached (the error then says
// so once the local recipients answered), only this node's sockets get it.
func (b Broadcast) EmitWithAck(ctx context.Context, event string, v any) ([]any, error) {
	n := b.n
	opts := BroadcastOpts{Rooms: b.rooms, Except: b.except}
	w, err := toWire(v)
	if err != nil {
		return nil, fmt.Errorf("broadcast %q: %w", event, err)
	}
	p := Packet{Type: int(sioparser.Event), Nsp: n.name, Data: []any{event, plainValue(w)}}
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, AckTimeout)
	}
	defer cancel()

	t := newAckTally()
	servers := 1 // this one
	var remoteErr error
	if ab := n.ackBroadcaster(); ab != nil {
		others, err := ab.BroadcastWithAck(ctx, p, opts, t.count, t.ack)
		if err != nil {
			remoteErr = fmt.Errorf("sio: broadcast with ack not sent to the cluster, this node only: %w", err)
		} else {
			servers += others
		}
	}
	n.localSide().DeliverWithAck(p, opts, t.count, t.ack)
	t.arm(servers)
	n.srv.obs.Emitted(n.name, event)

	select {
	case <-t.done:
		return t.result(), remoteErr
	case <-ctx.Done():
	}
	res, complete, msg := t.finish()
	if complete { // the last answer came with the deadline
		return res, remoteErr
	}
	err = fmt.Errorf("sio: broadcast %q with ack: %w: %s", event, ctx.Err(), msg)
	if remoteErr != nil {
		err = fmt.Errorf("%w (%w)", err, remoteErr)
	}
	return res, err
}

func (n *Namespace) ackBroadcaster() AckBroadcaster {
	if l := n.clusterLink(); l != nil {
		if ab, ok := l.(AckBroadcaster); ok {
			return ab
		}
	}
	return nil
}

// ackTally counts a broadcast with ack's answers as Node's
// BroadcastOperator.emit with a timeout does: complete once every expected
// server gave its client count and as many responses arrived.
type ackTally struct {
	mu        sync.Mutex
	servers   int // servers expected to count their recipients (once armed)
	armed     bool
	counted   int // servers that did
	clients   int // recipients counted so far
	responses []any
	over      bool // done closed, or finished: later answers are dropped
	done      chan struct{}
}

func newAckTally() *ackTally {
	return &ackTally{responses: []any{}, done: make(chan struct{})}
}

// arm sets how many servers count their recipients, once the broadcast is
// sent everywhere: answers that came before are kept, none completes it
// before.
func (t *ackTally) arm(servers int) {
	t.mu.Lock()
	t.servers, t.armed = servers, true
	t.checkLocked()
	t.mu.Unlock()
}

func (t *ackTally) count(k int) {
	t.mu.Lock()
	if !t.over {
		t.counted++
		t.clients += k
		t.checkLocked()
	}
	t.mu.Unlock()
}

func (t *ackTally) ack(arg any) {
	t.mu.Lock()
	if !t.over {
		t.responses = append(t.responses, arg)
		t.checkLocked()
	}
	t.mu.Unlock()
}

func (t *ackTally) checkLocked() {
	if t.armed && !t.over && t.counted >= t.servers && len(t.responses) >= t.clients {
		t.over = true
		close(t.done)
	}
}

func (t *ackTally) result() []any {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]any{}, t.responses...)
}

// finish stops the tally (ctx ended) and reports what arrived.
func (t *ackTally) finish() (res []any, complete bool, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	complete = t.over
	t.over = true
	res = append([]any{}, t.responses...)
	if t.counted < t.servers {
		msg = fmt.Sprintf("%d of %d servers counted their recipients, %d responses of %d counted so far",
			t.counted, t.servers, len(t.responses), t.clients)
	} else {
		msg = fmt.Sprintf("only %d responses received out of %d", len(t.responses), t.clients)
	}
	return res, complete, msg
}
