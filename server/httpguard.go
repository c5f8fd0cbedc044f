package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard/switchboard/internal/acceptguard"
	"github.com/switchboard/switchboard/internal/iplimit"
	"github.com/switchboard/switchboard/internal/sio"
)

// HTTP hygiene of the listeners Serve runs (issue 10, "Hardening").
const (
	maxHeaderTimeout = 10 * time.Second
	maxHeaderBytes   = 64 << 10
)

// httpServer is an http.Server for h with the node's timeouts: idle
// keep-alive connections closed after HTTP_IDLE_TIMEOUT, request headers
// within 10 s (or HTTP_READ_TIMEOUT when shorter), request bodies within
// HTTP_READ_TIMEOUT (see bodyReadTimeout). http.Server.ReadTimeout stays
// unset on purpose: it bounds every request, and a long-polling GET waits up
// to PING_INTERVAL, a hijacked WebSocket lives for hours. Current net/http
// lifts the deadline when it starts its background read, but releases that
// did not cancelled the request context when the deadline passed during a
// long poll; a deadline set only on requests with a body does not depend on
// that.
func (s *Server) httpServer(h http.Handler) *http.Server {
	header := maxHeaderTimeout
	if rt := s.cfg.HTTPReadTimeout; rt > 0 {
		header = min(header, rt)
	}
	return &http.Server{
		Handler:           bodyReadTimeout(h, s.cfg.HTTPReadTimeout),
		ReadHeaderTimeout: header,
		IdleTimeout:       max(s.cfg.HTTPIdleTimeout, 0),
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// bodyReadTimeout gives a request with a body (a polling POST) d to be read:
// a client sending its body slowly or not at all (slow loris) is cut off.
// The deadline is lifted when the body is fully read, so a handler that then
// takes its time is not cancelled; requests without a body (GET polls,
// WebSocket upgrades) get no deadline.
func bodyReadTimeout(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, w: w}
			}
		}
		h.ServeHTTP(w, r)
	})
}

type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	w    http.ResponseWriter
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if errors.Is(err, io.EOF) {
			_ = b.rc.SetReadDeadline(time.Time{})
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			// The rest of the body will not come: no keep-alive after this.
			b.w.Header().Set("Connection", "close")
		}
	}
	return n, err
}

// guardListener wraps a listener of Serve: accepts survive running out of
// file descriptors (EMFILE/ENFILE shed the pending client, other temporary
// errors back off), every failed accept is counted on
// switchboard_accept_errors_total and logged at most once a second.
func (s *Server) guardListener(ln net.Listener) net.Listener {
	return acceptguard.New(ln, acceptguard.Options{
		Count: s.metrics.acceptErrors.Inc,
		Log: func(err error) {
			s.log.Warn().Err(err).Msg("accept failed: shedding connections or backing off (logged at most once a second)")
		},
	})
}

// perIPListener caps the TCP connections one client IP holds open at twice
// MAX_CONNECTIONS_PER_IP (a polling session uses two: its poll and its
// POST), so that idle keep-alive or half-sent requests from one address
// cannot use up the file descriptors. Trusted proxies carry many clients and
// are not counted (their clients are, by session, from X-Forwarded-For).
func (s *Server) perIPListener(ln net.Listener) net.Listener {
	return iplimit.NewListener(ln, 2*s.cfg.MaxConnsPerIP, s.clientIPs.Trusts, func() { s.metrics.Limit(sio.LimitIPConns) })
}

// MetricsHandler serves the node's Prometheus metrics, behind METRICS_TOKEN
// when it is set. Mount registers it as /metrics unless METRICS_ADDR is set;
// a program that embeds the server and sets METRICS_ADDR serves it itself.
func (s *Server) MetricsHandler() http.Handler {
	return s.metricsAuth(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
}

// metricsAuth puts h behind METRICS_TOKEN (401 without the bearer) when it
// is set: /metrics, and /live.json in production (live.go).
func (s *Server) metricsAuth(h http.Handler) http.Handler {
	if s.cfg.MetricsToken == "" {
		return h
	}
	want := sha256.Sum256([]byte(s.cfg.MetricsToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		// Hashing first makes the comparison constant-time in the length too.
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// probesApart reports whether /healthz and /readyz live on METRICS_ADDR
// rather than on the public mux.
func (s *Server) probesApart() bool { return s.cfg.MetricsAddr != "" && s.cfg.ProbesOnMetricsAddr }

// mountProbes registers /healthz and /readyz on mux.
func (s *Server) mountProbes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "node": s.cfg.NodeID})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "draining"})
			return
		}
		if err := s.readyErr(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
	})
}

// listenMetrics opens METRICS_ADDR's listener and builds its server:
// /metrics and /live.json, plus /healthz and /readyz with PROBES_ON_METRICS_ADDR.
func (s *Server) listenMetrics() (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen METRICS_ADDR %s: %w", s.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler())
	mux.Handle("GET "+livePath, s.liveHandler(true))
	if s.probesApart() {
		s.mountProbes(mux)
	}
	s.log.Info().Str("addr", ln.Addr().String()).Bool("probes", s.probesApart()).Msg("metrics listening")
	return s.httpServer(mux), s.guardListener(ln), nil
}

// loopbackPeer reports whether r comes from this machine: its peer address
// is a loopback IP and, if a local proxy forwarded it, so is every address
// the proxy names in X-Forwarded-For.
func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return false
	}
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, a := range strings.Split(v, ",") {
			if ip := net.ParseIP(strings.TrimSpace(a)); ip == nil || !ip.IsLoopback() {
				return false
			}
		}
	}
	return true
}
