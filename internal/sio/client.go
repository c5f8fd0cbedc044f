package sio

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/switchboard/switchboard/internal/engine/eio"
	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// maxQueued bounds a connection's packets waiting for its handlers: a
// client that floods faster than its handlers run is closed.
const maxQueued = 4096

// client is one Engine.IO session and the namespaces it joined. Every packet
// it sends is processed on its task queue, in order, one at a time: connects
// (middleware), events (handlers), acks and disconnect hooks. The queue has a
// goroutine only while it has work.
type client struct {
	srv          *Server
	eng          *eio.Socket
	dec          sioparser.Decoder // used by OnMessage only (the engine serializes it)
	connectTimer *time.Timer

	mu            sync.Mutex
	conns         []*Conn // connected namespaces (one or two: a slice is smaller than a map)
	everConnected bool
	closed        bool

	qmu     sync.Mutex
	queue   []func()
	running bool
}

// OnMessage decodes a Socket.IO packet and queues its processing.
func (c *client) OnMessage(data []byte, binary bool) {
	var (
		p   sioparser.Packet
		ok  bool
		err error
	)
	if binary {
		p, ok, err = c.dec.AddBinary(bytes.Clone(data))
	} else {
		p, ok, err = c.dec.AddText(data)
		if ok {
			p.Data = bytes.Clone(p.Data) // it aliases the engine's buffer
		}
	}
	if err != nil {
		c.srv.log.Debug().Err(err).Str("sid", c.eng.ID()).Msg("invalid packet: closing the connection")
		c.closeAll("parse error")
		c.eng.CloseNow()
		return
	}
	if !ok {
		return
	}
	nsp := p.Nsp
	if nsp == "" {
		nsp = "/"
	}
	switch p.Type {
	case sioparser.Connect:
		c.enqueue(func() { c.connect(nsp, p.Data) })
	case sioparser.Disconnect:
		c.enqueue(func() {
			if conn := c.conn(nsp); conn != nil {
				conn.close("client namespace disconnect")
			}
		})
	case sioparser.Event, sioparser.BinaryEvent:
		c.enqueue(func() {
			if conn := c.conn(nsp); conn != nil {
				conn.onEvent(p)
			}
		})
	case sioparser.Ack, sioparser.BinaryAck:
		c.enqueue(func() {
			if conn := c.conn(nsp); conn != nil {
				conn.onAck(p)
			}
		})
	}
	// CONNECT_ERROR from a client means nothing: ignored, like events for a
	// namespace the client is not (or no longer) connected to.
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
		c.send(sioparser.ConnectError, name, 0, false, json.RawMessage(`{"message":"Invalid namespace"}`), nil)
		return
	}
	if c.conn(name) != nil {
		return // already connected: a duplicate CONNECT changes nothing
	}
	n.connect(c, auth)
}

// enqueue adds the processing of a client packet to the session's queue,
// starting its goroutine if idle.
func (c *client) enqueue(fn func()) { c.push(fn, true) }

// push queues fn; bounded tasks are refused (and the session closed) when
// the client is too far ahead of its handlers. Hooks are never refused.
func (c *client) push(fn func(), bounded bool) {
	c.qmu.Lock()
	if bounded && len(c.queue) >= maxQueued {
		c.qmu.Unlock()
		c.srv.log.Warn().Str("sid", c.eng.ID()).Msg("client floods faster than its handlers run: closing")
		c.closeAll("transport error")
		c.eng.CloseNow()
		return
	}
	c.queue = append(c.queue, fn)
	if c.running {
		c.qmu.Unlock()
		return
	}
	c.running = true
	c.qmu.Unlock()
	workers.run(c)
}

// workerPool runs clients' queues on long-lived goroutines: handlers need
// deep stacks, and growing a fresh goroutine's stack for every burst of
// events cost more than the handlers themselves. A worker that stays idle
// for workerIdle exits, so an idle server keeps none.
type workerPool struct{ idle chan *client }

const workerIdle = 5 * time.Second

var workers = &workerPool{idle: make(chan *client)}

func (p *workerPool) run(c *client) {
	select {
	case p.idle <- c: // an idle worker takes it
	default:
		go p.work(c)
	}
}

func (p *workerPool) work(c *client) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		c.run()
		t.Reset(workerIdle)
		select {
		case c = <-p.idle:
		case <-t.C:
			return
		}
	}
}

// run processes the queue until it is empty. What the handlers send to this
// client meanwhile (acks, broadcasts it is in) is written once they are done,
// in one write.
func (c *client) run() {
	c.eng.Cork()
	defer c.eng.Uncork()
	for {
		c.qmu.Lock()
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
		fn := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.qmu.Unlock()
		fn()
	}
}

// send writes one packet to the session: data is its JSON, atts its binary
// attachments (making it a BINARY_EVENT/BINARY_ACK).
func (c *client) send(t sioparser.PacketType, nsp string, id uint64, hasID bool, data json.RawMessage, atts [][]byte) bool {
	return c.eng.Send(encodePacket(t, nsp, id, hasID, data, atts)...)
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
