package namespaces

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/sio"
)

// The queue of socket events for the admin sockets is bounded: a full one
// drops what comes, and says so.
func TestAdminQueueIsBoundedAndCountsDrops(t *testing.T) {
	drops := 0
	a := &Admin{cfg: AdminConfig{Namespace: "/admin", OnDrop: func() { drops++ }}, queue: make(chan func(), 2)}
	i := adminInstrument{a}
	for range 5 {
		i.push(func() {})
	}
	if len(a.queue) != 2 || drops != 3 {
		t.Fatalf("queue %d, drops %d; want 2 and 3", len(a.queue), drops)
	}
}

func TestAdminSessionsAreBoundedAndExpire(t *testing.T) {
	s := adminSessions{max: 3, ttl: time.Hour, m: map[string]time.Time{}}
	now := time.Now()
	for k := range 5 {
		s.add(fmt.Sprint(k), now.Add(time.Duration(k)*time.Second))
	}
	if len(s.m) != 3 || s.valid("0", now) || s.valid("1", now) || !s.valid("4", now) {
		t.Fatalf("sessions %v: want the three newest", s.m)
	}
	if s.valid("4", now.Add(2*time.Hour)) || len(s.m) != 2 {
		t.Fatalf("an expired session is still valid (%v)", s.m)
	}
}

// The per-second counts kept between two server_stats are bounded.
func TestAdminAggregatedEventsAreBounded(t *testing.T) {
	io := sio.NewServer(sio.Options{CountTraffic: true})
	defer io.Close()
	a := &Admin{io: io}
	now := time.Now()
	a.sample(now)
	tr := io.Traffic()
	for k := range 2 * maxAggregated {
		tr.PacketsIn.Add(1)
		tr.BytesOut.Add(10)
		a.sample(now.Add(time.Duration(k+1) * time.Second))
	}
	if n := len(a.takeAggregated()); n != maxAggregated {
		t.Fatalf("%d aggregated events kept, want the cap %d", n, maxAggregated)
	}
	tr.PacketsIn.Add(3)
	a.sample(now.Add(time.Hour))
	got := a.takeAggregated()
	if len(got) != 1 || got[0].Type != "packetsIn" || got[0].Count != 3 {
		t.Fatalf("after a take: %+v", got)
	}
}
