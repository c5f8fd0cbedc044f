package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
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
	cfg := server.Defaults()
	cfg.JWTSecret = smokeSecret
	cfg.RateLimit = 0
	cfg.MaxConnections = 0
	cfg.MaxConnsPerUser = 0
	cfg.DrainTimeout = 100 * time.Millisecond
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
