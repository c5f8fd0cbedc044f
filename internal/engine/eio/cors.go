package eio

import (
	"net/http"
	"slices"
)

// corsMethods are the methods a preflight allows (the cors middleware's default, which Node's
// engine.io uses).
const corsMethods = "GET,HEAD,PUT,PATCH,POST,DELETE"

// handleCORS adds the CORS headers of r's response, like Node's cors middleware configured with
// CORSOrigins, and answers a preflight (OPTIONS) itself, in which case it returns true. A request
// whose Origin is not allowed gets no Access-Control headers, so the browser refuses the answer.
func (srv *Server) handleCORS(w http.ResponseWriter, r *http.Request) bool {
	if len(srv.o.CORSOrigins) == 0 {
		return false
	}
	h := w.Header()
	allowed := true
	if srv.corsAny {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		allowed = origin != "" && slices.Contains(srv.o.CORSOrigins, origin)
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
	}
	if r.Method != http.MethodOptions {
		return false
	}
	if allowed {
		h.Set("Access-Control-Allow-Methods", corsMethods)
		if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
		}
	}
	h.Add("Vary", "Access-Control-Request-Headers")
	w.WriteHeader(http.StatusNoContent)
	return true
}
