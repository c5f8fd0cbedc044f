package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/middleware"
	"github.com/switchboard/switchboard/server"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/switchboard once per test run: some tests need a node
// they can SIGKILL.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "switchboard")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/switchboard").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// processNode runs the real binary; kill it with cmd.Process.Kill (SIGKILL).
func processNode(t *testing.T, env ...string) (string, *exec.Cmd) {
	t.Helper()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(binary(t))
	cmd.Env = append(os.Environ(), append(env, "ADDR="+addr, "LOG_LEVEL=warn")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url, cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("node did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRecoveryOnAnotherNodeAfterSIGKILL(t *testing.T) {
	const secret = "recovery-secret"
	r := redistest.Start(t)
	urlA, procA := processNode(t, "ADAPTER=redis-streams", "REDIS_URL="+r.URL, "JWT_SECRET="+secret, "NODE_ID=a")
	cfg := server.Defaults()
	cfg.JWTSecret, cfg.Adapter, cfg.RedisURL, cfg.NodeID, cfg.DrainTimeout = secret, "redis-streams", r.URL, "b", 0
	b := startNode(t, cfg, nil)

	tok := func(sub string) string {
		s, _ := middleware.MintHS256([]byte(secret), sub, sub, time.Hour, nil)
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	x, err := rawclient.Dial(ctx, urlA, "/socket.io/", "/", map[string]any{"token": tok("xavier")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if x.PID == "" {
		t.Fatal("no pid: connection state recovery is off")
	}
	if _, err := x.Call(ctx, "join-room", "r"); err != nil {
		t.Fatal(err)
	}
	y := join(t, b, "yolanda", "r")
	send := func(text string) {
		raw, err := y.Call(ctx, "message", map[string]any{"roomId": "r", "text": text})
		if err != nil || !json.Valid(raw) {
			t.Fatalf("send %s: %s %v", text, raw, err)
		}
	}
	send("m1")
	if got := nextNamed(t, x, "message", 5*time.Second); !json.Valid(got) || x.Offset() == "" {
		t.Fatalf("x got %s with offset %q", got, x.Offset())
	}
	oldSID, pid, offset := x.SID, x.PID, x.Offset()

	if err := procA.Process.Kill(); err != nil { // SIGKILL: no drain, no session persisted at disconnect
		t.Fatal(err)
	}
	_, _ = procA.Process.Wait()
	x.Close()
	send("m2")
	send("m3")

	x2, err := rawclient.Dial(ctx, b.url, "/socket.io/", "/", map[string]any{"token": tok("xavier"), "pid": pid, "offset": offset}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer x2.Close()
	if !x2.Recovered(oldSID) {
		t.Fatalf("not recovered: sid %s, was %s", x2.SID, oldSID)
	}
	for _, want := range []string{"m2", "m3"} {
		var m struct{ Text string }
		_ = json.Unmarshal(nextNamed(t, x2, "message", 5*time.Second), &m)
		if m.Text != want {
			t.Fatalf("missed message: got %q, want %q", m.Text, want)
		}
	}
	send("m4") // the room was restored without a new join-room
	var m struct{ Text string }
	_ = json.Unmarshal(nextNamed(t, x2, "message", 5*time.Second), &m)
	if m.Text != "m4" {
		t.Fatalf("after recovery got %q, want m4", m.Text)
	}
}
