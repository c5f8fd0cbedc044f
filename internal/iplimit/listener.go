package iplimit

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// tooMany is what a connection over the cap gets before it is closed: a
// complete HTTP answer, so that a browser or balancer sees why.
var tooMany = []byte("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

// Listener caps the TCP connections open at once per peer IP, whatever they
// carry (idle keep-alive connections, unfinished requests, WebSockets), so
// that one address cannot use up the process's file descriptors. A
// connection over the cap is answered 429 and closed at once. Peers exempt
// reports true for (trusted balancers, which carry many clients) are not
// counted. Safe for concurrent use.
type Listener struct {
	net.Listener
	max      int
	exempt   func(netip.Addr) bool
	onRefuse func()

	mu   sync.Mutex
	open map[netip.Addr]int
}

// NewListener wraps ln; max <= 0 returns ln itself. exempt and onRefuse may be nil.
func NewListener(ln net.Listener, max int, exempt func(netip.Addr) bool, onRefuse func()) net.Listener {
	if max <= 0 {
		return ln
	}
	return &Listener{Listener: ln, max: max, exempt: exempt, onRefuse: onRefuse, open: map[netip.Addr]int{}}
}

// Accept returns the next connection within the cap of its IP.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return c, nil // not TCP/IP: nothing to count
		}
		ip := ap.Addr().Unmap()
		if l.exempt != nil && l.exempt(ip) {
			return c, nil
		}
		l.mu.Lock()
		n := l.open[ip]
		if n >= l.max {
			l.mu.Unlock()
			if l.onRefuse != nil {
				l.onRefuse()
			}
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, _ = c.Write(tooMany)
			_ = c.Close()
			continue
		}
		l.open[ip] = n + 1
		l.mu.Unlock()
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *Listener) release(ip netip.Addr) {
	l.mu.Lock()
	if n := l.open[ip]; n <= 1 {
		delete(l.open, ip)
	} else {
		l.open[ip] = n - 1
	}
	l.mu.Unlock()
}

// Open is the number of counted connections of ip (for tests).
func (l *Listener) Open(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[ip]
}

type conn struct {
	net.Conn
	l    *Listener
	ip   netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
