package server_test

import (
	"strings"
	"testing"

	"github.com/switchboard/switchboard/server"
)

// SERVE_CLIENT (default on) serves the client bundle under SOCKETIO_PATH, as
// Node's serveClient; off, the path is the engine's alone.
func TestServeClient(t *testing.T) {
	cfg := server.Defaults()
	cfg.DrainTimeout = 0
	cfg.Path = "/rt/"
	n := startNode(t, cfg, nil)
	code, body := get(t, n.url+"/rt/socket.io.min.js")
	if code != 200 || !strings.Contains(body, "io") || len(body) < 10000 {
		t.Fatalf("bundle: %d, %d bytes", code, len(body))
	}
	if code, _ := get(t, n.url+"/rt/?EIO=4&transport=polling"); code != 200 {
		t.Fatalf("the engine behind it: handshake %d", code)
	}
	cfg.ServeClient = false
	off := startNode(t, cfg, nil)
	if code, _ := get(t, off.url+"/rt/socket.io.min.js"); code == 200 {
		t.Fatal("SERVE_CLIENT=0 still serves the bundle")
	}
}
