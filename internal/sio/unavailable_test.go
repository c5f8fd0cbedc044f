package sio_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/internal/sio"
)

// downCluster publishes nothing: Redis is unreachable. As the redis
// adapter, its Publish also declines a socket's own room (the node
// delivers that itself); with log set it is a LogCluster whose Append
// fails (redis-streams: no offset).
type downCluster struct {
	log      bool
	attempts atomic.Int64
}

func (d *downCluster) Attach(_ string, local sio.Local) sio.Link {
	return &downLink{d: d, local: local}
}

type downLink struct {
	d     *downCluster
	local sio.Local
}

func (l *downLink) Publish(p sio.Packet, opts sio.BroadcastOpts) bool {
	l.d.attempts.Add(1)
	return false
}
func (l *downLink) Close() {}

type downLogCluster struct{ *downCluster }

func (d downLogCluster) AttachLog(_ string, local sio.Local) sio.LogLink {
	return &downLogLink{downLink{d: d.downCluster, local: local}}
}

type downLogLink struct{ downLink }

func (l *downLogLink) Append(sio.Packet, sio.BroadcastOpts) (string, error) {
	l.d.attempts.Add(1)
	return "", errors.New("dial tcp: connection refused")
}
func (l *downLogLink) Settle(string)                                       {}
func (l *downLogLink) SaveSession(sio.Session)                             {}
func (l *downLogLink) PersistSession(sio.Session)                          {}
func (l *downLogLink) DropSession(string)                                  {}
func (l *downLogLink) RestoreSession(string, string) (*sio.Session, error) { return nil, nil }

func (l *downLogLink) Resume(string) ([]any, bool) { return nil, false }

// While the cluster cannot take a broadcast, Emit returns ErrUnavailable
// and delivers it nowhere, this node included; a connection's own events
// (Conn.Emit, its own room) are still delivered, the whole target being here.
func TestEmitWhileClusterUnreachable(t *testing.T) {
	for _, log := range []bool{false, true} {
		name := map[bool]string{false: "pubsub", true: "streams"}[log]
		t.Run(name, func(t *testing.T) {
			d := &downCluster{log: log}
			var cluster sio.Cluster = d
			if log {
				cluster = downLogCluster{d}
			}
			s := sio.NewServer(sio.Options{Cluster: cluster})
			n := s.Of("/")
			var emitErr atomic.Value
			sio.Handle(n, "join", func(_ context.Context, c *sio.Conn, room string) (any, error) {
				c.Join(room)
				return map[string]any{}, nil
			})
			sio.Handle(n, "say", func(_ context.Context, c *sio.Conn, room string) (any, error) {
				err := n.To(room).Emit("said", room)
				emitErr.Store(err)
				return nil, err
			})
			sio.Handle(n, "self", func(_ context.Context, c *sio.Conn, _ string) (any, error) {
				return map[string]any{}, c.Emit("to-self", "hi")
			})
			mux := http.NewServeMux()
			mux.Handle(s.Path(), s.Handler())
			ts := httptest.NewServer(mux)
			t.Cleanup(func() { s.Close(); ts.Close() })

			a, b := dial(t, ts, "/", nil), dial(t, ts, "/", nil)
			call(t, a, "join", "r")
			call(t, b, "join", "r")
			got := call(t, a, "say", "r")
			if got.OK || got.Error == nil || got.Error.Code != sio.CodeUnavailable {
				t.Fatalf("ack of a handler returning Emit's error: %+v, want unavailable", got)
			}
			err, _ := emitErr.Load().(error)
			if !errors.Is(err, sio.ErrUnavailable) {
				t.Fatalf("Emit = %v, want ErrUnavailable", err)
			}
			if d.attempts.Load() == 0 {
				t.Fatal("the cluster was not tried")
			}
			for _, c := range []*rawclient.Client{a, b} {
				if e := eventWithin(c, 200*time.Millisecond); e != "" {
					t.Fatalf("delivered %q while the cluster is unreachable", e)
				}
			}
			if got := call(t, a, "self", ""); !got.OK {
				t.Fatalf("Conn.Emit while the cluster is unreachable: %+v", got)
			}
			if e := eventWithin(a, time.Second); e != "to-self" {
				t.Fatalf("own event: %q, want to-self", e)
			}
		})
	}
}

func eventWithin(c *rawclient.Client, d time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	e, err := c.Next(ctx)
	if err != nil {
		return ""
	}
	return e.Name
}
