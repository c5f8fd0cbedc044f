// Command protocol-server is the server the official Socket.IO protocol test
// suite (socketio/socket.io-protocol, test-suite/) expects, set up as its
// README says for Node:
//
//	const io = new Server(3000, { pingInterval: 300, pingTimeout: 200, maxPayload: 1000000,
//	  connectTimeout: 1000, cors: { origin: "*" } });
//	io.on("connection", (socket) => {
//	  socket.emit("auth", socket.handshake.auth);
//	  socket.on("message", (...args) => socket.emit.apply(socket, ["message-back", ...args]));
//	  socket.on("message-with-ack", (...args) => { const ack = args.pop(); ack(...args); });
//	});
//	io.of("/custom").on("connection", (socket) => socket.emit("auth", socket.handshake.auth));
//
// The timings come from the environment (compat-tests/protocol-suite.test.js
// sets PING_INTERVAL=300ms, PING_TIMEOUT=200ms, HANDSHAKE_TIMEOUT=1s,
// CORS_ORIGINS=*). Nothing here is for production: every client is admitted.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard/switchboard/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "protocol-server:", err)
		os.Exit(1)
	}
}

// emitAuth is socket.emit("auth", socket.handshake.auth) (Node's auth defaults to {}).
func emitAuth(_ context.Context, c *server.Conn) {
	auth := c.Auth()
	if auth == nil {
		auth = map[string]any{}
	}
	_ = c.Emit("auth", auth)
}

func run() error {
	cfg, err := server.LoadFromOS(os.Args[1:])
	if err != nil {
		return err
	}
	cfg.NoContract = true
	cfg.RecoveryWindow = 0 // the suite's Node server has no connection state recovery: no offsets in events
	cfg.Authenticate = func(_ context.Context, h *server.Handshake) error {
		h.User = &server.User{ID: "suite"}
		return nil
	}
	cfg.MaxConnsPerUser = 0
	log := server.NewLogger(cfg, os.Stderr)
	sb, err := server.New(cfg, log)
	if err != nil {
		return err
	}

	main := sb.Of("/")
	main.OnConnect(emitAuth)
	main.On("message", func(_ context.Context, c *server.Conn, args server.Args, _ server.Ack) {
		_ = c.Emit("message-back", args...)
	})
	main.On("message-with-ack", func(_ context.Context, _ *server.Conn, args server.Args, ack server.Ack) {
		if ack != nil {
			_ = ack(args...)
		}
	})
	sb.Of("/custom").OnConnect(emitAuth)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return sb.Run(ctx) // /socket.io/, /healthz, /readyz, /metrics; drains on SIGTERM
}
