package emitter_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// nodeAndModules returns the node binary and the repository's node_modules.
// The tests that need them are skipped only when node is not on PATH; with
// node but without the packages they fail, saying how to install them.
func nodeAndModules(t *testing.T, packages ...string) (node, modules string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH (make test has it)")
	}
	modules, err = filepath.Abs("../../node_modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range packages {
		if _, err := os.Stat(filepath.Join(modules, p, "package.json")); err != nil {
			t.Fatalf("node package %s missing from %s: run `make deps-node` (npm ci) at the repository's root", p, modules)
		}
	}
	return node, modules
}

// capture subscribes to every channel of prefix (broadcasts and requests)
// and returns what arrives, in Redis's order.
func capture(t *testing.T, c *redis.Client, prefix string) <-chan *redis.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps := c.PSubscribe(ctx, prefix+"*")
	if _, err := ps.Receive(ctx); err != nil { // the subscription is active
		t.Fatalf("psubscribe: %v", err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	return ps.Channel(redis.WithChannelSize(1000))
}

func nextMessage(t *testing.T, ch <-chan *redis.Message, what string) *redis.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing published within 5 s", what)
		return nil
	}
}

func noMessage(t *testing.T, ch <-chan *redis.Message, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected publish on %s: %q", m.Channel, m.Payload)
	case <-time.After(d):
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
