package main

// --procs N: the coordinator (shard 0) starts N-1 copies of itself, each
// owning the clients i with i % N == shard. Children talk a line protocol:
//
//	child → parent (stdout): READY <joined> | P <unique> <expected> <outstanding> | RESULT <json partial>
//	parent → child (stdin):  GO | STOP

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/loadclient"
)

type childState struct {
	cmd                        *exec.Cmd
	stdin                      io.WriteCloser
	unique, expected, outstand atomic.Int64
	ready                      chan int64
	result                     chan partial
}

type children struct {
	kids []*childState
	once sync.Once
}

func startChildren(ctx context.Context, o *Options) (*children, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cs := &children{}
	for k := 1; k < o.shards; k++ {
		args := append([]string{o.scenario}, os.Args[2:]...)
		args = append(args, "--shard", strconv.Itoa(k), "--shards", strconv.Itoa(o.shards), "--progress", "0")
		cmd := exec.CommandContext(ctx, exe, args...)
		if len(o.procCPUs) > 0 {
			// Started under taskset, the child's Go runtime sizes itself
			// (GOMAXPROCS) for its one CPU from the start.
			ts, err := exec.LookPath("taskset")
			if err != nil {
				cs.kill()
				return nil, fmt.Errorf("--proc-cpus: %w", err)
			}
			cmd = exec.CommandContext(ctx, ts, append([]string{"-c", o.procCPUs[k%len(o.procCPUs)], exe}, args...)...)
		}
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			cs.kill()
			return nil, err
		}
		st := &childState{cmd: cmd, stdin: stdin, ready: make(chan int64, 1), result: make(chan partial, 1)}
		cs.kids = append(cs.kids, st)
		go st.read(stdout)
	}
	return cs, nil
}

func (st *childState) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "READY "):
			n, _ := strconv.ParseInt(strings.TrimPrefix(line, "READY "), 10, 64)
			st.ready <- n
		case strings.HasPrefix(line, "P "):
			f := strings.Fields(line)
			if len(f) == 4 {
				u, _ := strconv.ParseInt(f[1], 10, 64)
				e, _ := strconv.ParseInt(f[2], 10, 64)
				o, _ := strconv.ParseInt(f[3], 10, 64)
				st.unique.Store(u)
				st.expected.Store(e)
				st.outstand.Store(o)
			}
		case strings.HasPrefix(line, "RESULT "):
			var p partial
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &p); err == nil {
				st.result <- p
			}
		}
	}
}

func (cs *children) waitReady(ctx context.Context, max time.Duration) (int64, error) {
	t := time.NewTimer(max)
	defer t.Stop()
	var joined int64
	for i, st := range cs.kids {
		select {
		case n := <-st.ready:
			joined += n
		case <-t.C:
			return 0, fmt.Errorf("load process %d not ready in %s", i+1, max)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return joined, nil
}

func (cs *children) send(line string) {
	for _, st := range cs.kids {
		_, _ = io.WriteString(st.stdin, line+"\n")
	}
}

func (cs *children) unique() int64 {
	var n int64
	for _, st := range cs.kids {
		n += st.unique.Load()
	}
	return n
}

// drained: children have no acks outstanding (deliveries are checked
// globally by the coordinator, which adds their expected counts).
func (cs *children) drained() bool {
	for _, st := range cs.kids {
		if st.outstand.Load() > 0 {
			return false
		}
	}
	return true
}

func (cs *children) expected() int64 {
	var n int64
	for _, st := range cs.kids {
		n += st.expected.Load()
	}
	return n
}

func (cs *children) stop(ctx context.Context, max time.Duration) ([]partial, error) {
	cs.send("STOP")
	t := time.NewTimer(max)
	defer t.Stop()
	var out []partial
	var errs []error
	for i, st := range cs.kids {
		select {
		case p := <-st.result:
			out = append(out, p)
		case <-t.C:
			errs = append(errs, fmt.Errorf("load process %d sent no result", i+1))
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	}
	return out, errors.Join(errs...)
}

func (cs *children) kill() {
	cs.once.Do(func() {
		for _, st := range cs.kids {
			_ = st.stdin.Close()
		}
		done := make(chan struct{})
		go func() {
			for _, st := range cs.kids {
				_ = st.cmd.Wait()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			for _, st := range cs.kids {
				if st.cmd.Process != nil {
					_ = st.cmd.Process.Kill()
				}
			}
			<-done
		}
	})
}

// childMain is a child's whole life: connect, READY, GO, load, STOP, RESULT.
func childMain(ctx context.Context, r *runner, sc scenario) error {
	var outMu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		outMu.Unlock()
	}
	took := r.connectAll(ctx, sc.roomOf)
	say("READY %d", r.joined.Load())

	lines := make(chan string, 4)
	go func() {
		s := bufio.NewScanner(os.Stdin)
		for s.Scan() {
			lines <- strings.TrimSpace(s.Text())
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				return "EOF"
			}
			return l
		case <-ctx.Done():
			return "EOF"
		}
	}
	if next() != "GO" {
		r.closeAll()
		return nil
	}
	cpu1 := loadclient.SelfCPU()
	reads1 := r.readerStats().Reads
	end := time.Now().Add(r.o.duration)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		if sc.load != nil {
			sc.load(ctx, r, end)
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	stopped := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopped:
				return
			case <-tick.C:
				say("P %d %d %d", r.cnt.Unique.Load(), r.expected.Load(), r.outstandingAcks())
			}
		}
	}()
	cmd := next()
	<-loadDone
	waitFor(ctx, r.o.drain, 3*time.Second, func() bool { return r.outstandingAcks() == 0 },
		func() int64 { return r.acked.Load() })
	close(stopped)
	p := r.export((loadclient.SelfCPU() - cpu1).Seconds(), took.Seconds(), r.readerStats().Reads-reads1)
	b, _ := json.Marshal(p)
	say("RESULT %s", b)
	_ = cmd
	r.closeAll()
	return nil
}
