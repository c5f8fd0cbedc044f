package loadclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// NewPollingHTTPClient is an HTTP client for n polling connections (each
// holds one long-poll GET and at most one POST at a time).
func NewPollingHTTPClient(n int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        2*n + 16,
		MaxIdleConnsPerHost: 2*n + 16,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 90 * time.Second}
}

// PollConn is a Socket.IO client over Engine.IO long-polling only.
type PollConn struct {
	hc  *http.Client
	url string // endpoint with EIO, transport and sid
	sid string

	pmu sync.Mutex // Engine.IO allows one POST at a time per session
	buf []byte

	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	closing   chan struct{}
	h         Handlers
}

// ConnectPolling opens a polling-only session at base (http://host:port)
// + path and connects to namespace "/" with auth {token}.
func ConnectPolling(ctx context.Context, hc *http.Client, base, path, token string) (*PollConn, error) {
	u := base + path + "?EIO=4&transport=polling"
	body, err := pollGET(ctx, hc, u)
	if err != nil {
		return nil, fmt.Errorf("polling handshake: %w", err)
	}
	if len(body) == 0 || body[0] != '0' {
		return nil, fmt.Errorf("polling handshake: unexpected %q", trunc(body))
	}
	var open struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal(body[1:], &open); err != nil || open.SID == "" {
		return nil, fmt.Errorf("polling handshake: %q", trunc(body))
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &PollConn{hc: hc, url: u + "&sid=" + open.SID, ctx: cctx, cancel: cancel, closing: make(chan struct{})}
	if err := c.post(AuthPacket(token)); err != nil {
		cancel()
		return nil, err
	}
	for {
		body, err := pollGET(ctx, hc, c.url)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("waiting for CONNECT: %w", err)
		}
		for _, p := range bytes.Split(body, []byte{0x1e}) {
			switch {
			case len(p) == 1 && p[0] == '2':
				_ = c.post([]byte{'3'})
			case len(p) >= 2 && p[0] == '4' && p[1] == '0':
				var v struct {
					SID string `json:"sid"`
				}
				_ = json.Unmarshal(p[2:], &v)
				c.sid = v.SID
				return c, nil
			case len(p) >= 2 && p[0] == '4' && p[1] == '4':
				cancel()
				ce := &ConnectError{}
				_ = json.Unmarshal(p[2:], ce)
				return nil, ce
			}
		}
	}
}

func pollGET(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET: %s: %q", resp.Status, trunc(b))
	}
	return b, nil
}

func (c *PollConn) post(p []byte) error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.url, bytes.NewReader(p))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST: %s", resp.Status)
	}
	return nil
}

func (c *PollConn) SID() string { return c.sid }

func (c *PollConn) Start(h Handlers) {
	c.h = h
	go c.readLoop()
}

func (c *PollConn) readLoop() {
	var err error
loop:
	for {
		var body []byte
		body, err = pollGET(c.ctx, c.hc, c.url)
		if err != nil {
			break
		}
		for len(body) > 0 {
			p := body
			if i := bytes.IndexByte(body, 0x1e); i >= 0 {
				p, body = body[:i], body[i+1:]
			} else {
				body = nil
			}
			if stop, e := dispatch(p, &c.h, c.pong, 0); stop {
				err = e
				break loop
			}
		}
	}
	select {
	case <-c.closing:
		err = nil
	default:
		if errors.Is(err, context.Canceled) {
			err = nil
		}
	}
	c.cancel()
	if c.h.Closed != nil {
		c.h.Closed(err)
	}
}

func (c *PollConn) pong() { go func() { _ = c.post([]byte{'3'}) }() }

func (c *PollConn) Emit(ackID uint64, event string, payload []byte) error {
	b := AppendEmit(nil, ackID, event, payload)
	return c.post(b)
}

// Close sends an Engine.IO close packet (unless abort) and stops polling.
func (c *PollConn) Close(abort bool) {
	c.closeOnce.Do(func() {
		close(c.closing)
		if !abort {
			_ = c.post([]byte{'1'})
		}
		c.cancel()
	})
}
