package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/switchboard/switchboard/server"
)

// serve runs Switchboard in this process (server.New, the same code as
// cmd/switchboard) and exposes net/http/pprof on --pprof-addr, so CPU and
// heap profiles can be taken without changing the server. Configuration is
// Switchboard's own: environment variables and flags.
func serve(args []string) error {
	pprofAddr := os.Getenv("PPROF_ADDR")
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--pprof-addr" || a == "-pprof-addr":
			if i+1 >= len(args) {
				return errors.New("--pprof-addr needs a value")
			}
			pprofAddr = args[i+1]
			i++
		case strings.HasPrefix(a, "--pprof-addr=") || strings.HasPrefix(a, "-pprof-addr="):
			pprofAddr = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	cfg, err := server.LoadFromOS(rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "  -pprof-addr string\n    \tnet/http/pprof listen address, loopback only (env PPROF_ADDR)")
		}
		return err
	}
	log := server.NewLogger(cfg, os.Stderr)
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	if pprofAddr != "" {
		if _, err := loopbackHostPort("http://" + pprofAddr); err != nil {
			return fmt.Errorf("--pprof-addr: %w", err)
		}
		ln, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go func() { _ = http.Serve(ln, mux) }()
		log.Info().Str("addr", ln.Addr().String()).Msg("pprof listening")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return srv.Run(ctx)
}
