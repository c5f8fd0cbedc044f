package acceptguard

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// script is a listener that answers Accept from a list of results.
type script struct {
	results []any // net.Conn or error
	calls   int
}

func (s *script) Accept() (net.Conn, error) {
	s.calls++
	if len(s.results) == 0 {
		return nil, net.ErrClosed
	}
	r := s.results[0]
	s.results = s.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(net.Conn), nil
}
func (s *script) Close() error   { return nil }
func (s *script) Addr() net.Addr { return &net.TCPAddr{} }

type fakeConn struct {
	net.Conn
	closed bool
}

func (c *fakeConn) Close() error { c.closed = true; return nil }

func opErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

type recorder struct {
	counts int
	logs   []error
	sleeps []time.Duration
}

func guard(ln net.Listener, r *recorder, every time.Duration) *Listener {
	l := New(ln, Options{Count: func() { r.counts++ }, Log: func(err error) { r.logs = append(r.logs, err) }, LogEvery: every})
	l.sleep = func(d time.Duration) { r.sleeps = append(r.sleeps, d) }
	return l
}

func TestTemporaryErrorsBackOffAndAreNeverReturned(t *testing.T) {
	want := &fakeConn{}
	var results []any
	for range 10 {
		results = append(results, opErr(syscall.ECONNABORTED))
	}
	results = append(results, want)
	var r recorder
	l := guard(&script{results: results}, &r, time.Hour)
	defer l.Close()
	c, err := l.Accept()
	if err != nil || c != want {
		t.Fatalf("Accept = %v, %v; want the connection after the errors", c, err)
	}
	wantSleeps := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	if len(r.sleeps) != len(wantSleeps) {
		t.Fatalf("sleeps = %v", r.sleeps)
	}
	for i, d := range wantSleeps {
		if r.sleeps[i] != d*time.Millisecond {
			t.Fatalf("sleep %d = %v, want %v (all: %v)", i, r.sleeps[i], d*time.Millisecond, r.sleeps)
		}
	}
	if r.counts != 10 || len(r.logs) != 1 {
		t.Fatalf("counted %d, logged %d; want 10 and 1 (rate-limited)", r.counts, len(r.logs))
	}
	if !errors.Is(r.logs[0], syscall.ECONNABORTED) {
		t.Fatalf("logged %v", r.logs[0])
	}
}

func TestBackoffResetsAfterSuccess(t *testing.T) {
	a, b := &fakeConn{}, &fakeConn{}
	tmp := opErr(syscall.ENOBUFS)
	var r recorder
	l := guard(&script{results: []any{tmp, tmp, a, tmp, b}}, &r, time.Hour)
	defer l.Close()
	for _, want := range []net.Conn{a, b} {
		if c, err := l.Accept(); err != nil || c != want {
			t.Fatalf("Accept = %v, %v", c, err)
		}
	}
	if len(r.sleeps) != 3 || r.sleeps[2] != minDelay {
		t.Fatalf("sleeps = %v; the delay must start over after a success", r.sleeps)
	}
}

func TestPermanentErrorIsReturned(t *testing.T) {
	var r recorder
	l := guard(&script{}, &r, time.Hour)
	defer l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept error = %v, want net.ErrClosed", err)
	}
	if r.counts != 0 || len(r.logs) != 0 || len(r.sleeps) != 0 {
		t.Fatalf("a closed listener is not an accept error: %+v", r)
	}
}

func TestLogIsRateLimited(t *testing.T) {
	tmp := opErr(syscall.ENOMEM)
	c := &fakeConn{}
	var r recorder
	l := guard(&script{results: []any{tmp, tmp, tmp, c, tmp, c}}, &r, 50*time.Millisecond)
	defer l.Close()
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	if len(r.logs) != 1 {
		t.Fatalf("logged %d times in a burst, want 1", len(r.logs))
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	if len(r.logs) != 2 || r.counts != 4 {
		t.Fatalf("logged %d, counted %d; want 2 and 4", len(r.logs), r.counts)
	}
}

// With descriptors available again by the time the pending connection is
// taken, it is served rather than shed.
func TestEMFILEWithDescriptorsBackServesTheConnection(t *testing.T) {
	want := &fakeConn{}
	var r recorder
	l := guard(&script{results: []any{opErr(syscall.EMFILE), want}}, &r, time.Hour)
	defer l.Close()
	c, err := l.Accept()
	if err != nil || c != want || want.closed {
		t.Fatalf("Accept = %v, %v (closed %v)", c, err, want.closed)
	}
	if r.counts != 1 || len(r.logs) != 1 || len(r.sleeps) != 0 {
		t.Fatalf("%+v", r)
	}
	if l.reserve == nil {
		t.Fatal("the reserve descriptor was not reopened")
	}
}
