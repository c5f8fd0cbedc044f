package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/server"
)

// Another program embeds Switchboard: it builds the server from a Config,
// adds its own namespace with typed events and mounts it on its own mux.
func Example() {
	cfg := server.Defaults()
	cfg.JWTSecret = "example-secret"
	sb, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		panic(err)
	}

	type Sum struct {
		A, B int
	}
	calc := sb.Of("/calc")
	server.Handle(calc, "add", func(_ context.Context, c *server.Conn, in Sum) (map[string]any, error) {
		if in.A < 0 || in.B < 0 {
			return nil, server.Errorf("bad_request", "only natural numbers")
		}
		return map[string]any{"sum": in.A + in.B, "user": c.User().ID}, nil
	})

	mux := http.NewServeMux()
	sb.Mount(mux)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer hs.Close()

	// A client (here the raw test client; in real life socket.io-client).
	token, _ := sb.MintToken("alice", "Alice", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, "http://"+ln.Addr().String(), "/socket.io/", "/calc", map[string]any{"token": token}, nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ok, _ := c.Call(ctx, "add", Sum{A: 2, B: 3})
	refused, _ := c.Call(ctx, "add", Sum{A: -1})
	fmt.Println(string(ok))
	fmt.Println(string(refused))
	// Output:
	// {"ok":true,"sum":5,"user":"alice"}
	// {"ok":false,"error":{"code":"bad_request","message":"only natural numbers"}}
}

// A handler ported from Node: socket.on("sum", (a, b, cb) => cb(null, a + b)),
// on "/" with the program's own authentication instead of JWT.
func ExampleNamespace_On() {
	cfg := server.Defaults()
	cfg.NoContract = true
	cfg.Authenticate = func(_ context.Context, h *server.Handshake) error {
		h.User = &server.User{ID: "guest"}
		return nil
	}
	sb, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		panic(err)
	}
	sb.Of("/").On("sum", func(_ context.Context, _ *server.Conn, args server.Args, ack server.Ack) {
		a, _ := args[0].(float64)
		b, _ := args[1].(float64)
		if ack != nil {
			_ = ack(nil, a+b)
		}
	})

	mux := http.NewServeMux()
	sb.Mount(mux)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer hs.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawclient.Dial(ctx, "http://"+ln.Addr().String(), "/socket.io/", "/", nil, nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	res, _ := c.CallArgs(ctx, "sum", 2, 3)
	fmt.Println(len(res), string(res[0]), string(res[1]))
	// Output:
	// 2 null 5
}
