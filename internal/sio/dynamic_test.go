package sio_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

func startWith(t *testing.T, opts sio.Options, setup func(s *sio.Server)) *httptest.Server {
	t.Helper()
	s := sio.NewServer(opts)
	setup(s)
	return serve(t, s)
}

func dialErr(ts *httptest.Server, nsp string, auth any) (*rawclient.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rawclient.Dial(ctx, ts.URL, "/socket.io/", nsp, auth, nil)
}

// whoAmI answers with the namespace's name, registered by the setup.
func whoAmI(n *sio.Namespace) {
	n.On("who", func(_ context.Context, c *sio.Conn, _ sio.Args, ack sio.Ack) { _ = ack(c.Namespace()) })
}

func TestDynamicNamespacesAreCreatedOnFirstConnectAndSetUpOnce(t *testing.T) {
	var setups sync.Map // name -> *atomic.Int32
	ts := startWith(t, sio.Options{}, func(s *sio.Server) {
		s.OfPattern(regexp.MustCompile(`^/room-\d+$`), func(n *sio.Namespace) {
			v, _ := setups.LoadOrStore(n.Name(), new(atomic.Int32))
			v.(*atomic.Int32).Add(1)
			time.Sleep(20 * time.Millisecond) // clients arriving meanwhile must wait for the handlers
			whoAmI(n)
		})
		s.OfMatch(func(name string, auth map[string]any) bool {
			return name == "/vip" && auth["key"] == "ok"
		}, whoAmI)
	})

	// Ten clients at once on a name nobody created: one setup, and every client finds the handler.
	const N = 10
	var wg sync.WaitGroup
	errs := make(chan error, N)
	for i := 0; i < N; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialErr(ts, "/room-7", nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := c.CallArgs(ctx, "who")
			if err != nil {
				errs <- err
				return
			}
			if len(got) != 1 || string(got[0]) != `"/room-7"` {
				errs <- errors.New("who acked " + rawJSON(t, got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if v, _ := setups.Load("/room-7"); v == nil || v.(*atomic.Int32).Load() != 1 {
		t.Fatalf("setup of /room-7 ran %v times, want once", v)
	}

	for _, tc := range []struct {
		nsp  string
		auth any
		ok   bool
	}{
		{"/room-8", nil, true},
		{"/room-x", nil, false},
		{"/vip", map[string]any{"key": "ok"}, true},
		{"/vip", map[string]any{"key": "no"}, true}, // exists now: the matcher is asked only to create
		{"/other", map[string]any{"key": "ok"}, false},
	} {
		c, err := dialErr(ts, tc.nsp, tc.auth)
		var ce *rawclient.ConnectError
		switch {
		case tc.ok && err != nil:
			t.Fatalf("%s: %v", tc.nsp, err)
		case !tc.ok && (!errors.As(err, &ce) || ce.Message != "Invalid namespace"):
			t.Fatalf("%s: got %v, want Invalid namespace", tc.nsp, err)
		}
		if c != nil {
			c.Close()
		}
	}
}

func TestDynamicNamespacesAreCapped(t *testing.T) {
	obs := &limitCounter{}
	ts := startWith(t, sio.Options{MaxDynamicNamespaces: 2, Observer: obs}, func(s *sio.Server) {
		s.OfPattern(regexp.MustCompile(`^/d\d+$`), whoAmI)
	})
	for _, nsp := range []string{"/d1", "/d2", "/d1"} {
		c, err := dialErr(ts, nsp, nil)
		if err != nil {
			t.Fatalf("%s: %v", nsp, err)
		}
		c.Close()
	}
	_, err := dialErr(ts, "/d3", nil)
	var ce *rawclient.ConnectError
	if !errors.As(err, &ce) || ce.Message != "Invalid namespace" {
		t.Fatalf("third dynamic namespace: %v, want Invalid namespace", err)
	}
	if n := obs.get(sio.LimitDynamicNamespaces); n != 1 {
		t.Fatalf("LimitDynamicNamespaces reported %d times, want 1", n)
	}
	if c, err := dialErr(ts, "/d2", nil); err != nil {
		t.Fatalf("an existing dynamic namespace after the cap: %v", err)
	} else {
		c.Close()
	}
}
