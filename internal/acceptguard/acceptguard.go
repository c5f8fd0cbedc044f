package acceptguard

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Backoff bounds for temporary errors (net/http uses the same figures).
const (
	minDelay = 5 * time.Millisecond
	maxDelay = time.Second
)

// Options are the guard's hooks; every field may be left zero.
type Options struct {
	// Count is called once for every failed accept (EMFILE, ENFILE or any
	// other temporary error).
	Count func()
	// Log is called with a failed accept's error, at most once per LogEvery.
	Log func(err error)
	// LogEvery is the minimum interval between two Log calls (default 1 s).
	LogEvery time.Duration
}

// Listener is a net.Listener whose Accept sheds connections on EMFILE/ENFILE
// and backs off on other temporary errors. It is safe for concurrent use.
type Listener struct {
	net.Listener
	opts Options

	mu      sync.Mutex // serializes the shedding and guards reserve
	reserve *os.File   // the spare descriptor; nil while it is spent

	logMu   sync.Mutex
	lastLog time.Time

	sleep func(time.Duration) // time.Sleep; replaced in tests
}

// New wraps ln. It opens the reserve descriptor now; if that fails (the
// process is already out of descriptors) the guard retries on the next
// EMFILE and backs off meanwhile.
func New(ln net.Listener, opts Options) *Listener {
	if opts.LogEvery <= 0 {
		opts.LogEvery = time.Second
	}
	l := &Listener{Listener: ln, opts: opts, sleep: time.Sleep}
	l.reserve, _ = os.Open(os.DevNull)
	return l
}

// Accept waits for and returns the next connection. It returns an error
// only when the wrapped listener fails permanently (for instance, closed).
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		switch {
		case outOfFDs(err):
			l.failed(err)
			c, shed, err := l.shed()
			if err != nil && !temporary(err) {
				return nil, err
			}
			if c != nil {
				return c, nil
			}
			if shed {
				delay = 0 // a client got its answer: keep draining the queue
				continue
			}
			// No reserve to spend (another goroutine took the descriptor):
			// wait for descriptors to come back rather than spin.
			delay = backoff(delay)
			l.sleep(delay)
		case temporary(err):
			l.failed(err)
			delay = backoff(delay)
			l.sleep(delay)
		default:
			return nil, err
		}
	}
}

// shed spends the reserve descriptor on the pending connection. It returns
// the connection when a descriptor is free again (it can then be served),
// shed true when it accepted and closed one, and the accept's error if it
// failed.
func (l *Listener) shed() (served net.Conn, shed bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reserve == nil {
		if l.reserve, _ = os.Open(os.DevNull); l.reserve == nil {
			return nil, false, nil
		}
	}
	_ = l.reserve.Close()
	l.reserve = nil
	// With the freed descriptor this accepts the pending connection, or
	// blocks like any Accept until one arrives.
	c, err := l.Listener.Accept()
	if err != nil {
		l.reserve, _ = os.Open(os.DevNull)
		return nil, false, err
	}
	if l.reserve, _ = os.Open(os.DevNull); l.reserve != nil {
		return c, false, nil // descriptors are back: serve it
	}
	_ = c.Close()
	l.reserve, _ = os.Open(os.DevNull)
	return nil, true, nil
}

// failed counts err and logs it unless it logged less than LogEvery ago.
func (l *Listener) failed(err error) {
	if l.opts.Count != nil {
		l.opts.Count()
	}
	if l.opts.Log == nil {
		return
	}
	now := time.Now()
	l.logMu.Lock()
	due := l.lastLog.IsZero() || now.Sub(l.lastLog) >= l.opts.LogEvery
	if due {
		l.lastLog = now
	}
	l.logMu.Unlock()
	if due {
		l.opts.Log(err)
	}
}

// Close closes the wrapped listener and releases the reserve descriptor.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	if l.reserve != nil {
		_ = l.reserve.Close()
		l.reserve = nil
	}
	l.mu.Unlock()
	return err
}

func backoff(d time.Duration) time.Duration {
	if d == 0 {
		return minDelay
	}
	return min(2*d, maxDelay)
}

func outOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// temporary reports whether an accept error is worth retrying.
func temporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []syscall.Errno{syscall.ECONNABORTED, syscall.ECONNRESET, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
