package server_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/switchboard/switchboard/server"
)

func TestCompressionSettings(t *testing.T) {
	d := server.Defaults()
	if !d.HTTPCompression || d.HTTPCompressionThreshold != 1024 || d.PerMessageDeflate || d.PerMessageDeflateThreshold != 1024 {
		t.Fatalf("defaults: http %v/%d, permessage-deflate %v/%d", d.HTTPCompression, d.HTTPCompressionThreshold,
			d.PerMessageDeflate, d.PerMessageDeflateThreshold)
	}
	for _, env := range []string{"HTTP_COMPRESSION_THRESHOLD", "PER_MESSAGE_DEFLATE_THRESHOLD"} {
		_, err := server.Load(nil, func(k string) string { return map[string]string{env: "-1"}[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), env) {
			t.Errorf("%s=-1: err = %v", env, err)
		}
	}
}

// PER_MESSAGE_DEFLATE reaches the engine: the extension is accepted only with it.
func TestPerMessageDeflateNegotiated(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := server.Defaults()
		cfg.PerMessageDeflate = on
		n := startNode(t, cfg, nil)
		d := ws.Dialer{Extensions: []httphead.Option{wsflate.DefaultParameters.Option()}}
		conn, _, hs, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(n.url, "http")+"/socket.io/?EIO=4&transport=websocket")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if got := len(hs.Extensions) == 1; got != on {
			t.Errorf("PER_MESSAGE_DEFLATE=%v: negotiated %v", on, got)
		}
	}
}
