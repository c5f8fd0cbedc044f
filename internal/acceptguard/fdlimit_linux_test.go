package acceptguard_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/acceptguard"
)

// countingLn counts the Accept calls reaching the real listener.
type countingLn struct {
	net.Listener
	calls atomic.Int64
}

func (l *countingLn) Accept() (net.Conn, error) {
	l.calls.Add(1)
	return l.Listener.Accept()
}

// highestFD is the largest descriptor number the process has open.
func highestFD(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	hi := 0
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > hi {
			hi = n
		}
	}
	return hi
}

// TestSurvivesDescriptorExhaustion runs out of descriptors for real: it
// lowers this test process's RLIMIT_NOFILE (this package is a test binary of
// its own, so no other test shares the limit), fills every descriptor, and
// checks that queued clients are closed rather than left hanging, that the
// accept loop does not spin, that the errors are counted and that the
// listener serves again once descriptors are free.
func TestSurvivesDescriptorExhaustion(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingLn{Listener: inner}
	var counted, logged atomic.Int64
	g := acceptguard.New(cl, acceptguard.Options{
		Count: func() { counted.Add(1) },
		Log:   func(error) { logged.Add(1) },
	})
	defer g.Close()

	const queued = 5
	limit := uint64(highestFD(t) + 1 + queued + 16)
	low := orig
	low.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	var fillers []*os.File
	release := func() {
		for _, f := range fillers {
			_ = f.Close()
		}
		fillers = nil
	}
	defer func() {
		release()
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}()

	// Clients connect first (the kernel queues them), then the process runs
	// out of descriptors.
	var clients []net.Conn
	for range queued {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatalf("filling descriptors: %v", err)
			}
			break
		}
		fillers = append(fillers, f)
	}

	served := make(chan net.Conn, 16)
	loopDone := make(chan error, 1)
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				loopDone <- err
				return
			}
			served <- c
		}
	}()

	// Every queued client gets a close, not a hang.
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("queued client %d: read %d, %v; want a close (EOF or reset)", i, n, err)
		}
	}
	// Still out of descriptors and nothing queued: the loop must wait, not spin.
	time.Sleep(300 * time.Millisecond)
	calls, errs := cl.calls.Load(), counted.Load()
	t.Logf("while exhausted: %d Accept calls, %d counted errors, %d logs", calls, errs, logged.Load())
	if calls > 2*queued+4 {
		t.Fatalf("%d Accept calls for %d clients: the loop spins", calls, queued)
	}
	if errs < queued || errs > queued+2 {
		t.Fatalf("counted %d accept errors, want about %d", errs, queued)
	}
	if logged.Load() != 1 {
		t.Fatalf("logged %d times within a second, want 1", logged.Load())
	}
	select {
	case c := <-served:
		t.Fatalf("a connection was served while out of descriptors: %v", c.RemoteAddr())
	default:
	}

	// Descriptors come back: the listener serves again.
	release()
	for i := range 2 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var sc net.Conn
		select {
		case sc = <-served:
		case <-time.After(3 * time.Second):
			t.Fatalf("client %d after recovery was not accepted", i)
		}
		if _, err := sc.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("client %d after recovery read %q, %v", i, buf, err)
		}
		sc.Close()
	}
	if got := counted.Load(); got != errs {
		t.Fatalf("errors counted after recovery: %d -> %d", errs, got)
	}

	_ = g.Close()
	select {
	case err := <-loopDone:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
