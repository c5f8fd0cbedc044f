package sio

import (
	"bytes"
	"encoding/json"
	"github.com/switchboard/switchboard/internal/engine/msgpackparser"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eio"
	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// A client's input waiting for its handlers is bounded by Options.MaxInbound:
// each message (a packet, or one attachment of a binary packet) holds its
// bytes plus inboundOverhead from the moment it is read until its packet has
// been processed. At the budget OnMessage blocks, so the engine stops reading
// the client (TCP flow control pushes back; a polling POST waits for its
// answer) until the handlers catch up.
const inboundOverhead = 64

// maxQueued bounds the packets waiting for (or in) a connection's handlers
// whatever their size, since what a packet costs besides its bytes is more
// than inboundOverhead: at the cap the reader pauses as at the byte budget.
const maxQueued = 8192

// corkMax bounds how long what the handlers send stays corked while a busy
// queue runs (a client kept at its input budget always has work queued).
const corkMax = 5 * time.Millisecond

// task is one entry of a client's queue; size is what it holds of the input
// budget (0 for the disconnect hooks, which are not input).
type task struct {
	fn   func()
	size int
}

// inboundHook, when set (tests), is told the input bytes a client holds each
// time it takes more.
var inboundHook atomic.Pointer[func(held int)]

// client is one Engine.IO session and the namespaces it joined. Every packet
// it sends is processed on its task queue, in order, one at a time: connects
// (middleware), events (handlers), acks and disconnect hooks. The queue has a
// goroutine only while it has work.
type client struct {
	srv          *Server
	eng          *eio.Socket
	dec          sioparser.Decoder // used by OnMessage only (the engine serializes it)
	v3           bool              // socket.io-client 2.x: Socket.IO protocol 4 over Engine.IO 3 (eio3.go)
	asm          int               // input bytes of the binary packet dec is assembling (OnMessage only)
	connectTimer *time.Timer

	mu            sync.Mutex
	conns         []*Conn // connected namespaces (one or two: a slice is smaller than a map)
	everConnected bool
	closed        bool

	qmu     sync.Mutex
	queue   []task
	running bool
	inbound int           // input bytes held: queued or running packets, and asm
	packets int           // client packets queued or running
	qclosed bool          // the session is closing: no more input is taken
	wake    chan struct{} // closed to wake OnMessage waiting for room; nil when none waits
	wantN   int           // the waiting message's bytes
	wantAsm int           // the bytes its packet already holds
}

// OnMessage decodes a Socket.IO packet and queues its processing. It blocks
// while the client's input already holds its budget (see inboundOverhead).
func (c *client) OnMessage(data []byte, binary bool) {
	n := len(data) + inboundOverhead
	if c.asm+n > c.srv.opts.MaxInbound {
		// A binary packet whose attachments exceed the budget could never be
		// processed (one message alone always fits: MaxInbound >= MaxPayload).
		c.srv.log.Debug().Str("sid", c.eng.ID()).Int("bytes", c.asm+n).Msg("binary packet larger than MAX_INBOUND_BYTES: closing the connection")
		c.dropAssembly()
		c.closeAll("transport error")
		c.eng.CloseNow()
		return
	}
	if !c.reserve(n) {
		c.dropAssembly()
		return // the session ended while its input waited
	}
	c.asm += n
	var (
		p   sioparser.Packet
		ok  bool
		err error
	)
	switch {
	case c.srv.opts.Parser == ParserMsgpack && binary:
		p, err = (&msgpackparser.Decoder{}).Decode(bytes.Clone(data)) // its attachments alias the clone
		ok = err == nil
	case c.srv.opts.Parser == ParserMsgpack:
		err = errTextWithMsgpack
	case binary:
		p, ok, err = c.dec.AddBinary(bytes.Clone(data))
	default:
		p, ok, err = c.dec.AddText(data)
		if ok {
			p.Data = bytes.Clone(p.Data) // it aliases the engine's buffer
		}
	}
	if err != nil {
		c.dropAssembly()
		c.srv.log.Debug().Err(err).Str("sid", c.eng.ID()).Msg("invalid packet: closing the connection")
		c.closeAll("parse error")
		c.eng.CloseNow()
		return
	}
	if !ok {
		return // a binary packet waiting for its attachments: what it has is held in asm
	}
	size := c.asm
	c.asm = 0
	nsp := p.Nsp
	if nsp == "" {
		nsp = "/"
	}
	if c.v3 {
		var auth json.RawMessage
		if nsp, auth = splitNspV3(nsp); p.Type == sioparser.Connect {
			p.Data = auth
		}
	}
	switch p.Type {
	case sioparser.Connect:
		c.enqueue(func() { c.connect(nsp, p.Data) }, size)
	case sioparser.Disconnect:
		c.enqueue(func() {
			if conn := c.conn(nsp); conn != nil {
				conn.close("client namespace disconnect")
			}
		}, size)
	case sioparser.Event, sioparser.BinaryEvent:
		c.enqueue(func() {
			if conn := c.conn(nsp); conn != nil {
				conn.onEvent(p)
			}
		}, size)
	case sioparser.Ack, sioparser.BinaryAck:
		c.enqueue(func() {
			if conn := c.conn(nsp); conn != nil {
				conn.onAck(p)
			}
		}, size)
	default:
		// CONNECT_ERROR from a client means nothing: ignored, like events for
		// a namespace the client is not (or no longer) connected to.
		c.qmu.Lock()
		c.inbound -= size
		c.wakeLocked()
		c.qmu.Unlock()
	}
}

// reserve takes n bytes of the input budget for a message. While the packets
// before it hold the budget (or maxQueued packets wait) it blocks: the
// session's reader is paused until the handlers have made room, which is
// reported once per pause. False when the session ended meanwhile.
func (c *client) reserve(n int) bool {
	c.qmu.Lock()
	if c.mustWaitLocked(n, c.asm) {
		c.wantN, c.wantAsm = n, c.asm
		c.qmu.Unlock()
		c.srv.obs.Limit(LimitInboundPaused)
		done := c.eng.Done() // the engine calls no OnClose while OnMessage waits: its end wakes us
		c.qmu.Lock()
		for c.mustWaitLocked(n, c.asm) {
			w := make(chan struct{})
			c.wake = w
			c.qmu.Unlock()
			ended := false
			select {
			case <-w:
			case <-done:
				ended = true
			}
			c.qmu.Lock()
			if ended {
				if c.wake == w {
					c.wake = nil
				}
				c.qmu.Unlock()
				return false
			}
		}
	}
	if c.qclosed {
		c.qmu.Unlock()
		return false
	}
	c.inbound += n
	held := c.inbound
	c.qmu.Unlock()
	if h := inboundHook.Load(); h != nil {
		(*h)(held)
	}
	return true
}

// mustWaitLocked tells whether a message of n bytes, of a packet that holds
// asm bytes already, must wait for room.
func (c *client) mustWaitLocked(n, asm int) bool {
	if c.qclosed {
		return false
	}
	return (c.inbound > asm && c.inbound+n > c.srv.opts.MaxInbound) || c.packets >= maxQueued
}

// wakeLocked wakes OnMessage waiting for room once there is room.
func (c *client) wakeLocked() {
	if c.wake != nil && !c.mustWaitLocked(c.wantN, c.wantAsm) {
		close(c.wake)
		c.wake = nil
	}
}

// dropAssembly gives back what a binary packet being assembled holds.
func (c *client) dropAssembly() {
	c.dec.Reset()
	if c.asm > 0 {
		c.qmu.Lock()
		c.inbound -= c.asm
		c.wakeLocked()
		c.qmu.Unlock()
		c.asm = 0
	}
}

// OnClose ends every namespace connection of the session.
func (c *client) OnClose(reason string) {
	if reason == "forced server close" {
		reason = "server shutting down"
	}
	c.mu.Lock()
	if c.connectTimer != nil {
		c.connectTimer.Stop()
		c.connectTimer = nil
	}
	if !c.everConnected {
		c.everConnected = true // no longer pending
		c.srv.pending.Add(-1)
	}
	c.mu.Unlock()
	c.closeAll(reason)
}

func (c *client) closeAll(reason string) {
	c.mu.Lock()
	c.closed = true
	conns := slices.Clone(c.conns)
	c.mu.Unlock()
	c.qmu.Lock()
	c.qclosed = true // input waiting for room is dropped
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
	c.qmu.Unlock()
	for _, conn := range conns {
		conn.close(reason)
	}
}

func (c *client) conn(nsp string) *Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		if conn.n.name == nsp {
			return conn
		}
	}
	return nil
}

// pending reports whether the session has joined no namespace yet.
func (c *client) pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.everConnected
}

func (c *client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// add registers a connected namespace; false when the session is closed.
func (c *client) add(conn *Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.conns = append(c.conns, conn)
	if !c.everConnected {
		c.everConnected = true
		c.srv.pending.Add(-1)
	}
	if c.connectTimer != nil { // connected in time: the timer's memory goes now
		c.connectTimer.Stop()
		c.connectTimer = nil
	}
	return true
}

func (c *client) remove(conn *Conn) {
	c.mu.Lock()
	if i := slices.Index(c.conns, conn); i >= 0 {
		c.conns = slices.Delete(c.conns, i, i+1)
	}
	c.mu.Unlock()
}

func (c *client) connect(name string, auth json.RawMessage) {
	if c.isClosed() {
		return
	}
	n := c.srv.lookup(name)
	if n == nil {
		n = c.srv.dynamicNamespace(name, auth)
	}
	if n == nil {
		c.send(sioparser.ConnectError, name, 0, false, json.RawMessage(`{"message":"Invalid namespace"}`), nil)
		return
	}
	if c.conn(name) != nil {
		return // already connected: a duplicate CONNECT changes nothing
	}
	n.connect(c, auth)
}

// enqueue adds the processing of a client packet, which holds size bytes of
// the input budget (reserved by OnMessage), to the session's queue.
func (c *client) enqueue(fn func(), size int) {
	c.qmu.Lock()
	c.packets++
	c.queueLocked(task{fn, size})
}

// push queues a hook (disconnect): it is not input, so it never waits and is
// never refused (client packets go through enqueue).
func (c *client) push(fn func()) {
	c.qmu.Lock()
	c.queueLocked(task{fn: fn})
}

// queueLocked appends t and starts the queue's goroutine if idle; it
// releases c.qmu.
func (c *client) queueLocked(t task) {
	c.queue = append(c.queue, t)
	if c.running {
		c.qmu.Unlock()
		return
	}
	c.running = true
	c.qmu.Unlock()
	c.srv.workers.run(c)
}

// workerPool runs clients' queues on long-lived goroutines: handlers need
// deep stacks, and growing a fresh goroutine's stack for every burst of
// events cost more than the handlers themselves. A worker that stays idle
// for workerIdle exits, so an idle server keeps none. Each Server has its
// own pool: its workers run only its clients, and its Close ends the idle
// ones at once (a queue given to the pool after stop still runs, on a
// worker that exits when done: disconnect hooks run after Close).
type workerPool struct {
	idle     chan *client
	quit     chan struct{} // closed by stop
	stopOnce sync.Once
	live     atomic.Int64 // workers running or idle
}

const workerIdle = 5 * time.Second

func newWorkerPool() *workerPool {
	return &workerPool{idle: make(chan *client), quit: make(chan struct{})}
}

func (p *workerPool) run(c *client) {
	select {
	case p.idle <- c: // an idle worker takes it
	default:
		p.live.Add(1)
		go p.work(c)
	}
}

func (p *workerPool) work(c *client) {
	defer p.live.Add(-1)
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		c.run()
		t.Reset(workerIdle)
		select {
		case c = <-p.idle:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// stop makes the idle workers exit, and every worker once its queue is done.
func (p *workerPool) stop() { p.stopOnce.Do(func() { close(p.quit) }) }

// count is the number of workers, running or idle.
func (p *workerPool) count() int { return int(p.live.Load()) }

// run processes the queue until it is empty. What the handlers send to this
// client meanwhile (acks, broadcasts it is in) is written once they are done,
// in one write, or every corkMax while the queue stays busy.
func (c *client) run() {
	c.eng.Cork()
	defer c.eng.Uncork()
	corked := time.Now()
	done := 0 // input bytes of the task just run, given back at the next turn
	for {
		c.qmu.Lock()
		if done > 0 {
			c.inbound -= done
			c.packets--
			c.wakeLocked()
			done = 0
		}
		if len(c.queue) == 0 {
			c.running = false
			if cap(c.queue) > 64 {
				c.queue = nil
			} else {
				c.queue = c.queue[:0]
			}
			c.qmu.Unlock()
			return
		}
		t := c.queue[0]
		c.queue[0] = task{}
		c.queue = c.queue[1:]
		c.qmu.Unlock()
		t.fn()
		done = t.size
		if now := time.Now(); now.Sub(corked) >= corkMax {
			c.eng.Uncork()
			c.eng.Cork()
			corked = now
		}
	}
}

// send writes one packet to the session: data is its JSON, atts its binary
// attachments (making it a BINARY_EVENT/BINARY_ACK).
func (c *client) send(t sioparser.PacketType, nsp string, id uint64, hasID bool, data json.RawMessage, atts [][]byte) bool {
	return c.eng.Send(c.srv.encode(t, nsp, id, hasID, data, atts)...)
}

// encodePacket builds the engine messages of one Socket.IO packet.
func encodePacket(t sioparser.PacketType, nsp string, id uint64, hasID bool, data json.RawMessage, atts [][]byte) []*eio.Message {
	if len(atts) > 0 {
		switch t {
		case sioparser.Event:
			t = sioparser.BinaryEvent
		case sioparser.Ack:
			t = sioparser.BinaryAck
		}
	}
	buf := make([]byte, 0, 24+len(nsp)+len(data))
	buf = sioparser.AppendHeader(buf, t, len(atts), nsp, id, hasID)
	buf = append(buf, data...)
	msgs := make([]*eio.Message, 0, 1+len(atts))
	msgs = append(msgs, eio.TextMessage(buf))
	for _, a := range atts {
		msgs = append(msgs, eio.BinaryMessage(a))
	}
	return msgs
}

// decodeArgs turns an EVENT's or ACK's data into plain values: objects
// map[string]any, numbers float64, attachments []byte.
func decodeArgs(p sioparser.Packet) ([]any, error) {
	var args []any
	if err := json.Unmarshal(p.Data, &args); err != nil {
		return nil, err
	}
	if len(p.Attachments) > 0 {
		for i, a := range args {
			args[i] = fillPlaceholders(a, p.Attachments)
		}
	}
	return args, nil
}

// fillPlaceholders replaces {"_placeholder":true,"num":n} by attachment n
// (the decoder has checked every placeholder already).
func fillPlaceholders(v any, atts [][]byte) any {
	switch x := v.(type) {
	case map[string]any:
		if x["_placeholder"] == true {
			if num, ok := x["num"].(float64); ok && num >= 0 && int(num) < len(atts) {
				return atts[int(num)]
			}
		}
		for k, e := range x {
			x[k] = fillPlaceholders(e, atts)
		}
	case []any:
		for i, e := range x {
			x[i] = fillPlaceholders(e, atts)
		}
	}
	return v
}

// eventData encodes ["event", v] for the wire: v pre-encoded JSON passes
// through; []byte anywhere in v becomes an attachment.
func eventData(event string, v any) (json.RawMessage, [][]byte, error) {
	w, err := toWire(v)
	if err != nil {
		return nil, nil, err
	}
	switch x := w.(type) {
	case json.RawMessage:
		return sioparser.AppendEventData(make([]byte, 0, len(event)+len(x)+8), event, x), nil, nil
	case nil:
		return sioparser.AppendEventData(nil, event, json.RawMessage("null")), nil, nil
	case string:
		b, _ := json.Marshal(x)
		return sioparser.AppendEventData(make([]byte, 0, len(event)+len(b)+8), event, b), nil, nil
	}
	return sioparser.MarshalData([]any{event, w})
}

// valueData encodes [v] (an ack's arguments) the same way.
func valueData(v any) (json.RawMessage, [][]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		return sioparser.AppendArray(make([]byte, 0, len(raw)+2), raw), nil, nil
	}
	return sioparser.MarshalData([]any{v})
}

// appendOffset adds offset as the last element of the JSON array data (the
// recovery offset Socket.IO clients read from a broadcast's last argument).
func appendOffset(data json.RawMessage, offset string) json.RawMessage {
	end := bytes.LastIndexByte(data, ']')
	if end < 0 {
		return data
	}
	out := make([]byte, 0, len(data)+len(offset)+4)
	out = append(out, data[:end]...)
	out = append(out, ',')
	out = sioparser.AppendString(out, offset)
	return append(out, data[end:]...)
}
