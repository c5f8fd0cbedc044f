// Command switchboard runs a Switchboard node: a Socket.IO (Engine.IO v4 /
// Socket.IO v5) server with rooms, presence, JWT auth and a demo page.
//
//	switchboard [flags]                          serve (flags override env vars)
//	switchboard token --sub alice --name Alice --ttl 1h   mint a token with JWT_SECRET
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/middleware"
	"github.com/switchboard/switchboard/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "token" {
		return mintToken(args[1:])
	}
	cfg, err := server.LoadFromOS(args)
	if err != nil {
		return err
	}
	log := server.NewLogger(cfg, os.Stderr)
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if srv.DevMode() {
		log.Info().Msgf("get a token: curl 'http://localhost%s/auth/dev-token?sub=alice&name=Alice'", portOf(srv.Config().Addr))
	}
	return srv.Run(ctx)
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i:]
		}
	}
	return addr
}

// mintToken prints an HS256 token signed with JWT_SECRET (or --secret).
func mintToken(args []string) error {
	fs := flag.NewFlagSet("switchboard token", flag.ContinueOnError)
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name")
	ttl := fs.Duration("ttl", time.Hour, "lifetime (0: no exp claim)")
	secret := fs.String("secret", os.Getenv("JWT_SECRET"), "HMAC secret (default: env JWT_SECRET)")
	var rooms []string
	fs.Func("room", "allowed room pattern, repeatable (default: any room)", func(v string) error {
		rooms = append(rooms, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("token: --sub is required")
	}
	if *secret == "" {
		return errors.New("token: set JWT_SECRET (or --secret); a development-mode server makes its own secret, use its /auth/dev-token")
	}
	tok, err := middleware.MintHS256([]byte(*secret), *sub, *name, *ttl, rooms)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
