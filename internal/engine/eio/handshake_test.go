package eio

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHandshakePolling(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.PingInterval = 3 * time.Second
		o.PingTimeout = 2 * time.Second
		o.MaxPayload = 12345
	})
	res, body := e.do("GET", "EIO=4&transport=polling&t=abc&foo=bar", nil, "X-Test", "yes")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/plain; charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	if res.Header.Get("Set-Cookie") != "" || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unexpected headers %v", res.Header)
	}
	// Field order as Node writes it.
	if !strings.HasPrefix(body, `0{"sid":"`) || !strings.HasSuffix(body,
		`","upgrades":["websocket"],"pingInterval":3000,"pingTimeout":2000,"maxPayload":12345}`) {
		t.Errorf("open packet %q", body)
	}
	o := parseOpen(t, body)
	if len(o.SID) != 20 || strings.ContainsAny(o.SID, "+/=") {
		t.Errorf("sid %q: want 20 base64url characters", o.SID)
	}
	r := e.session()
	s := r.s
	if s.ID() != o.SID || s.Transport() != "polling" || e.srv.Count() != 1 {
		t.Errorf("socket %s %s count %d", s.ID(), s.Transport(), e.srv.Count())
	}
	hs := s.Handshake()
	if hs.Query().Get("foo") != "bar" || hs.Header.Get("X-Test") != "yes" || hs.Secure ||
		hs.URL != "/engine.io/?EIO=4&transport=polling&t=abc&foo=bar" || hs.RemoteAddr == "" ||
		hs.Host != e.ts.Listener.Addr().String() || time.Since(hs.Time) > time.Minute {
		t.Errorf("handshake %+v", hs)
	}
	var seen []*Socket
	e.srv.Range(func(s *Socket) bool { seen = append(seen, s); return true })
	if len(seen) != 1 || seen[0] != s {
		t.Errorf("Range: %v", seen)
	}

	// A second handshake is another session.
	sid2, _ := e.handshake()
	if sid2 == o.SID || e.srv.Count() != 2 {
		t.Errorf("second session %s, count %d", sid2, e.srv.Count())
	}
}

func TestHandshakeSendsOnlyOpenPacket(t *testing.T) {
	e := newEnv(t)
	e.onMsg = nil
	e.srv.o.OnConnection = func(s *Socket) {
		s.Send(TextMessage([]byte("welcome"))) // goes with the next poll, as in Node
		r := &rec{t: t, s: s, msgs: make(chan msg, 16), closed: make(chan string, 1)}
		s.SetHandler(r)
		e.conns <- r
	}
	sid, _ := e.handshake()
	if got := e.poll(sid); got != "4welcome" {
		t.Errorf("first poll %q", got)
	}
}

func TestHandshakeErrors(t *testing.T) {
	e := newEnv(t)
	sid, _ := e.handshake()
	cases := []struct {
		name, method, query string
		status              int
		body                string
	}{
		{"no transport", "GET", "EIO=4", 400, `{"code":0,"message":"Transport unknown"}`},
		{"unknown transport", "GET", "EIO=4&transport=flash", 400, `{"code":0,"message":"Transport unknown"}`},
		{"webtransport", "GET", "EIO=4&transport=webtransport", 400, `{"code":0,"message":"Transport unknown"}`},
		{"unknown sid", "GET", "EIO=4&transport=polling&sid=nope", 400, `{"code":1,"message":"Session ID unknown"}`},
		{"POST handshake", "POST", "EIO=4&transport=polling", 400, `{"code":2,"message":"Bad handshake method"}`},
		{"OPTIONS handshake", "OPTIONS", "EIO=4&transport=polling", 400, `{"code":2,"message":"Bad handshake method"}`},
		{"websocket without upgrade", "GET", "EIO=4&transport=websocket", 400, `{"code":3,"message":"Bad request"}`},
		{"jsonp", "GET", "EIO=4&transport=polling&j=0", 400, `{"code":3,"message":"Bad request"}`},
		{"EIO 3", "GET", "EIO=3&transport=polling", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"no EIO", "GET", "transport=polling", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"EIO 5", "GET", "EIO=5&transport=polling", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"protocol mismatch", "GET", "EIO=3&transport=polling&sid=" + sid, 400, `{"code":3,"message":"Bad request"}`},
		{"transport mismatch", "GET", "EIO=4&transport=websocket&sid=" + sid, 400, `{"code":3,"message":"Bad request"}`},
		{"PUT with sid", "PUT", "EIO=4&transport=polling&sid=" + sid, 500, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, body := e.do(c.method, c.query, nil)
			if res.StatusCode != c.status || body != c.body {
				t.Errorf("got %d %s, want %d %s", res.StatusCode, body, c.status, c.body)
			}
			if c.body != "" && res.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", res.Header.Get("Content-Type"))
			}
		})
	}
	if e.srv.Count() != 1 {
		t.Errorf("count %d, want the one session", e.srv.Count())
	}
}

func TestWebSocketUpgradeErrors(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ name, query, want string }{
		{"unknown transport", "EIO=4&transport=foo", "Transport unknown"},
		{"unknown sid", "EIO=4&transport=websocket&sid=nope", "Session ID unknown"},
		{"EIO 3", "EIO=3&transport=websocket", "Unsupported protocol version"},
		{"polling upgrade", "EIO=4&transport=polling", "Bad request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := e.rawRequest("GET /engine.io/?" + c.query + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
				"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			// Node's abortUpgrade: always 400, the message as a text body.
			if want := "400 Bad Request\n" + c.want; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestAllowRequest(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.AllowRequest = func(r *http.Request) error {
			if r.URL.Query().Get("token") != "good" {
				return errors.New("bad token")
			}
			return nil
		}
	})
	res, body := e.do("GET", "EIO=4&transport=polling&token=bad", nil)
	if res.StatusCode != 403 || body != `{"code":4,"message":"Forbidden"}` {
		t.Errorf("refused handshake: %d %s", res.StatusCode, body)
	}
	if _, err := e.tryDialWS("EIO=4&transport=websocket&token=bad"); err == nil {
		t.Errorf("websocket handshake not refused")
	}
	if e.srv.Count() != 0 {
		t.Fatalf("count %d", e.srv.Count())
	}
	res, body = e.do("GET", "EIO=4&transport=polling&token=good", nil)
	if res.StatusCode != 200 {
		t.Fatalf("allowed handshake: %d %s", res.StatusCode, body)
	}
	sid := parseOpen(t, body).SID
	e.session()
	// Requests of an open session are not checked again.
	e.post(sid, "4hi")
	e.dialWS("EIO=4&transport=websocket&token=good").text()
	e.session()
}

func TestCORS(t *testing.T) {
	type check struct {
		method, origin string
		status         int
		acao, acac     string
	}
	run := func(t *testing.T, origins []string, checks []check) {
		e := newEnv(t, func(o *Options) { o.CORSOrigins = origins })
		for _, c := range checks {
			hdr := []string{"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,x-a"}
			if c.origin == "same" {
				c.origin = e.ts.URL
			}
			if c.origin != "" {
				hdr = append(hdr, "Origin", c.origin)
			}
			res, _ := e.do(c.method, "EIO=4&transport=polling", nil, hdr...)
			h := res.Header
			if res.StatusCode != c.status || h.Get("Access-Control-Allow-Origin") != c.acao ||
				h.Get("Access-Control-Allow-Credentials") != c.acac {
				t.Errorf("%s from %q: %d ACAO=%q ACAC=%q, want %d %q %q", c.method, c.origin, res.StatusCode,
					h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials"), c.status, c.acao, c.acac)
			}
			if c.method == "OPTIONS" && c.acao != "" {
				if h.Get("Access-Control-Allow-Methods") != "GET,HEAD,PUT,PATCH,POST,DELETE" ||
					h.Get("Access-Control-Allow-Headers") != "content-type,x-a" {
					t.Errorf("preflight headers %v", h)
				}
			}
			if c.method == "OPTIONS" && c.acao == "" && h.Get("Access-Control-Allow-Methods") != "" {
				t.Errorf("preflight of a refused origin got %v", h)
			}
			if len(origins) > 0 && !(len(origins) == 1 && origins[0] == "*") && !slices.Contains(h.Values("Vary"), "Origin") {
				t.Errorf("no Vary: Origin in %v", h)
			}
		}
	}
	t.Run("none", func(t *testing.T) {
		run(t, nil, []check{
			{"GET", "https://a.example", 403, "", ""},     // not the same origin (Node would answer 200)
			{"GET", "same", 200, "", ""},                  // the request's own host
			{"OPTIONS", "https://a.example", 400, "", ""}, // Node without cors: a bad handshake method
		})
	})
	t.Run("any", func(t *testing.T) {
		run(t, []string{"*"}, []check{
			{"GET", "https://a.example", 200, "*", ""},
			{"GET", "", 200, "*", ""},
			{"OPTIONS", "https://a.example", 204, "*", ""},
		})
	})
	t.Run("list", func(t *testing.T) {
		run(t, []string{"https://a.example", "https://b.example"}, []check{
			{"GET", "https://a.example", 200, "https://a.example", "true"},
			{"GET", "https://b.example", 200, "https://b.example", "true"},
			{"GET", "https://evil.example", 403, "", ""}, // refused, not only left without CORS headers
			{"GET", "", 200, "", ""},
			{"OPTIONS", "https://b.example", 204, "https://b.example", "true"},
			{"OPTIONS", "https://evil.example", 204, "", ""},
			{"POST", "https://a.example", 400, "https://a.example", "true"}, // errors carry CORS headers too
		})
	})
}

func TestCookie(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Cookie = &http.Cookie{Name: "sb_node", Value: "node-1"} })
	res, body := e.do("GET", "EIO=4&transport=polling", nil)
	want := "sb_node=node-1; Path=/; HttpOnly; SameSite=Lax"
	if got := res.Header.Get("Set-Cookie"); got != want {
		t.Errorf("polling handshake Set-Cookie %q, want %q", got, want)
	}
	sid := parseOpen(t, body).SID
	e.session()
	res, _ = e.do("POST", "EIO=4&transport=polling&sid="+sid, strings.NewReader("4x"))
	if res.Header.Get("Set-Cookie") != "" {
		t.Errorf("cookie sent again on a POST")
	}
	c := e.dialWS("EIO=4&transport=websocket")
	if got := c.hdr.Get("Set-Cookie"); got != want {
		t.Errorf("websocket handshake Set-Cookie %q, want %q", got, want)
	}
	c.text()
	e.session()
	up := e.dialWS("EIO=4&transport=websocket&sid=" + sid)
	if up.hdr.Get("Set-Cookie") != "" {
		t.Errorf("cookie sent on an upgrade")
	}

	e2 := newEnv(t, func(o *Options) {
		o.Cookie = &http.Cookie{Name: "lb", Value: "n2", Path: "/socket.io", SameSite: http.SameSiteStrictMode, Secure: true}
	})
	res, _ = e2.do("GET", "EIO=4&transport=polling", nil)
	if got := res.Header.Get("Set-Cookie"); got != "lb=n2; Path=/socket.io; HttpOnly; Secure; SameSite=Strict" {
		t.Errorf("Set-Cookie %q", got)
	}
	e2.session()
}
