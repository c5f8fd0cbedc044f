package server_test

import (
	"io"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/server"
)

// The Admin UI's namespace: off by default, on with a bcrypt hash, and
// ADMIN_UI_NO_AUTH refused outside development mode.
func TestAdminUISettings(t *testing.T) {
	d := server.Defaults()
	if d.AdminPasswordHash != "" || d.AdminNoAuth || d.AdminUsername != "admin" || d.AdminMode != "development" || d.AdminQueue != 10000 {
		t.Fatalf("defaults: %+v", d)
	}
	prod := server.Defaults()
	prod.JWTSecret = strings.Repeat("k", 32)
	prod.AdminNoAuth = true
	if _, err := server.New(prod, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "ADMIN_UI_NO_AUTH") {
		t.Fatalf("ADMIN_UI_NO_AUTH in production: err = %v", err)
	}
	bad := server.Defaults()
	bad.AdminPasswordHash = "not-bcrypt"
	if _, err := server.New(bad, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "ADMIN_UI_PASSWORD_HASH") {
		t.Fatalf("a hash that is not bcrypt: err = %v", err)
	}
	for _, mode := range []string{"dev", "Production"} {
		if _, err := server.Load(nil, func(k string) string { return map[string]string{"ADMIN_UI_MODE": mode}[k] }, io.Discard); err == nil {
			t.Errorf("ADMIN_UI_MODE=%s accepted", mode)
		}
	}
	dev := server.Defaults() // no JWT: development mode
	dev.AdminNoAuth = true
	n := startNode(t, dev, nil)
	if code, _ := get(t, n.url+"/healthz"); code != 200 {
		t.Fatalf("a development node with ADMIN_UI_NO_AUTH: /healthz %d", code)
	}
}
