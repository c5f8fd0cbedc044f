package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/rawclient"
	"github.com/switchboard/switchboard/server"
)

// The alert rules and the dashboard, relative to this package.
const (
	alertsFile    = "../deploy/prometheus/alerts.yml"
	dashboardFile = "../deploy/grafana/switchboard.json"
)

// metricName finds the metric names in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:switchboard_[a-z_]+|process_[a-z_]+|go_[a-z_]+)\b`)

// TestAlertsAndDashboardUseExportedMetrics checks that every metric the alert rules
// (deploy/prometheus/alerts.yml) and the Grafana dashboard (deploy/grafana/switchboard.json)
// query is on /metrics of a real node, so that a renamed or removed metric cannot leave an
// alert that never fires or an empty panel.
func TestAlertsAndDashboardUseExportedMetrics(t *testing.T) {
	used := map[string][]string{} // metric name -> where it is used
	for _, e := range alertExprs(t) {
		for _, name := range metricName.FindAllString(e.expr, -1) {
			used[name] = append(used[name], "alert "+e.where)
		}
	}
	for _, e := range dashboardExprs(t) {
		for _, name := range metricName.FindAllString(e.expr, -1) {
			used[name] = append(used[name], "dashboard "+e.where)
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in %s and %s: %v", len(used), alertsFile, dashboardFile, used)
	}

	samples, types := scrapeWithTraffic(t)
	var missing []string
	for name, where := range used {
		// Sample names, not family names: a histogram exports only name_bucket, name_sum and
		// name_count, and a labelled vector without children exports nothing at all.
		if samples[name] {
			continue
		}
		why := "not exported"
		if kind := types[name]; kind == "histogram" || kind == "summary" {
			why = "a " + kind + ": query its _bucket, _sum or _count"
		} else if base := trimAny(name, "_bucket", "_sum", "_count"); base != name && types[base] != "" {
			why = base + " is a " + types[base] + " without " + strings.TrimPrefix(name, base)
		}
		missing = append(missing, name+" ("+why+"; used in "+strings.Join(where, ", ")+")")
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("metrics used by the alerts or the dashboard but not on /metrics:\n  %s", strings.Join(missing, "\n  "))
	}
}

// scrapeWithTraffic starts a node, drives a little traffic so that the labelled vectors have
// children (a connect, a join, a message to the room, a handler panic), and scrapes /metrics.
// It returns the sample names and the type of each metric family.
func scrapeWithTraffic(t *testing.T) (samples map[string]bool, types map[string]string) {
	t.Helper()
	cfg := server.Defaults()
	cfg.JWTSecret = "s"
	cfg.DrainTimeout = 0
	n := startNode(t, cfg, func(sb *server.Server) {
		server.Handle(sb.Of("/observability"), "crash", func(context.Context, *server.Conn, any) (any, error) {
			panic("observability test: a handler bug")
		})
	})
	tok, err := n.sb.MintToken("olga", "Olga", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	auth := map[string]any{"token": tok}
	c, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if raw, err := c.Call(ctx, "join-room", "ops"); err != nil || !strings.HasPrefix(string(raw), `{"ok":true`) {
		t.Fatalf("join-room ack = %s, %v", raw, err)
	}
	msg := map[string]any{"roomId": "ops", "text": "hello", "clientId": "observability-1"}
	if raw, err := c.Call(ctx, "message", msg); err != nil || !strings.HasPrefix(string(raw), `{"ok":true`) {
		t.Fatalf("message ack = %s, %v", raw, err)
	}
	for { // the broadcast reached the room, so the server counted its emit
		ev, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the message broadcast: %v", err)
		}
		if ev.Name == "message" {
			break
		}
	}
	p, err := rawclient.Dial(ctx, n.url, "/socket.io/", "/observability", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if raw, err := p.Call(ctx, "crash", nil); err != nil || !strings.Contains(string(raw), `"internal"`) {
		t.Fatalf("crash ack = %s, %v", raw, err)
	}

	code, body := get(t, n.url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	samples, types = map[string]bool{}, map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				types[f[0]] = f[1]
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			samples[line[:i]] = true
		}
	}
	return samples, types
}

// trimAny removes the first of the suffixes that name ends with.
func trimAny(name string, suffixes ...string) string {
	for _, s := range suffixes {
		if base, ok := strings.CutSuffix(name, s); ok {
			return base
		}
	}
	return name
}

type expr struct{ where, expr string }

// alertExprs reads the expr of every rule of the alerts file: `expr: <query>` or a block
// scalar (`expr: |`) whose lines are indented deeper than the key.
func alertExprs(t *testing.T) []expr {
	t.Helper()
	f, err := os.Open(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []expr
	alert, block, indent := "", -1, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		depth := len(line) - len(strings.TrimLeft(line, " "))
		if block >= 0 {
			if trimmed == "" || depth > indent {
				out[block].expr += trimmed + "\n"
				continue
			}
			block = -1
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if name, ok := strings.CutPrefix(trimmed, "- alert:"); ok {
			alert = strings.TrimSpace(name)
		}
		if name, ok := strings.CutPrefix(trimmed, "- record:"); ok {
			alert = strings.TrimSpace(name)
		}
		q, ok := strings.CutPrefix(trimmed, "expr:")
		if !ok {
			continue
		}
		q = strings.TrimSpace(q)
		out = append(out, expr{where: alert})
		if strings.HasPrefix(q, "|") || strings.HasPrefix(q, ">") {
			block, indent = len(out)-1, depth
			continue
		}
		out[len(out)-1].expr = strings.Trim(q, `"'`)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no expr in %s", alertsFile)
	}
	for _, e := range out {
		if strings.TrimSpace(e.expr) == "" {
			t.Fatalf("%s: empty expr of %s", alertsFile, e.where)
		}
	}
	return out
}

// dashboardExprs reads the queries of the dashboard: every panel target's expr (rows'
// nested panels included) and the template variables' queries.
func dashboardExprs(t *testing.T) []expr {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []expr
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, expr{where: "panel " + p.Title + " " + tg.RefID, expr: tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	targets := len(out)
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			out = append(out, expr{where: "variable " + v.Name, expr: v.Definition})
		}
	}
	if targets == 0 {
		t.Fatalf("no panel targets in %s", dashboardFile)
	}
	return out
}

type dashPanel struct {
	Title   string      `json:"title"`
	Panels  []dashPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}
