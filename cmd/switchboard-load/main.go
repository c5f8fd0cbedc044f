// Command switchboard-load is Switchboard's load generator. It speaks
// Engine.IO v4 / Socket.IO v5 directly (WebSocket, or long-polling for the
// polling scenario) so that the client side stays cheap, signs HS256 tokens,
// and measures the server process through /proc/<pid>.
//
//	switchboard-load idle    --clients 10000 --hold 10s --server-pid PID
//	switchboard-load echo    --clients 1000 --interval 100ms --duration 20s
//	switchboard-load fanout  --clients 5000 --rate 2 --duration 20s   (--rate 0: as fast as acks)
//	switchboard-load rooms   --clients 10000 --room-size 10 --interval 5s
//	switchboard-load polling --clients 500 --interval 1s
//	switchboard-load serve   [switchboard flags]   Switchboard in-process, with --pprof-addr
//	switchboard-load report  results.jsonl...      table of medians with ratios
//	switchboard-load attack  MODE [flags]          hostile clients of issue 10 (handshake-flood,
//	                                               recovery-flood, keepalive, sid-theft, nonreader)
//
// Each scenario prints progress on stderr and one JSON object on stdout.
// Targets must be loopback addresses; every phase is bounded in time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "switchboard-load:", err)
		os.Exit(1)
	}
}

const usage = `usage: switchboard-load SCENARIO [flags]
scenarios: idle, echo, fanout, rooms, polling
other:     serve (Switchboard in-process with net/http/pprof), report (aggregate results),
           blast (a do-nothing fan-out server: measures the load generator's own ceiling),
           attack MODE (hostile clients of issue 10: handshake-flood, recovery-flood, keepalive, sid-theft,
           nonreader; "switchboard-load attack -h" for what each does and the server settings it needs)
run "switchboard-load SCENARIO -h" for the flags`

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errors.New("no scenario")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "report":
		return report(args[1:], os.Stdout)
	case "blast":
		return blast(args[1:])
	case "attack":
		return attack(args[1:])
	case "idle", "echo", "fanout", "rooms", "polling":
	case "-h", "--help", "help":
		fmt.Fprintln(os.Stderr, usage)
		return nil
	default:
		fmt.Fprintln(os.Stderr, usage)
		return fmt.Errorf("unknown scenario %q", args[0])
	}
	o, err := parseOptions(args[0], args[1:])
	if err != nil {
		return err
	}
	if o.cpuProfile != "" && o.shard == 0 {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runScenario(ctx, o)
	if err != nil {
		return err
	}
	if o.shards > 1 && o.shard > 0 {
		return nil // a child reported on its own protocol
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(res)
}

// Options are the flags of every scenario.
type Options struct {
	scenario string
	target   string
	hostport string
	path     string
	secret   string
	label    string
	pid      int
	wsImpl   string
	srcIPs   int

	clients     int
	users       int
	duration    time.Duration
	interval    time.Duration
	rate        float64
	window      int
	maxMsgs     int
	roomSize    int
	textBytes   int
	hold        time.Duration
	settle      time.Duration
	drain       time.Duration
	connectConc int
	connectMax  time.Duration
	timeout     time.Duration
	progress    time.Duration
	procs       int
	procCPUs    []string
	sweep       time.Duration
	eager       int
	reader      string
	reactors    int

	cpuProfile string

	// set on children of --procs
	shard, shards int
}

func parseOptions(scenario string, args []string) (*Options, error) {
	o := &Options{scenario: scenario}
	fs := flag.NewFlagSet("switchboard-load "+scenario, flag.ContinueOnError)
	fs.StringVar(&o.target, "url", "http://127.0.0.1:3000", "server base URL (loopback only)")
	fs.StringVar(&o.path, "path", "/socket.io/", "Socket.IO path")
	fs.StringVar(&o.secret, "secret", os.Getenv("JWT_SECRET"), "HS256 secret for tokens (default env JWT_SECRET)")
	fs.StringVar(&o.label, "label", "", "label copied into the result (e.g. switchboard, node)")
	fs.IntVar(&o.pid, "server-pid", 0, "server process id: CPU and RSS are read from /proc/PID")
	fs.StringVar(&o.wsImpl, "ws", "raw", "WebSocket client: raw (lean framing) or gorilla")
	fs.IntVar(&o.srcIPs, "src-ips", 8, "spread connections over source addresses 127.0.0.1..127.0.0.N (each has its own port range)")

	d := defaultsFor(scenario)
	fs.IntVar(&o.clients, "clients", d.clients, "connections")
	fs.IntVar(&o.users, "users", d.users, "distinct user ids (sub) the connections share; 0: one per connection")
	fs.DurationVar(&o.duration, "duration", d.duration, "how long the load runs (after connecting)")
	fs.DurationVar(&o.interval, "interval", d.interval, "echo/rooms/polling: time between a client's messages")
	fs.Float64Var(&o.rate, "rate", d.rate, "fanout: messages per second into the room; 0: as fast as acks come back")
	fs.IntVar(&o.window, "window", 1, "fanout with --rate 0: messages awaiting their ack at once")
	fs.IntVar(&o.maxMsgs, "max-msgs", 1_000_000, "upper bound on messages sent per sender")
	fs.IntVar(&o.roomSize, "room-size", 10, "rooms: members per room")
	fs.IntVar(&o.textBytes, "text-bytes", 48, "message text length (padded)")
	fs.DurationVar(&o.hold, "hold", d.hold, "idle: how long the connections stay open after settling")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "idle: wait after connecting before measuring memory")
	fs.DurationVar(&o.drain, "drain", 15*time.Second, "max wait for outstanding deliveries and acks after sending stops")
	fs.IntVar(&o.connectConc, "connect-concurrency", 128, "connections opened in parallel")
	fs.DurationVar(&o.connectMax, "connect-timeout", 120*time.Second, "bound on the whole connect phase")
	fs.DurationVar(&o.timeout, "timeout", 0, "hard bound on the whole run (0: computed from the others)")
	fs.DurationVar(&o.progress, "progress", time.Second, "progress line interval on stderr (0: none)")
	fs.DurationVar(&o.sweep, "sweep", 0, "fanout: read all but --eager receivers in sweeps this far apart from one goroutine (one syscall per socket per sweep, cheaper client; changes the server's cost, see docs/BENCHMARKS.md); 0: a reader per connection")
	fs.IntVar(&o.eager, "eager", 50, "fanout with --sweep: receivers (spread over the room) read at once, measuring latency")
	fs.StringVar(&o.reader, "reader", "", "how WebSocket connections are read: reactor (one goroutine per core with its own epoll set, 64 KB reads, no per-frame allocation) or goroutine (one reader per connection); default: reactor for fanout and rooms, goroutine otherwise")
	fs.IntVar(&o.reactors, "reactors", 0, "--reader reactor: reader goroutines per process (0: GOMAXPROCS)")
	fs.IntVar(&o.procs, "procs", 1, "load processes (connections are split among them)")
	procCPUs := fs.String("proc-cpus", "", "with --procs: comma-separated CPUs; process k (0 is this one, which the caller pins) is started under taskset on the k-th (mod the count)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.IntVar(&o.shard, "shard", 0, "internal: this child's index")
	fs.IntVar(&o.shards, "shards", 0, "internal: number of processes")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.secret == "" {
		return nil, errors.New("--secret (or JWT_SECRET) is required to sign tokens")
	}
	hp, err := loopbackHostPort(o.target)
	if err != nil {
		return nil, err
	}
	o.hostport = hp
	if o.clients < 1 {
		return nil, errors.New("--clients must be at least 1")
	}
	if scenario == "fanout" && o.clients < 1 {
		return nil, errors.New("fanout needs at least one client")
	}
	if o.users <= 0 || o.users > o.clients {
		o.users = o.clients
	}
	if o.roomSize < 1 {
		o.roomSize = 1
	}
	if o.window < 1 {
		o.window = 1
	}
	if o.interval <= 0 {
		o.interval = time.Second
	}
	switch o.reader {
	case "":
		o.reader = "goroutine"
		if scenario == "fanout" || scenario == "rooms" {
			o.reader = "reactor"
		}
	case "reactor", "goroutine":
	default:
		return nil, fmt.Errorf("--reader: reactor or goroutine, got %q", o.reader)
	}
	if o.wsImpl != "raw" || o.scenario == "polling" || o.scenario == "idle" {
		o.reader = "goroutine" // the reactor reads raw framing; idle is swept; polling is HTTP
	}
	if o.scenario == "fanout" && o.sweep > 0 && o.wsImpl == "raw" {
		o.reader = "sweep" // --eager receivers have a goroutine each, the others are swept
	}
	if o.reactors <= 0 {
		o.reactors = runtime.GOMAXPROCS(0)
	}
	if o.procs < 1 {
		o.procs = 1
	}
	if *procCPUs != "" {
		for _, c := range strings.Split(*procCPUs, ",") {
			if c = strings.TrimSpace(c); c != "" {
				if _, err := strconv.Atoi(c); err != nil {
					return nil, fmt.Errorf("--proc-cpus: %q is not a CPU number", c)
				}
				o.procCPUs = append(o.procCPUs, c)
			}
		}
	}
	if o.shards == 0 {
		o.shards = o.procs
	}
	if o.timeout <= 0 {
		o.timeout = o.connectMax + o.duration + o.hold + o.settle + o.drain + 60*time.Second
	}
	return o, nil
}

type scenarioDefaults struct {
	clients, users int
	duration       time.Duration
	interval       time.Duration
	rate           float64
	hold           time.Duration
}

func defaultsFor(s string) scenarioDefaults {
	switch s {
	case "idle":
		return scenarioDefaults{clients: 10000, hold: 10 * time.Second}
	case "echo":
		return scenarioDefaults{clients: 1000, duration: 20 * time.Second, interval: 100 * time.Millisecond}
	case "fanout":
		// Users shared by connections: each user's first join tells the
		// whole room (user-joined), so N distinct users cost O(N²) at setup.
		return scenarioDefaults{clients: 5000, users: 50, duration: 20 * time.Second, rate: 2}
	case "rooms":
		return scenarioDefaults{clients: 10000, duration: 30 * time.Second, interval: 5 * time.Second}
	case "polling":
		return scenarioDefaults{clients: 500, duration: 20 * time.Second, interval: time.Second}
	}
	return scenarioDefaults{clients: 1}
}

// loopbackHostPort accepts only http(s) URLs whose host is a loopback
// address (or a name resolving only to loopback addresses).
func loopbackHostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("--url: scheme must be http, got %q", u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := net.LookupIP(host)
		if err != nil {
			return "", fmt.Errorf("--url: %w", err)
		}
		ips = addrs
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("--url: %s does not resolve", host)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return "", fmt.Errorf("--url: %s is not a loopback address: switchboard-load only targets this machine", ip)
		}
	}
	return net.JoinHostPort(ips[0].String(), port), nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func trimErr(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
