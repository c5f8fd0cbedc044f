package eio

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

const wait = 5 * time.Second // upper bound of anything a test waits for

// msg is one message a rec received.
type msg struct {
	data   string
	binary bool
}

// rec is a Handler that records what a session gets and checks the Handler contract: OnMessage
// never concurrent, never after OnClose, OnClose exactly once.
type rec struct {
	t      testing.TB
	s      *Socket
	msgs   chan msg
	closed chan string

	busy     atomic.Int32
	nClose   atomic.Int32
	onMsg    func(r *rec, m msg) // optional hook, run inside OnMessage
	isClosed atomic.Bool
}

func (r *rec) OnMessage(data []byte, binary bool) {
	if r.busy.Add(1) != 1 {
		r.t.Errorf("OnMessage called concurrently")
	}
	if r.isClosed.Load() {
		r.t.Errorf("OnMessage after OnClose")
	}
	m := msg{string(data), binary}
	if r.onMsg != nil {
		r.onMsg(r, m)
	}
	select {
	case r.msgs <- m:
	default:
		r.t.Errorf("rec: too many messages")
	}
	r.busy.Add(-1)
}

func (r *rec) OnClose(reason string) {
	if r.nClose.Add(1) != 1 {
		r.t.Errorf("OnClose called twice (%s)", reason)
	}
	if r.busy.Load() != 0 {
		r.t.Errorf("OnClose during OnMessage")
	}
	r.isClosed.Store(true)
	r.closed <- reason
}

// next returns the next message the session received.
func (r *rec) next() msg {
	r.t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(wait):
		r.t.Fatalf("no message received")
		return msg{}
	}
}

// noMessage checks that nothing is delivered for d.
func (r *rec) noMessage(d time.Duration) {
	r.t.Helper()
	select {
	case m := <-r.msgs:
		r.t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

// reason waits for OnClose and returns its reason.
func (r *rec) reason() string {
	r.t.Helper()
	select {
	case why := <-r.closed:
		r.closed <- why // keep it for later calls
		return why
	case <-time.After(wait):
		r.t.Fatalf("session not closed")
		return ""
	}
}

func (r *rec) wantClosed(want string) {
	r.t.Helper()
	if got := r.reason(); got != want {
		r.t.Fatalf("close reason %q, want %q", got, want)
	}
}

func (r *rec) stillOpen(d time.Duration) {
	r.t.Helper()
	select {
	case why := <-r.closed:
		r.t.Fatalf("session closed (%s), want it open", why)
	case <-time.After(d):
	}
}

// env is a live server on a loopback httptest server, mounted at /engine.io/.
type env struct {
	t      testing.TB
	srv    *Server
	ts     *httptest.Server
	client *http.Client
	conns  chan *rec
	onMsg  func(r *rec, m msg)
}

// newEnv starts a server; opts may adjust the options (OnConnection is set here).
func newEnv(t testing.TB, opts ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, conns: make(chan *rec, 4096)}
	o := Options{PingInterval: 10 * time.Second, PingTimeout: 10 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.OnConnection == nil {
		o.OnConnection = e.record
	}
	e.srv = NewServer(o)
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", e.srv)
	e.ts = httptest.NewServer(mux)
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: wait}
	liveEnvs.Add(1)
	t.Cleanup(e.close)
	return e
}

// record is the default OnConnection: it gives each session a rec.
func (e *env) record(s *Socket) {
	r := &rec{t: e.t, s: s, msgs: make(chan msg, 4096), closed: make(chan string, 1), onMsg: e.onMsg}
	s.SetHandler(r)
	e.conns <- r
}

// liveEnvs counts the servers of the running test: goroutines are checked when the last one closes.
var liveEnvs atomic.Int32

func (e *env) close() {
	e.srv.Close()
	e.srv.Range(func(s *Socket) bool { s.CloseNow(); return true })
	e.client.CloseIdleConnections()
	e.ts.Close()
	if liveEnvs.Add(-1) == 0 {
		checkNoLeaks(e.t)
	}
}

// checkNoLeaks waits for every goroutine of the package (readers, writers, polls) to end.
func checkNoLeaks(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "eio.(*wsConn)") || strings.Contains(g, "eio.(*Socket)") ||
				strings.Contains(g, "eio.(*Server)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines left:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// session returns the recorder of the next session opened.
func (e *env) session() *rec {
	e.t.Helper()
	select {
	case r := <-e.conns:
		return r
	case <-time.After(wait):
		e.t.Fatalf("no session opened")
		return nil
	}
}

func (e *env) url(query string) string { return e.ts.URL + "/engine.io/?" + query }

// do sends a request and returns the response with its body read.
func (e *env) do(method, query string, body io.Reader, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url(query), body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, query, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, query, err)
	}
	return res, string(b)
}

type openPacket struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int      `json:"pingInterval"`
	PingTimeout  int      `json:"pingTimeout"`
	MaxPayload   int      `json:"maxPayload"`
}

func parseOpen(t testing.TB, p string) openPacket {
	t.Helper()
	if !strings.HasPrefix(p, "0{") {
		t.Fatalf("not an open packet: %q", p)
	}
	var o openPacket
	if err := json.Unmarshal([]byte(p[1:]), &o); err != nil {
		t.Fatalf("open packet %q: %v", p, err)
	}
	return o
}

// handshake opens a polling session and returns its id and recorder.
func (e *env) handshake() (string, *rec) {
	e.t.Helper()
	res, body := e.do("GET", "EIO=4&transport=polling", nil)
	if res.StatusCode != 200 {
		e.t.Fatalf("handshake: %d %s", res.StatusCode, body)
	}
	o := parseOpen(e.t, body)
	return o.SID, e.session()
}

// poll sends a GET and returns its payload.
func (e *env) poll(sid string) string {
	e.t.Helper()
	res, body := e.do("GET", "EIO=4&transport=polling&sid="+sid, nil)
	if res.StatusCode != 200 {
		e.t.Fatalf("poll: %d %s", res.StatusCode, body)
	}
	return body
}

// pollAsync starts a GET and returns a channel with its payload.
func (e *env) pollAsync(sid string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		res, err := e.client.Get(e.url("EIO=4&transport=polling&sid=" + sid))
		if err != nil {
			ch <- "error: " + err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			ch <- "status: " + res.Status
			return
		}
		ch <- string(b)
	}()
	return ch
}

func recv(t testing.TB, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(wait):
		t.Fatalf("poll did not return")
		return ""
	}
}

// post sends a payload and checks the "ok" answer.
func (e *env) post(sid, payload string) {
	e.t.Helper()
	res, body := e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader(payload),
		"Content-Type", "text/plain;charset=UTF-8")
	if res.StatusCode != 200 || body != "ok" {
		e.t.Fatalf("post: %d %q", res.StatusCode, body)
	}
}

// wsClient is a raw WebSocket client (gobwas/ws frames) for wire-level checks.
type wsClient struct {
	t    testing.TB
	conn net.Conn
	r    io.Reader
	hs   ws.Handshake
	hdr  http.Header // response headers of the upgrade
}

func (e *env) dialWS(query string) *wsClient {
	e.t.Helper()
	c, err := e.tryDialWS(query)
	if err != nil {
		e.t.Fatalf("dial websocket %s: %v", query, err)
	}
	return c
}

func (e *env) tryDialWS(query string) (*wsClient, error) { return e.dialWSOffering(query, nil) }

// dialWSOffering dials with the extensions exts offered (permessage-deflate).
func (e *env) dialWSOffering(query string, exts []httphead.Option) (*wsClient, error) {
	hdr := http.Header{}
	d := ws.Dialer{
		Extensions: exts,
		Timeout:    wait,
		OnHeader: func(key, value []byte) error {
			hdr.Add(string(key), string(value))
			return nil
		},
	}
	u := "ws" + strings.TrimPrefix(e.url(query), "http")
	conn, br, hs, err := d.Dial(context.Background(), u)
	if err != nil {
		return nil, err
	}
	c := &wsClient{t: e.t, conn: conn, r: conn, hs: hs, hdr: hdr}
	if br != nil {
		c.r = br
	}
	e.t.Cleanup(func() { conn.Close() })
	return c, nil
}

// dialRaw opens a TCP connection to the server, for requests written by hand.
func (e *env) dialRaw() *wsClient {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return &wsClient{t: e.t, conn: conn, r: bufio.NewReader(conn)}
}

// read returns the next frame from the server.
func (c *wsClient) read() (ws.OpCode, []byte) {
	c.t.Helper()
	op, p, err := c.tryRead(wait)
	if err != nil {
		c.t.Fatalf("websocket read: %v", err)
	}
	return op, p
}

func (c *wsClient) tryRead(d time.Duration) (ws.OpCode, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return 0, nil, err
	}
	if h.Masked || !h.Fin || h.Rsv != 0 {
		c.t.Errorf("bad server frame header %+v", h)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return 0, nil, err
	}
	return h.OpCode, p, nil
}

// text reads a text frame and returns it.
func (c *wsClient) text() string {
	c.t.Helper()
	op, p := c.read()
	if op != ws.OpText {
		c.t.Fatalf("got opcode %v %q, want text", op, p)
	}
	return string(p)
}

// expectClose reads until a close frame, answers it as a browser does and returns its status code
// (0 for none in the frame).
func (c *wsClient) expectClose() ws.StatusCode {
	c.t.Helper()
	for {
		op, p := c.read()
		if op == ws.OpClose {
			_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(p)))
			if len(p) < 2 {
				return 0
			}
			code, _ := ws.ParseCloseFrameData(p)
			return code
		}
	}
}

// expectEOF checks that the server closes the TCP connection.
func (c *wsClient) expectEOF() {
	c.t.Helper()
	for {
		_, _, err := c.tryRead(wait)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.t.Fatalf("connection not closed by the server")
		}
		return
	}
}

func (c *wsClient) write(f ws.Frame) {
	c.t.Helper()
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
		c.t.Fatalf("websocket write: %v", err)
	}
}

func (c *wsClient) send(text string)    { c.t.Helper(); c.write(ws.NewTextFrame([]byte(text))) }
func (c *wsClient) sendBinary(b []byte) { c.t.Helper(); c.write(ws.NewBinaryFrame(b)) }
func (c *wsClient) writeRaw(b []byte)   { c.t.Helper(); _, _ = c.conn.Write(b) }
func (c *wsClient) closeWith(code uint16) {
	c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), "")))
}

// openWS opens a WebSocket-only session and returns the client, the open packet and the recorder.
func (e *env) openWS(extra string) (*wsClient, openPacket, *rec) {
	e.t.Helper()
	c := e.dialWS("EIO=4&transport=websocket" + extra)
	o := parseOpen(e.t, c.text())
	return c, o, e.session()
}

// upgradeWS upgrades the polling session sid to WebSocket (probe, then "5").
func (e *env) upgradeWS(sid string) *wsClient {
	e.t.Helper()
	c := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	c.send("2probe")
	if got := c.text(); got != "3probe" {
		e.t.Fatalf("probe answer %q", got)
	}
	c.send("5")
	return c
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawRequest sends raw bytes on a new TCP connection and returns everything read until EOF.
func (e *env) rawRequest(req string) string {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(conn, req); err != nil {
		e.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("raw request: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.Status + "\n" + string(b)
}
