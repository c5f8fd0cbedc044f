// Package clientip finds the client's IP address of an HTTP request: the
// peer's address, or, when the peer is a trusted proxy (a load balancer),
// the address that proxy recorded in X-Forwarded-For.
//
// X-Forwarded-For is read from the right: each trusted proxy appends the
// address it received the request from, so the first address from the right
// that is not a trusted proxy is the client. Addresses further left were
// written by the client itself and are never believed.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxHops bounds the X-Forwarded-For entries looked at (a hostile client may
// send thousands; only the proxies' own entries at the right end matter).
const maxHops = 32

// Resolver resolves client IPs; the zero value trusts no proxy. Safe for
// concurrent use.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a resolver trusting the proxies in cidrs ("10.0.0.0/8",
// "127.0.0.1/32"; a bare address means that address alone).
func New(cidrs []string) (*Resolver, error) {
	r := &Resolver{}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(c, "/") {
			p, err = netip.ParsePrefix(c)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(c)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", c, err)
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

// Trusts reports whether addr is a trusted proxy.
func (r *Resolver) Trusts(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range r.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP returns the client's IP for req, in canonical text form.
func (r *Resolver) ClientIP(req *http.Request) string {
	peer, ok := parseAddr(req.RemoteAddr)
	if !ok {
		return hostOf(req.RemoteAddr)
	}
	if len(r.trusted) == 0 || !r.Trusts(peer) {
		return peer.String()
	}
	return r.fromForwarded(req.Header.Values("X-Forwarded-For"), peer).String()
}

// fromForwarded walks the X-Forwarded-For values (several headers are one
// list, in order) from the right and returns the first untrusted address;
// when every entry is a trusted proxy, the leftmost one; an unparsable entry
// ends the walk at the last good address.
func (r *Resolver) fromForwarded(values []string, peer netip.Addr) netip.Addr {
	client := peer
	hops := 0
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" && hops < maxHops {
			var part string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				part, v = v[j+1:], v[:j]
			} else {
				part, v = v, ""
			}
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			hops++
			a, ok := parseAddr(part)
			if !ok {
				return client
			}
			client = a
			if !r.Trusts(a) {
				return a
			}
		}
	}
	return client
}

// parseAddr parses an IP with or without a port ("1.2.3.4", "1.2.3.4:5",
// "[::1]:5", "::1").
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
