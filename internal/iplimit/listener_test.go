package iplimit

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestListenerCapsConnectionsPerIP(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	trusted := netip.MustParseAddr("127.0.0.4")
	ln := NewListener(raw, 3, func(a netip.Addr) bool { return a == trusted }, func() { refused.Add(1) }).(*Listener)
	defer ln.Close()
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := raw.Addr().String()
	next := func() net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(2 * time.Second):
			t.Fatal("no connection accepted")
		}
		return nil
	}
	var held []net.Conn
	for range 3 {
		dialFrom(t, "127.0.0.2", addr)
		held = append(held, next())
	}
	over := dialFrom(t, "127.0.0.2", addr)
	_ = over.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(over).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 429") {
		t.Fatalf("connection over the cap: %q %v, want a 429", line, err)
	}
	if refused.Load() != 1 {
		t.Fatalf("refusals counted: %d", refused.Load())
	}
	// Another IP, and the exempt balancer, are not affected.
	dialFrom(t, "127.0.0.3", addr)
	next()
	for range 5 {
		dialFrom(t, "127.0.0.4", addr)
		next()
	}
	// Closing (twice) gives one slot back.
	held[0].Close()
	held[0].Close()
	if n := ln.Open(netip.MustParseAddr("127.0.0.2")); n != 2 {
		t.Fatalf("open after a close: %d, want 2", n)
	}
	dialFrom(t, "127.0.0.2", addr)
	next()
	if n := ln.Open(netip.MustParseAddr("127.0.0.2")); n != 3 {
		t.Fatalf("open: %d, want 3", n)
	}
}

func TestListenerOffIsTheListener(t *testing.T) {
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	defer raw.Close()
	if NewListener(raw, 0, nil, nil) != raw {
		t.Fatal("a zero cap wrapped the listener")
	}
}
