// Command example-chat is socket.io's own chat example (examples/chat/index.js
// in the socketio/socket.io repository) ported to Switchboard handler for
// handler, so that its unchanged frontend (or any socket.io-client) talks to
// Go. Each Node line is quoted above its Go equivalent.
//
// It runs on namespace "/" (Config.NoContract leaves it free of Switchboard's
// own chat contract). The Node example has no authentication;
// Config.Authenticate stands in for Switchboard's JWT check and gives every
// connection a user of its own, as Node's io.use(fn) would.
//
//	go run ./cmd/example-chat            # ADDR, ADAPTER, REDIS_URL... as for switchboard
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/switchboard/switchboard/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "example-chat:", err)
		os.Exit(1)
	}
}

// usernameKey is where "add user" stores the name: socket.username in Node.
type usernameKey struct{}

func username(c *server.Conn) string {
	s, _ := c.Value(usernameKey{}).(string)
	return s
}

// register is the body of Node's io.on('connection', ...).
func register(io *server.Namespace) {
	// let numUsers = 0;
	var numUsers atomic.Int64

	// socket.on('new message', (data) => { socket.broadcast.emit('new message', {username, message: data}) })
	io.On("new message", func(_ context.Context, c *server.Conn, args server.Args, _ server.Ack) {
		var data any
		if len(args) > 0 {
			data = args[0]
		}
		_ = c.Broadcast().Emit("new message", map[string]any{"username": username(c), "message": data})
	})

	// socket.on('add user', (username) => { if (addedUser) return; ... })
	io.On("add user", func(_ context.Context, c *server.Conn, args server.Args, _ server.Ack) {
		if username(c) != "" { // addedUser
			return
		}
		if len(args) == 0 {
			return
		}
		name, _ := args[0].(string)
		if name == "" {
			return
		}
		c.SetValue(usernameKey{}, name) // socket.username = username
		n := numUsers.Add(1)            // ++numUsers
		// socket.emit('login', { numUsers })
		_ = c.Emit("login", map[string]any{"numUsers": n})
		// socket.broadcast.emit('user joined', { username, numUsers })
		_ = c.Broadcast().Emit("user joined", map[string]any{"username": name, "numUsers": n})
	})

	// socket.on('typing', () => { socket.broadcast.emit('typing', { username }) })
	io.On("typing", func(_ context.Context, c *server.Conn, _ server.Args, _ server.Ack) {
		_ = c.Broadcast().Emit("typing", map[string]any{"username": username(c)})
	})

	// socket.on('stop typing', () => { socket.broadcast.emit('stop typing', { username }) })
	io.On("stop typing", func(_ context.Context, c *server.Conn, _ server.Args, _ server.Ack) {
		_ = c.Broadcast().Emit("stop typing", map[string]any{"username": username(c)})
	})

	// socket.on('disconnect', () => { if (addedUser) { --numUsers; socket.broadcast.emit('user left', ...) } })
	io.OnDisconnect(func(_ context.Context, c *server.Conn, _ string) {
		if name := username(c); name != "" {
			n := numUsers.Add(-1)
			_ = c.Broadcast().Emit("user left", map[string]any{"username": name, "numUsers": n})
		}
	})
}

func run() error {
	cfg, err := server.LoadFromOS(os.Args[1:])
	if err != nil {
		return err
	}
	cfg.NoContract = true // "/" is this program's, not the contract's
	cfg.Authenticate = func(_ context.Context, h *server.Handshake) error {
		if h.Recovered && h.Previous != nil {
			h.User = h.Previous // a recovered session keeps its user
			return nil
		}
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		h.User = &server.User{ID: "anon-" + hex.EncodeToString(b)}
		return nil
	}
	log := server.NewLogger(cfg, os.Stderr)
	sb, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	register(sb.Of("/"))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return sb.Run(ctx) // /socket.io/, /healthz, /readyz, /metrics; drains on SIGTERM
}
