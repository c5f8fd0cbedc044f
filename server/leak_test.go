package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// 5,000 mixed connect/disconnect cycles (clean WebSocket connections,
// refused tokens, abandoned polling handshakes, polling sessions closed by
// the client): afterwards the goroutines and file descriptors are back where
// they started.
func TestNoLeakAfterManyConnectCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	cfg := hardenedConfig()
	cfg.MaxConnsPerIP = 0
	cfg.HandshakeRatePerIP = 0
	cfg.HandshakeTimeout = 300 * time.Millisecond
	cfg.MaxPendingSessions = 0
	cfg.RateLimit = 0
	n := startNode(t, cfg, nil)
	tok, _ := n.sb.MintToken("cycler", "", time.Hour)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

	// Warm up the pools (worker goroutines, HTTP keep-alive) before the baseline.
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	const cycles, workers = 5000, 8
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < cycles && ctx.Err() == nil; i += workers {
				var err error
				switch i % 4 {
				case 0: // connect, one event, disconnect
					var c *rawclient.Client
					if c, err = rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": tok}, nil); err == nil {
						_, err = c.Call(ctx, "join", map[string]any{"room": fmt.Sprint("r", i%7)})
						c.Close()
					}
				case 1: // refused token
					if _, e := rawclient.Dial(ctx, n.url, "/socket.io/", "/", map[string]any{"token": "bad"}, nil); e == nil {
						err = fmt.Errorf("bad token accepted")
					}
				case 2: // abandoned polling handshake: reaped by HANDSHAKE_TIMEOUT
					resp, e := hc.Get(n.url + "/socket.io/?EIO=4&transport=polling")
					if err = e; e == nil {
						resp.Body.Close()
					}
				case 3: // polling session closed by the client ("1")
					resp, e := hc.Get(n.url + "/socket.io/?EIO=4&transport=polling")
					if err = e; e == nil {
						var sid string
						sid, err = sidOf(resp)
						if err == nil {
							r2, e := hc.Post(n.url+"/socket.io/?EIO=4&transport=polling&sid="+sid, "text/plain", strings.NewReader("1"))
							if err = e; e == nil {
								r2.Body.Close()
							}
						}
					}
				}
				if err != nil {
					errs <- fmt.Errorf("cycle %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	hc.CloseIdleConnections()

	// Workers idle out after 5 s; abandoned sessions after HANDSHAKE_TIMEOUT.
	deadline := time.Now().Add(20 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), openFDs(t)
		if g <= baseG+5 && fd <= baseFD+2 && metric(t, n.url, "switchboard_pending_sessions 0") {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after %d cycles: %d goroutines (baseline %d), %d fds (baseline %d)\n%s",
				cycles, g, baseG, fd, baseFD, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sidOf(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	i := strings.Index(body, `"sid":"`)
	if i < 0 {
		return "", fmt.Errorf("no sid in %q", body)
	}
	rest := body[i+7:]
	return rest[:strings.IndexByte(rest, '"')], nil
}
