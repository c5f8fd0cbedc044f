package eio

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Names of the limits the engine enforces, as reported to Options.OnLimit.
const (
	LimitOrigin    = "handshake_origin"    // a handshake or upgrade from an Origin not allowed
	LimitSessionIP = "session_ip_mismatch" // a request for a sid from another client IP
	// LimitSlowConsumer: a client cut off for not reading (MaxBuffered exceeded or a write
	// longer than WriteTimeout).
	LimitSlowConsumer = "slow_consumer"
)

// Refusal is an error AllowRequest or Admit may return to choose how a new
// session is refused: Status (default 403), a Retry-After header, and the
// limit reported to OnLimit.
type Refusal struct {
	Status     int
	RetryAfter time.Duration
	Limit      string
	Message    string
}

func (r *Refusal) Error() string {
	if r.Message != "" {
		return r.Message
	}
	return "refused: " + r.Limit
}

// refuse answers a handshake refused by err: a *Refusal chooses status and
// Retry-After; any other error is Node's 403 Forbidden.
func (srv *Server) refuse(w http.ResponseWriter, r *http.Request, err error, upgrade bool) {
	ref, ok := err.(*Refusal)
	if !ok {
		srv.log.Debug().Err(err).Str("remote", r.RemoteAddr).Msg("eio: handshake refused")
		if upgrade {
			writeUpgradeError(w, errForbidden)
		} else {
			writeError(w, errForbidden)
		}
		return
	}
	if ref.Limit != "" && srv.o.OnLimit != nil {
		srv.o.OnLimit(ref.Limit)
	}
	srv.log.Debug().Str("limit", ref.Limit).Str("remote", r.RemoteAddr).Msg("eio: handshake refused by a limit")
	status := ref.Status
	if status == 0 {
		status = http.StatusForbidden
	}
	h := w.Header()
	if ref.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((ref.RetryAfter+time.Second-1)/time.Second)))
	}
	msg := ref.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	body := `{"code":` + strconv.Itoa(errForbidden) + `,"message":` + strconv.Quote(msg) + `}`
	if upgrade {
		h.Set("Connection", "close")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// originAllowed is the check browsers cannot make for WebSockets: an Origin
// is allowed when listed in CORSOrigins ("*" allows any), or, with none
// listed, when it is the request's own host. Requests without Origin come
// from non-browser clients and are allowed.
func (srv *Server) originAllowed(r *http.Request) bool {
	if srv.o.AnyOrigin || srv.corsAny {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(srv.o.CORSOrigins) > 0 {
		return slices.Contains(srv.o.CORSOrigins, origin)
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// clientIP is the address the session is bound to and limits count.
func (srv *Server) clientIP(r *http.Request) string {
	if srv.o.ClientIP != nil {
		return srv.o.ClientIP(r)
	}
	return PeerIP(r.RemoteAddr)
}

// PeerIP is the IP of a host:port address (the address itself if it has no port).
func PeerIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// redactedQuery is the query of a refused request for the log, with the
// values of parameters that may carry a credential replaced.
func redactedQuery(q url.Values) string {
	out := make(url.Values, len(q))
	for k, v := range q {
		switch k {
		case "EIO", "transport", "sid", "t", "b64":
			out[k] = v
		default:
			out[k] = []string{"[redacted]"}
		}
	}
	return out.Encode()
}
