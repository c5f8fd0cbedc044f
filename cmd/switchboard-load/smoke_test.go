package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/internal/loadclient"
	"github.com/switchboard/switchboard/server"
)

const smokeSecret = "smoke-secret"

// startServer runs Switchboard in-process on a loopback port.
func startServer(t *testing.T) string {
	t.Helper()
	return startServerWith(t, func(c *server.Config) {
		c.MaxConnections, c.MaxConnsPerUser = 0, 0
		c.MaxConnsPerIP, c.HandshakeRatePerIP = 0, 0 // every load client comes from 127.0.0.1, as in make bench
		c.DrainTimeout = 100 * time.Millisecond
	})
}

func runSmoke(t *testing.T, scenario string, args ...string) *Result {
	t.Helper()
	base := []string{"--secret", smokeSecret, "--progress", "0", "--server-pid", itoa(os.Getpid()),
		"--connect-timeout", "30s", "--drain", "10s", "--label", "smoke"}
	o, err := parseOptions(scenario, append(base, args...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := runScenario(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Logf("errors: %v", res.Errors)
	}
	return res
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestSmokeEcho(t *testing.T) {
	url := startServer(t)
	res := runSmoke(t, "echo", "--url", url, "--clients", "20", "--interval", "50ms", "--duration", "1s")
	if res.Connected != 20 || res.Joined != 20 || res.ConnectErrors != 0 {
		t.Fatalf("connected %d joined %d errors %d", res.Connected, res.Joined, res.ConnectErrors)
	}
	if res.Sent == 0 || res.Acked != res.Sent || res.AckErrors != 0 {
		t.Fatalf("sent %d acked %d ack errors %d", res.Sent, res.Acked, res.AckErrors)
	}
	// Each echo goes to the sender's own room: one delivery per ack.
	if res.Expected != res.Acked || res.Unique != res.Expected || res.Lost != 0 || res.Duplicated != 0 {
		t.Fatalf("expected %d unique %d lost %d dup %d", res.Expected, res.Unique, res.Lost, res.Duplicated)
	}
	if res.AckRTTMs == nil || res.AckRTTMs.N != uint64(res.Acked) || res.Server == nil || !res.OK {
		t.Fatalf("incomplete result: %+v", res)
	}
}

func TestSmokeFanout(t *testing.T) {
	url := startServer(t)
	for _, mode := range [][]string{{"--rate", "20"}, {"--rate", "0", "--window", "2"}, {"--rate", "0", "--sweep", "20ms", "--eager", "5"},
		{"--rate", "0", "--reader", "goroutine"}, {"--rate", "0", "--reactors", "3"}} {
		args := append([]string{"--url", url, "--clients", "40", "--users", "10", "--duration", "1s"}, mode...)
		res := runSmoke(t, "fanout", args...)
		if res.Connected != 40 || res.Joined != 40 {
			t.Fatalf("%v: connected %d joined %d", mode, res.Connected, res.Joined)
		}
		if res.Sent == 0 || res.Acked != res.Sent {
			t.Fatalf("%v: sent %d acked %d", mode, res.Sent, res.Acked)
		}
		if res.Expected != res.Acked*40 || res.Unique != res.Expected || res.Lost != 0 || res.Duplicated != 0 || res.Reordered != 0 {
			t.Fatalf("%v: expected %d unique %d lost %d dup %d reordered %d", mode, res.Expected, res.Unique, res.Lost, res.Duplicated, res.Reordered)
		}
		if !res.OK {
			t.Fatalf("%v: not ok: %+v", mode, res)
		}
		wantReader := "reactor"
		if slices.Contains(mode, "goroutine") {
			wantReader = "goroutine"
		} else if slices.Contains(mode, "--sweep") {
			wantReader = "sweep"
		}
		if res.Client.Reader != wantReader || (wantReader == "reactor") != (res.Client.Reads > 0) || len(res.Client.CPUs) == 0 {
			t.Fatalf("%v: client stats %+v", mode, res.Client)
		}
	}
}

func TestSmokeRooms(t *testing.T) {
	url := startServer(t)
	res := runSmoke(t, "rooms", "--url", url, "--clients", "60", "--room-size", "6", "--interval", "100ms", "--duration", "1s")
	if res.Connected != 60 || res.Sent == 0 || res.Acked != res.Sent || res.Unique != res.Expected || res.Expected != res.Acked*6 {
		t.Fatalf("connected %d sent %d acked %d expected %d unique %d", res.Connected, res.Sent, res.Acked, res.Expected, res.Unique)
	}
	if !res.OK || res.Client.Reader != "reactor" || res.AckRTTMs == nil || res.LatencyMs == nil {
		t.Fatalf("not ok: %+v", res)
	}
}

// startBlast runs the do-nothing fan-out server in-process.
func startBlast(t *testing.T, batch int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := newBlaster()
	b.batch = batch
	go b.broadcaster(ctx)
	srv := &http.Server{Handler: b}
	go srv.Serve(ln)
	t.Cleanup(func() {
		cancel()
		srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// TestBlastFanout: batches of frames per write reach the reactor as
// several frames per read, and nothing is lost.
func TestBlastFanout(t *testing.T) {
	url := startBlast(t, 4)
	res := runSmoke(t, "fanout", "--url", url, "--clients", "50", "--users", "5", "--rate", "0", "--window", "4", "--duration", "1s")
	if !res.OK || res.Unique != res.Expected || res.Expected != res.Acked*50 {
		t.Fatalf("not ok: %+v", res)
	}
	if res.Client.PerRead <= 1.5 {
		t.Fatalf("deliveries per read %v, want batches", res.Client.PerRead)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:3000", "http://192.168.1.1", "http://8.8.8.8:80", "ws://127.0.0.1:3000"} {
		if _, err := parseOptions("echo", []string{"--url", u, "--secret", "x"}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	if _, err := parseOptions("echo", []string{"--url", "http://127.0.0.1:1", "--secret", "x"}); err != nil {
		t.Error(err)
	}
}

func TestHistAndText(t *testing.T) {
	var h loadclient.Hist
	for v := int64(1); v <= 10000; v++ {
		h.Record(v)
	}
	if q := h.Quantile(0.5); q < 4850 || q > 5150 {
		t.Errorf("p50 %v", q)
	}
	if q := h.Quantile(0.99); q < 9700 || q > 10000 {
		t.Errorf("p99 %v", q)
	}
	b := loadclient.AppendText(nil, 12, 345, 1700000000123456789, 40)
	p := []byte(`["message",{"id":"x","roomId":"r","text":"` + string(b) + `","ts":1},"offset"]`)
	s, seq, ns, isMsg, ok := loadclient.ParseMessage(p)
	if !isMsg || !ok || s != 12 || seq != 345 || ns != 1700000000123456789 {
		t.Fatalf("parse: %v %v %v %v %v", s, seq, ns, isMsg, ok)
	}
	var tr loadclient.SeqTracker
	outs := []loadclient.Outcome{tr.Add(0), tr.Add(2), tr.Add(1), tr.Add(1), tr.Add(3)}
	want := []loadclient.Outcome{loadclient.Unique, loadclient.Unique, loadclient.Reordered, loadclient.Duplicate, loadclient.Unique}
	for i := range want {
		if outs[i] != want[i] {
			t.Fatalf("tracker outcomes %v, want %v", outs, want)
		}
	}
}

// startServerWith runs Switchboard in-process, as startServer, with the
// configuration changed by edit (the attack smoke tests turn limits on).
func startServerWith(t *testing.T, edit func(*server.Config)) string {
	t.Helper()
	cfg := server.Defaults()
	cfg.JWTSecret = smokeSecret
	cfg.RateLimit = 0
	cfg.DrainTimeout = 0
	edit(&cfg)
	srv, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String()
}

func runAttackSmoke(t *testing.T, mode string, args ...string) *AttackResult {
	t.Helper()
	base := []string{mode, "--secret", smokeSecret, "--progress", "0", "--server-pid", itoa(os.Getpid())}
	o, err := parseAttack(append(base, args...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := runAttack(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := json.Marshal(res); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("%s", b)
	}
	if res.MetricsError != "" {
		t.Fatalf("metrics: %s", res.MetricsError)
	}
	if res.RSS == nil || res.RSS.Samples == 0 || res.RSS.PeakMB <= 0 || res.RSS.PeakMB < res.RSS.BaselineMB {
		t.Fatalf("server RSS not sampled: %+v", res.RSS)
	}
	return res
}

// sumDelta adds the growth of every series of a counter.
func sumDelta(res *AttackResult, name string) float64 {
	var n float64
	for k, v := range res.MetricsDelta {
		if k == name || strings.HasPrefix(k, name+"{") {
			n += v
		}
	}
	return n
}

// A token-less handshake flood from 127.0.0.2 is capped at
// MAX_CONNECTIONS_PER_IP and answered 429; the user from 127.0.0.3 gets in.
func TestAttackHandshakeFlood(t *testing.T) {
	url := startServerWith(t, func(c *server.Config) { c.MaxConnsPerIP = 5 })
	res := runAttackSmoke(t, "handshake-flood", "--url", url, "--duration", "1200ms", "--conns", "4")
	f := res.Flood
	if f == nil || f.Workers != 4 || len(f.PerSecond) < 1 {
		t.Fatalf("no flood figures: %+v", f)
	}
	if f.Accepted != 5 || f.Refused429 == 0 || f.Errors != 0 || f.RetryAfter == "" || f.Requests != f.Accepted+f.Refused429+f.Refused503 {
		t.Fatalf("flood: accepted %d refused %d/%d errors %d retry-after %q requests %d; want 5 accepted (MAX_CONNECTIONS_PER_IP) and 429s",
			f.Accepted, f.Refused429, f.Refused503, f.Errors, f.RetryAfter, f.Requests)
	}
	var perSec int64
	for _, s := range f.PerSecond {
		perSec += s.Accepted + s.Refused429
	}
	if perSec != f.Accepted+f.Refused429 {
		t.Fatalf("per-second counts add up to %d, totals to %d", perSec, f.Accepted+f.Refused429)
	}
	// Requests cut by the end of the phase are not counted by the flood (at most one per worker).
	if got := sumDelta(res, "switchboard_handshake_refusals_total"); got < float64(f.Refused429) || got > float64(f.Refused429+4) {
		t.Fatalf("server counted %v refusals, the flood saw %d", got, f.Refused429)
	}
	u := res.User
	if u == nil || u.Attempts < 2 || u.OK != u.Attempts || u.Failed != 0 || u.LatencyMs == nil || u.MaxMs <= 0 || u.TotalMaxMs < u.MaxMs {
		t.Fatalf("user during the flood: %+v", u)
	}
}

// An Engine.IO sid used from another address is refused as unknown when
// SESSION_BIND_IP is on, and works for the thief when it is off.
func TestAttackSIDTheft(t *testing.T) {
	for _, bind := range []bool{true, false} {
		t.Run(fmt.Sprint("bind=", bind), func(t *testing.T) {
			url := startServerWith(t, func(c *server.Config) { c.SessionBindIP = bind })
			res := runAttackSmoke(t, "sid-theft", "--url", url)
			th := res.Theft
			if th == nil || th.SID == "" || !th.VictimConnected || len(res.Errors) > 0 {
				t.Fatalf("victim not set up: %+v %v", th, res.Errors)
			}
			if bind {
				if th.PostStatus != 400 || !strings.Contains(th.PostBody, "Session ID unknown") || th.UpgradeStatus != 400 ||
					th.PollStatus != 400 || th.UpgradeProbe || !th.VictimIntact {
					t.Fatalf("SESSION_BIND_IP=1: %+v; want 400 Session ID unknown for POST, poll and upgrade, the victim intact", th)
				}
				if got := res.MetricsDelta["switchboard_session_ip_mismatch_total"]; got != 3 {
					t.Fatalf("switchboard_session_ip_mismatch_total grew by %v, want 3", got)
				}
			} else if th.PostStatus != 200 || th.UpgradeStatus != 101 || !th.UpgradeProbe {
				t.Fatalf("SESSION_BIND_IP=0: %+v; want the thief's POST 200 and upgrade 101 with its probe answered", th)
			}
		})
	}
}

// Idle keep-alive connections are closed after HTTP_IDLE_TIMEOUT; one IP
// holds at most 2 x MAX_CONNECTIONS_PER_IP; the probe from another IP is served.
func TestAttackKeepalive(t *testing.T) {
	url := startServerWith(t, func(c *server.Config) {
		c.HTTPIdleTimeout = 300 * time.Millisecond
		c.MaxConnsPerIP = 10
	})
	res := runAttackSmoke(t, "keepalive", "--url", url, "--conns", "30", "--duration", "1500ms")
	k := res.Keepalive
	if k == nil || k.Attempted != 30 || k.KeptAlive != 20 || k.RefusedTotal != 10 || k.KeptAlive+k.RefusedTotal != k.Attempted {
		t.Fatalf("keepalive: %+v; want 20 kept alive (2 x MAX_CONNECTIONS_PER_IP) and 10 refused", k)
	}
	if k.ClosedByServer != 20 || k.StillOpen != 0 || k.IdleCloseS == nil || k.IdleCloseS.Min < 0.2 || k.IdleCloseS.Max > 1.2 {
		t.Fatalf("idle connections: closed %d, still open %d, after %+v s; want all 20 closed after ~0.3 s", k.ClosedByServer, k.StillOpen, k.IdleCloseS)
	}
	if u := res.User; u == nil || u.Attempts < 4 || u.Failed != 0 || u.OK != u.Attempts {
		t.Fatalf("probe: %+v", u)
	}
}

// A flood of messages fills the recovery log up to RECOVERY_MAX_BYTES, and
// no further: the oldest are evicted.
func TestAttackRecoveryFlood(t *testing.T) {
	url := startServerWith(t, func(c *server.Config) { c.RecoveryMaxBytes = 200_000 })
	res := runAttackSmoke(t, "recovery-flood", "--url", url, "--sockets", "2", "--size", "1000", "--duration", "1s")
	r := res.Recovery
	if r == nil || r.Connected != 2 || r.Accepted == 0 || r.Refused != nil || r.Disconnects != 0 || r.AcceptedPerS <= 0 {
		t.Fatalf("recovery flood: %+v", r)
	}
	if r.Deliveries < r.Accepted { // each message reaches both sockets (one may be cut at the end)
		t.Fatalf("deliveries %d for %d accepted messages", r.Deliveries, r.Accepted)
	}
	if r.RecoveryLogBytes <= 0 || r.RecoveryLogBytes > 200_000 || r.RecoveryLogPeak > 200_000 || (r.Accepted > 300 && r.Evictions <= 0) {
		t.Fatalf("recovery log %v bytes (peak %v), %v evictions, after %d messages; want at most 200000 and evictions",
			r.RecoveryLogBytes, r.RecoveryLogPeak, r.Evictions, r.Accepted)
	}
}

// A client that sends big packets and never reads is cut off as a slow
// consumer; the bystander's presence acks keep coming.
func TestAttackNonReader(t *testing.T) {
	url := startServerWith(t, func(c *server.Config) {
		c.WriteTimeout = 300 * time.Millisecond
		c.MaxBufferedBytes = 64 << 10
	})
	res := runAttackSmoke(t, "nonreader", "--url", url, "--size", "20000", "--duration", "8s")
	nr := res.NonReader
	if nr == nil || !nr.Connected || nr.Packets == 0 || nr.BytesSent < nr.Packets*20000 || nr.RcvBuf <= 0 {
		t.Fatalf("nonreader: %+v %v", nr, res.Errors)
	}
	if !nr.CutOff || nr.CutOffS <= 0 || nr.CutOffError == "" {
		t.Fatalf("the non-reader was not cut off within 8 s: %+v", nr)
	}
	if got := res.MetricsDelta["switchboard_slow_consumer_disconnects_total"]; got != 1 {
		t.Fatalf("switchboard_slow_consumer_disconnects_total grew by %v, want 1", got)
	}
	if u := res.User; u == nil || u.OK == 0 || u.Failed != 0 {
		t.Fatalf("bystander: %+v", u)
	}
}
