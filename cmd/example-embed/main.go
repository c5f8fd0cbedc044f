// Command example-embed shows Switchboard used as a Go library: another
// program builds the server from a Config, adds its own namespace with typed
// events, and mounts everything on its own http.ServeMux next to its own
// routes. The compatibility suite uses it for binary payloads.
//
//	go run ./cmd/example-embed --addr :3001
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/server"
)

// BlobRequest asks the server to send n bytes back as a binary event.
type BlobRequest struct {
	Size int `json:"size"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "example-embed:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := server.LoadFromOS(os.Args[1:]) // same env vars and flags as switchboard
	if err != nil {
		return err
	}
	log := server.NewLogger(cfg, os.Stderr)
	sb, err := server.New(cfg, log)
	if err != nil {
		return err
	}

	// Our own namespace: JWT auth, limits and rate limits apply to it too.
	tools := sb.Of("/tools")
	// echo acknowledges whatever it receives; binary (Buffer/ArrayBuffer) comes back as binary.
	server.Handle(tools, "echo", func(_ context.Context, _ *server.Conn, v any) (map[string]any, error) {
		return map[string]any{"data": v}, nil
	})
	// blob emits a binary event to the caller.
	server.Handle(tools, "blob", func(_ context.Context, c *server.Conn, req BlobRequest) (map[string]any, error) {
		if req.Size < 0 || req.Size > 64<<10 {
			return nil, server.Errorf("bad_request", "size must be 0-65536")
		}
		b := make([]byte, req.Size)
		for i := range b {
			b[i] = byte(i % 256)
		}
		return nil, c.Emit("blob", map[string]any{"bytes": b})
	})

	mux := http.NewServeMux()
	sb.Mount(mux) // /socket.io/, /healthz, /readyz, /metrics, the demo page
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello from the embedding program")
	})

	hs := &http.Server{Addr: cfg.Addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+5*time.Second)
		defer cancel()
		sb.Shutdown(sctx) // drain Socket.IO clients first
		_ = hs.Shutdown(sctx)
	}()
	log.Info().Str("addr", cfg.Addr).Msg("example-embed listening")
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
