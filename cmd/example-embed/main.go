// Command example-embed shows Switchboard used as a Go library: another
// program builds the server from a Config, adds its own namespace with typed
// events, and mounts everything on its own http.ServeMux next to its own
// routes. The compatibility suite uses it for binary payloads.
//
// With EXAMPLE_ADMIN=1 it also serves namespace /admin, a test hook that
// runs the cluster-wide operations of namespace "/" (fetchSockets,
// socketsJoin/Leave, disconnectSockets, serverSideEmit with and without
// acks) for whoever connects: the cluster tests use it to check that Node
// servers answer Switchboard's requests. Never enable it in production.
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

	registerNodeStyle(tools)

	if os.Getenv("EXAMPLE_ADMIN") == "1" {
		registerAdmin(sb, cfg.NodeID)
	}

	mux := http.NewServeMux()
	sb.Mount(mux) // /socket.io/, /healthz, /readyz, /metrics, the demo page
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello from the embedding program")
	})

	hs := &http.Server{Addr: sb.Config().Addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+5*time.Second)
		defer cancel()
		sb.Shutdown(sctx) // drain Socket.IO clients first
		_ = hs.Shutdown(sctx)
	}()
	log.Info().Str("addr", sb.Config().Addr).Msg("example-embed listening")
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// registerNodeStyle adds handlers in Node's shape to /tools: every argument
// in, any acknowledgement arguments out (binary included), as
// socket.on("x", (...args, cb) => cb(...args)) does.
func registerNodeStyle(tools *server.Namespace) {
	// cb(...args): the arguments come back as they were sent.
	tools.On("echo-args", func(_ context.Context, _ *server.Conn, args server.Args, ack server.Ack) {
		if ack != nil {
			_ = ack(args...)
		}
	})
	// cb(null, ...args): the error-first answer socket.io-client's retries and
	// timeout() expect.
	tools.On("echo-error-first", func(_ context.Context, c *server.Conn, args server.Args, ack server.Ack) {
		n, _ := c.Value(callsKey{}).(int)
		c.SetValue(callsKey{}, n+1)
		if ack != nil {
			_ = ack(append(server.Args{nil}, args...)...)
		}
	})
	// How many echo-error-first calls this connection made.
	tools.On("calls", func(_ context.Context, c *server.Conn, _ server.Args, ack server.Ack) {
		n, _ := c.Value(callsKey{}).(int)
		if ack != nil {
			_ = ack(n)
		}
	})
	// socket.emit("echoed", ...args) back to the sender.
	tools.On("emit-back", func(_ context.Context, c *server.Conn, args server.Args, _ server.Ack) {
		_ = c.Emit("echoed", args...)
	})
	// The server asks the client: socket.timeout(ms).emitWithAck("question", ...args),
	// then acknowledges the caller with the client's answer.
	tools.On("ask-me", func(_ context.Context, c *server.Conn, args server.Args, ack server.Ack) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			answer, err := c.EmitWithAck(ctx, "question", args...)
			if ack == nil {
				return
			}
			if err != nil {
				_ = ack(err.Error())
				return
			}
			_ = ack(append(server.Args{nil}, answer...)...)
		}()
	})
}

type callsKey struct{}

// Selector picks sockets of namespace "/" as Node's io.in(rooms).except(except).
type Selector struct {
	Rooms  []string `json:"rooms"`
	Except []string `json:"except"`
	Local  bool     `json:"local"`
}

func (s Selector) opts() server.BroadcastOpts {
	return server.BroadcastOpts{Rooms: s.Rooms, Except: s.Except, Local: s.Local}
}

// AdminRequest is the payload of the /admin events.
type AdminRequest struct {
	Selector
	Join  []string `json:"join"`  // sockets-join
	Leave []string `json:"leave"` // sockets-leave
	Close bool     `json:"close"` // disconnect-sockets
	Event string   `json:"event"` // server-side-emit*
	Args  []any    `json:"args"`
}

// registerAdmin adds the /admin test hook (see the package comment). Every
// event acknowledges {ok:true, ...result}; a cluster error is reported in
// the result's "error" (with what arrived), not as a failed event.
func registerAdmin(sb *server.Server, nodeID string) {
	admin := sb.Of("/admin")
	main := sb.Of("/")
	errText := func(err error) any {
		if err == nil {
			return nil
		}
		return err.Error()
	}
	server.Handle(admin, "fetch-sockets", func(ctx context.Context, _ *server.Conn, req AdminRequest) (map[string]any, error) {
		socks, err := main.FetchSockets(ctx, req.opts())
		out := make([]map[string]any, 0, len(socks))
		for _, s := range socks {
			out = append(out, map[string]any{"id": s.ID, "rooms": s.Rooms, "data": s.Data})
		}
		return map[string]any{"sockets": out, "error": errText(err)}, nil
	})
	server.Handle(admin, "sockets-join", func(ctx context.Context, _ *server.Conn, req AdminRequest) (map[string]any, error) {
		return map[string]any{"error": errText(main.SocketsJoin(ctx, req.opts(), req.Join...))}, nil
	})
	server.Handle(admin, "sockets-leave", func(ctx context.Context, _ *server.Conn, req AdminRequest) (map[string]any, error) {
		return map[string]any{"error": errText(main.SocketsLeave(ctx, req.opts(), req.Leave...))}, nil
	})
	server.Handle(admin, "disconnect-sockets", func(ctx context.Context, _ *server.Conn, req AdminRequest) (map[string]any, error) {
		return map[string]any{"error": errText(main.DisconnectSockets(ctx, req.opts(), req.Close))}, nil
	})
	server.Handle(admin, "server-side-emit", func(ctx context.Context, _ *server.Conn, req AdminRequest) (map[string]any, error) {
		return map[string]any{"error": errText(main.ServerSideEmit(ctx, req.Event, req.Args...))}, nil
	})
	server.Handle(admin, "server-side-emit-with-ack", func(ctx context.Context, _ *server.Conn, req AdminRequest) (map[string]any, error) {
		acks, err := main.ServerSideEmitWithAck(ctx, req.Event, req.Args...)
		return map[string]any{"responses": acks, "error": errText(err)}, nil
	})
	server.Handle(admin, "server-count", func(ctx context.Context, _ *server.Conn, _ any) (map[string]any, error) {
		n, err := main.ServerCount(ctx)
		return map[string]any{"count": n, "error": errText(err)}, nil
	})
	// What other servers send to "/" with serverSideEmit: shown to the /admin
	// clients, and answered with this node's id.
	main.OnServerSideEmit(func(_ context.Context, event string, args []any) any {
		_ = admin.To().Emit("server-side", map[string]any{"event": event, "args": args})
		return map[string]any{"node": nodeID, "event": event, "args": args}
	})
}
