package clientip

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func req(remote string, xff ...string) *http.Request {
	r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

func TestClientIP(t *testing.T) {
	r, err := New([]string{"127.0.0.1/32", "10.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no proxy header", "192.0.2.1:1234", nil, "192.0.2.1"},
		{"untrusted peer's header is ignored", "192.0.2.1:1234", []string{"203.0.113.9"}, "192.0.2.1"},
		{"trusted peer, one hop", "127.0.0.1:1234", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client-written entries left of the proxy's are ignored", "127.0.0.1:1", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", "127.0.0.1:1", []string{"203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"several headers are one list", "127.0.0.1:1", []string{"6.6.6.6", "203.0.113.9, 10.0.0.7"}, "203.0.113.9"},
		{"all trusted: the leftmost", "127.0.0.1:1", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"garbage stops at the last good address", "127.0.0.1:1", []string{"203.0.113.9, bogus, 10.0.0.2"}, "10.0.0.2"},
		{"trusted peer without header", "127.0.0.1:1", nil, "127.0.0.1"},
		{"ipv6 peer", "[::1]:80", []string{"2001:db8::1"}, "2001:db8::1"},
		{"entry with port", "127.0.0.1:1", []string{"203.0.113.9:5555"}, "203.0.113.9"},
		{"v4-mapped peer", "[::ffff:127.0.0.1]:1", []string{"203.0.113.9"}, "203.0.113.9"},
		{"unparsable peer", "pipe", nil, "pipe"},
	}
	for _, c := range cases {
		if got := r.ClientIP(req(c.remote, c.xff...)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestNoTrustedProxies(t *testing.T) {
	r, _ := New(nil)
	if got := r.ClientIP(req("127.0.0.1:1", "203.0.113.9")); got != "127.0.0.1" {
		t.Fatalf("got %q", got)
	}
}

func TestBadCIDR(t *testing.T) {
	if _, err := New([]string{"10.0.0.0/99"}); err == nil {
		t.Fatal("bad CIDR accepted")
	}
	if _, err := New([]string{"not-an-ip"}); err == nil {
		t.Fatal("bad address accepted")
	}
}

// A hostile header of thousands of trusted-looking hops is cut at maxHops.
func TestLongHeaderBounded(t *testing.T) {
	r, _ := New([]string{"10.0.0.0/8"})
	long := "203.0.113.9," + strings.Repeat("10.0.0.1,", 10000)
	got := r.ClientIP(req("10.0.0.2:1", long))
	if got != "10.0.0.1" {
		t.Fatalf("got %q, want the last trusted hop seen within the bound", got)
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("127.0.0.1:1", "203.0.113.9, 10.0.0.1")
	f.Add("[::1]:80", "2001:db8::1, bogus")
	f.Add("pipe", ",,,")
	r, _ := New([]string{"127.0.0.0/8", "10.0.0.0/8", "::1/128"})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := r.ClientIP(req(remote, xff))
		if got == "" && remote != "" {
			if _, err := netip.ParseAddrPort(remote); err == nil {
				t.Fatalf("empty client IP for %q %q", remote, xff)
			}
		}
		if a, err := netip.ParseAddr(got); err == nil && a.Zone() != "" {
			t.Fatalf("zone leaked: %q", got)
		}
	})
}
