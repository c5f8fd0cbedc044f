package eio

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeHandler echoes messages; "bye" is echoed and then the session is closed gracefully.
type nodeHandler struct {
	s      *Socket
	closed chan string
}

func (h *nodeHandler) OnMessage(data []byte, binary bool) {
	if binary {
		h.s.Send(BinaryMessage(data))
		return
	}
	h.s.Send(TextMessage(data))
	if string(data) == "bye" {
		h.s.Close()
	}
}

func (h *nodeHandler) OnClose(reason string) { h.closed <- reason }

// TestNodeEngineIOClient runs the official engine.io-client (from the repository's node_modules,
// installed by `make deps-node`) against the server: polling, the upgrade, WebSocket only,
// heartbeats, binary data and closes from both sides.
func TestNodeEngineIOClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	modules, _ := filepath.Abs("../../../node_modules")
	if _, err := os.Stat(filepath.Join(modules, "engine.io-client")); err != nil {
		t.Skip("engine.io-client not installed (make deps-node)")
	}
	closed := make(chan string, 16)
	e := newEnv(t, func(o *Options) {
		o.PingInterval = 200 * time.Millisecond
		o.PingTimeout = time.Second
		o.OnConnection = func(s *Socket) { s.SetHandler(&nodeHandler{s, closed}) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/node_client.cjs", e.ts.URL)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	t.Logf("node:\n%s", out)
	if err != nil {
		t.Fatalf("engine.io-client scenarios failed: %v", err)
	}
	var reasons []string
	for range 4 {
		select {
		case r := <-closed:
			reasons = append(reasons, r)
		case <-time.After(wait):
			t.Fatalf("sessions not all closed; reasons so far %v", reasons)
		}
	}
	got := strings.Join(reasons, ",")
	for _, want := range []string{"forced close", "transport close"} {
		if !strings.Contains(got, want) {
			t.Errorf("close reasons %v, want %q among them", reasons, want)
		}
	}
}
