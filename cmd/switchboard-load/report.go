package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// report reads JSON results (one per line, from files or stdin when none)
// and prints, per scenario and metric, the median of each label and the
// ratio of the first label to the second (--a switchboard --b node).
func report(args []string, w io.Writer) error {
	a, b := "switchboard", "node"
	format := "text"
	var files []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--a":
			i++
			a = args[i]
		case "--b":
			i++
			b = args[i]
		case "--markdown":
			format = "markdown"
		case "--lines":
			format = "lines"
		default:
			files = append(files, args[i])
		}
	}
	var results []map[string]any
	readAll := func(r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				return err
			}
			results = append(results, m)
		}
		return sc.Err()
	}
	if len(files) == 0 {
		if err := readAll(os.Stdin); err != nil {
			return err
		}
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		err = readAll(fh)
		fh.Close()
		if err != nil {
			return err
		}
	}
	if format == "lines" {
		for _, m := range results {
			fmt.Fprintln(w, summaryLine(m))
		}
		return nil
	}
	rows := reportRows(results, a, b)
	printTable(w, rows, a, b, format)
	return nil
}

// metric is one row of the table: a path into the result and whether
// lower is better.
type metric struct {
	name  string
	path  string
	lower bool
}

var scenarioMetrics = map[string][]metric{
	"idle": {
		{"server RSS per connection (KB)", "server.rss_kb_per_conn", true},
		{"connections established", "connected", false},
		{"connects per second", "connect_per_s", false},
		{"connect p99 (ms)", "connect_ms.p99", true},
		{"server CPU while idle (% core)", "server.cpu_pct", true},
		{"client CPU (% core)", "client.cpu_pct", true},
	},
	"echo": {
		{"acked messages per second", "acked_per_s", false},
		{"server CPU per acked message (µs)", "server.cpu_us_per_op", true},
		{"ack RTT p50 (ms)", "ack_rtt_ms.p50", true},
		{"ack RTT p99 (ms)", "ack_rtt_ms.p99", true},
		{"ack RTT p99.9 (ms)", "ack_rtt_ms.p999", true},
		{"server CPU (% core)", "server.cpu_pct", true},
		{"lost + duplicated + ack errors", "=lost+duplicated+ack_errors", true},
		{"client CPU (% core)", "client.cpu_pct", true},
	},
	"fanout": {
		{"delivered messages per second", "delivered_per_s", false},
		{"server CPU per delivery (µs)", "server.cpu_us_per_op", true},
		{"delivery latency p50 (ms)", "latency_ms.p50", true},
		{"delivery latency p99 (ms)", "latency_ms.p99", true},
		{"messages sent", "sent", false},
		{"lost deliveries", "lost", true},
		{"duplicated deliveries", "duplicated", true},
		{"server CPU (% core)", "server.cpu_pct", true},
		{"server RSS peak (MB)", "server.rss_mb_peak", true},
		{"client CPU (% core)", "client.cpu_pct", true},
		{"client CPU per delivery (µs)", "client.cpu_us_per_delivery", true},
		// Above 1, receivers are read less often than messages arrive:
		// the client is behind (see docs/BENCHMARKS.md).
		{"client deliveries per read", "client.deliveries_per_read", true},
	},
	"rooms": {
		{"delivered messages per second", "delivered_per_s", false},
		{"server CPU per delivery (µs)", "server.cpu_us_per_op", true},
		{"delivery latency p50 (ms)", "latency_ms.p50", true},
		{"delivery latency p99 (ms)", "latency_ms.p99", true},
		{"ack RTT p99 (ms)", "ack_rtt_ms.p99", true},
		{"lost + duplicated", "=lost+duplicated", true},
		{"server RSS per connection (KB)", "server.rss_kb_per_conn", true},
		{"server CPU (% core)", "server.cpu_pct", true},
		{"client CPU (% core)", "client.cpu_pct", true},
	},
	"polling": {
		{"acked messages per second", "acked_per_s", false},
		{"server CPU per acked message (µs)", "server.cpu_us_per_op", true},
		{"ack RTT p50 (ms)", "ack_rtt_ms.p50", true},
		{"ack RTT p99 (ms)", "ack_rtt_ms.p99", true},
		{"lost + duplicated + ack errors", "=lost+duplicated+ack_errors", true},
		{"server CPU (% core)", "server.cpu_pct", true},
		{"client CPU (% core)", "client.cpu_pct", true},
	},
}

type row struct {
	scenario, metric string
	a, b             []float64
	lower            bool
}

// key of a result: its scenario, with the fan-out mode told apart.
func resultKey(m map[string]any) string {
	s, _ := m["scenario"].(string)
	if s == "fanout" {
		if p, ok := m["params"].(map[string]any); ok {
			if mode, _ := p["mode"].(string); mode == "as-fast-as-acks" {
				return "fanout-max"
			}
			return "fanout-rate"
		}
	}
	return s
}

func lookup(m map[string]any, path string) (float64, bool) {
	if strings.HasPrefix(path, "=") {
		var sum float64
		for _, p := range strings.Split(path[1:], "+") {
			v, ok := lookup(m, p)
			if !ok {
				return 0, false
			}
			sum += v
		}
		return sum, true
	}
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return 0, false
		}
		cur = mm[k]
	}
	v, ok := cur.(float64)
	return v, ok
}

func reportRows(results []map[string]any, a, b string) []row {
	order := []string{"idle", "echo", "fanout-rate", "fanout-max", "rooms", "polling"}
	byKey := map[string][]map[string]any{}
	for _, m := range results {
		k := resultKey(m)
		byKey[k] = append(byKey[k], m)
		found := false
		for _, o := range order {
			if o == k {
				found = true
			}
		}
		if !found {
			order = append(order, k)
		}
	}
	var rows []row
	for _, k := range order {
		rs := byKey[k]
		if len(rs) == 0 {
			continue
		}
		base := strings.SplitN(k, "-", 2)[0]
		for _, mt := range scenarioMetrics[base] {
			r := row{scenario: k, metric: mt.name, lower: mt.lower}
			for _, m := range rs {
				v, ok := lookup(m, mt.path)
				if !ok {
					continue
				}
				switch m["label"] {
				case a:
					r.a = append(r.a, v)
				case b:
					r.b = append(r.b, v)
				}
			}
			if len(r.a)+len(r.b) > 0 {
				rows = append(rows, r)
			}
		}
	}
	return rows
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func printTable(w io.Writer, rows []row, a, b, format string) {
	header := []string{"scenario", "metric", a + " (median)", b + " (median)", a + "/" + b, "better", "n"}
	var lines [][]string
	for _, r := range rows {
		ma, mb := median(r.a), median(r.b)
		ratio := "-"
		if !math.IsNaN(ma) && !math.IsNaN(mb) && mb != 0 {
			ratio = fmt.Sprintf("%.2fx", ma/mb)
		} else if ma == 0 && mb == 0 {
			ratio = "="
		}
		better := "lower"
		if !r.lower {
			better = "higher"
		}
		lines = append(lines, []string{r.scenario, r.metric, fmtNum(ma), fmtNum(mb), ratio, better,
			fmt.Sprintf("%d/%d", len(r.a), len(r.b))})
	}
	if format == "markdown" {
		fmt.Fprintf(w, "| %s |\n", strings.Join(header, " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(header)))
		for _, l := range lines {
			fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
		}
		return
	}
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len([]rune(h))
	}
	for _, l := range lines {
		for i, c := range l {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	pr := func(cells []string) {
		var sb strings.Builder
		for i, c := range cells {
			pad := widths[i] - len([]rune(c))
			if i >= 2 {
				sb.WriteString(strings.Repeat(" ", pad) + c)
			} else {
				sb.WriteString(c + strings.Repeat(" ", pad))
			}
			sb.WriteString("  ")
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
	pr(header)
	for _, l := range lines {
		pr(l)
	}
}

// summaryLine is one result in one line (progress of run-bench.sh).
func summaryLine(m map[string]any) string {
	get := func(p string) string {
		v, ok := lookup(m, p)
		if !ok {
			return "-"
		}
		return fmtNum(v)
	}
	ok, _ := m["ok"].(bool)
	s := fmt.Sprintf("  %s %s: ok=%v connected %s/%s", resultKey(m), m["label"], ok, get("connected"), get("clients"))
	if resultKey(m) == "idle" {
		return s + fmt.Sprintf(", %s KB RSS per connection, %s connects/s, server CPU %s%%, client CPU %s%%",
			get("server.rss_kb_per_conn"), get("connect_per_s"), get("server.cpu_pct"), get("client.cpu_pct"))
	}
	s += fmt.Sprintf(", acked %s (%s/s), delivered %s/s, lost %s, dup %s, ack p99 %s ms, latency p99 %s ms, server %s µs/%s at %s%% CPU, client %s%% CPU",
		get("acked"), get("acked_per_s"), get("delivered_per_s"), get("lost"), get("duplicated"), get("ack_rtt_ms.p99"),
		get("latency_ms.p99"), get("server.cpu_us_per_op"), opName(m), get("server.cpu_pct"), get("client.cpu_pct"))
	if _, ok := lookup(m, "client.deliveries_per_read"); ok {
		s += fmt.Sprintf(" (%s µs/delivery, %s deliveries/read)", get("client.cpu_us_per_delivery"), get("client.deliveries_per_read"))
	}
	if c, ok := m["client"].(map[string]any); ok {
		if cpus, ok := c["cpus"].([]any); ok && len(cpus) > 0 {
			var l []string
			for _, v := range cpus {
				l = append(l, fmt.Sprint(v))
			}
			s += fmt.Sprintf(" on CPU %s (%v processes)", strings.Join(l, "+"), c["procs"])
		}
	}
	return s
}

func opName(m map[string]any) string {
	if s, ok := m["server"].(map[string]any); ok {
		if op, ok := s["op"].(string); ok {
			return op
		}
	}
	return "op"
}
