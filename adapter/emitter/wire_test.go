package emitter_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/adapter/emitter"
	"github.com/switchboard/switchboard/internal/redistest"
)

// wireCase is one call made both on Node's emitter (js, a function body
// with e the Emitter) and on the Go emitter (run): each publishes one
// message, which must be the same bytes on the same channel.
type wireCase struct {
	name string
	js   string
	run  func(ctx context.Context, e *emitter.Emitter) error
}

type message struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

type payload struct {
	Text string `json:"text"`
	User struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	} `json:"user"`
	Tags  []string `json:"tags"`
	N     int64    `json:"n"`
	Ratio float64  `json:"ratio"`
	Big   uint64
	Skip  string   `json:"-"`
	Inner *message `json:"inner"`
	None  *message `json:"none"`
}

func wireCases() []wireCase {
	rep := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	keys16 := map[string]any{}
	var js16 []string
	for i := range 16 {
		k := fmt.Sprintf("k%02d", i)
		keys16[k] = i
		js16 = append(js16, fmt.Sprintf("%s: %d", k, i))
	}
	ones := make([]any, 70000)
	for i := range ones {
		ones[i] = 1
	}
	p := payload{Text: "hi", Tags: []string{"x", "y"}, N: 3, Ratio: 2, Big: 1 << 60, Skip: "no",
		Inner: &message{ID: "m1", Text: "<b>&</b>"}}
	p.User.ID = "u1"
	ms := time.UnixMilli
	return []wireCase{
		{"integers", `e.emit("hello", "world", 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32-1, 2**32, 2**53, 2**63,
			-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31)-1, -(2**53), -(2**63), -0, true, false, null)`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Emit(ctx, "hello", "world", 0, int8(1), uint8(127), 128, uint16(255), 256, 65535, int32(65536),
					uint32(math.MaxUint32), int64(1<<32), uint64(1<<53), float64(1<<63),
					-1, -32, int16(-33), -128, -129, -32768, -32769, int32(math.MinInt32), int64(math.MinInt32)-1,
					int64(-(1 << 53)), int64(math.MinInt64), math.Copysign(0, -1), true, false, nil)
			}},
		// (Integral doubles of 2^64 and more, or below -2^63, are not
		// compared: notepack.io writes them as wrapped 64-bit integers, this
		// package as float 64; see TestHugeIntegralDoubles.)
		{"floats", `e.emit("f", 0.1, Math.fround(0.1), 1.5, 2.0, -1e-7, 123456789.125, 2**64 - 2**11, Number.MIN_VALUE,
			NaN, Infinity, -Infinity)`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Emit(ctx, "f", 0.1, float32(0.1), float32(1.5), 2.0, -1e-7, 123456789.125, float64(1<<64-1<<11),
					math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1))
			}},
		{"strings", `e.emit("s", "", "é", "😀 ok", "a".repeat(31), "b".repeat(32), "c".repeat(255), "d".repeat(256),
			"e".repeat(65535), "f".repeat(65536), "\u0000\n\"\\")`,
			func(ctx context.Context, e *emitter.Emitter) error {
				r := strings.Repeat
				return e.Emit(ctx, "s", "", "é", "😀 ok", r("a", 31), r("b", 32), r("c", 255), r("d", 256),
					r("e", 65535), r("f", 65536), "\x00\n\"\\")
			}},
		{"binary", `e.emit("bin", Buffer.from([0, 1, 2, 255]), Buffer.alloc(0), Buffer.alloc(300, 7),
			{file: Buffer.alloc(70000, 1)}, [new Uint8Array([9, 8])])`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Emit(ctx, "bin", []byte{0, 1, 2, 255}, []byte(nil), rep(7, 300),
					map[string]any{"file": rep(1, 70000)}, []any{[]byte{9, 8}})
			}},
		{"arrays", `e.emit("a", [], [1, [2, [3, []]]], Array.from({length: 15}, (_, i) => i),
			Array.from({length: 16}, (_, i) => i), Array.from({length: 70000}, () => 1))`,
			func(ctx context.Context, e *emitter.Emitter) error {
				seq := func(n int) []int {
					s := make([]int, n)
					for i := range s {
						s[i] = i
					}
					return s
				}
				return e.Emit(ctx, "a", []any{}, []any{1, []any{2, []any{3, []any{}}}}, seq(15), seq(16), ones)
			}},
		{"objects", `e.emit("o", {}, {a: 1, b: {c: [true, null]}}, {` + strings.Join(js16, ", ") + `},
			{b: 1, "10": 2, a: 3, "2": 4}, {"02": 5, a: 3, b: 1, "10": 2, "2": 4})`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Emit(ctx, "o", map[string]any{}, map[string]any{"b": map[string]any{"c": []any{true, nil}}, "a": 1},
					keys16, json.RawMessage(`{"b":1,"10":2,"a":3,"2":4}`),
					map[string]any{"b": 1, "10": 2, "a": 3, "2": 4, "02": 5})
			}},
		{"structs", `e.emit("st", {text: "hi", user: {id: "u1"}, tags: ["x", "y"], n: 3, ratio: 2, Big: 2**60,
			inner: {id: "m1", text: "<b>&</b>"}, none: null}, {id: "m2", text: ""}, ["x", "y"], {a: 1, b: 2}, null)`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Emit(ctx, "st", p, &message{ID: "m2"}, []string{"x", "y"}, map[string]int{"b": 2, "a": 1}, (*message)(nil))
			}},
		{"dates", `e.emit("d", new Date(0), new Date(1700000000000), new Date(1700000000123), new Date(-1),
			new Date(2**34 * 1000), new Date((2**34 - 1) * 1000), new Date((2**32) * 1000))`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Emit(ctx, "d", ms(0), ms(1700000000000), ms(1700000000123), ms(-1),
					ms(1<<34*1000), ms((1<<34-1)*1000), ms(1<<32*1000))
			}},
		{"one room", `e.to("lobby").emit("news", "x")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.To("lobby").Emit(ctx, "news", "x") }},
		{"one room twice", `e.to("r").in(["r"]).emit("m")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.To("r").In("r").Emit(ctx, "m") }},
		{"rooms and except", `e.to("a").to(["b", "a"]).in("c").except("x").except(["y", "x"]).emit("m", 1)`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.To("a").To("b", "a").In("c").Except("x").Except("y", "x").Emit(ctx, "m", 1)
			}},
		{"except only", `e.except("user:bob").emit("m")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.Except("user:bob").Emit(ctx, "m") }},
		{"in", `e.in(["r1", "r2"]).emit("m")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.In("r1", "r2").Emit(ctx, "m") }},
		{"volatile", `e.volatile.emit("v")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.Volatile().Emit(ctx, "v") }},
		{"compress false", `e.compress(false).emit("c")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.Compress(false).Emit(ctx, "c") }},
		{"flags in first-set order", `e.compress(true).volatile.compress(false).to("r").volatile.emit("cv")`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Compress(true).Volatile().Compress(false).To("r").Volatile().Emit(ctx, "cv")
			}},
		{"flags after rooms", `e.to("r1").except("r2").volatile.compress(true).emit("x")`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.To("r1").Except("r2").Volatile().Compress(true).Emit(ctx, "x")
			}},
		{"of", `e.of("admin").emit("a", 1)`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.Of("admin").Emit(ctx, "a", 1) }},
		{"of with slash, room", `e.of("/chat").to("general").emit("a")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.Of("/chat").To("general").Emit(ctx, "a") }},
		{"of empty", `e.of("").emit("root")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.Of("").Emit(ctx, "root") }},
		{"socketsJoin", `e.socketsJoin("vip")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.SocketsJoin(ctx, "vip") }},
		{"socketsJoin rooms", `e.socketsJoin(["a", "b"])`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.SocketsJoin(ctx, "a", "b") }},
		{"socketsJoin none", `e.socketsJoin([])`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.SocketsJoin(ctx) }},
		{"socketsJoin selected", `e.in("lobby").except("x").socketsJoin(["a", "é\"<>&\u2028\t"])`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.In("lobby").Except("x").SocketsJoin(ctx, "a", "é\"<>&\u2028\t")
			}},
		{"socketsLeave", `e.to(["r1", "r2"]).socketsLeave("r1")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.To("r1", "r2").SocketsLeave(ctx, "r1") }},
		{"socketsLeave of", `e.of("/chat").socketsLeave(["general"])`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.Of("/chat").SocketsLeave(ctx, "general") }},
		{"disconnectSockets", `e.disconnectSockets()`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.DisconnectSockets(ctx, false) }},
		{"disconnectSockets close", `e.disconnectSockets(true)`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.DisconnectSockets(ctx, true) }},
		{"disconnectSockets selected", `e.in("user:bob").except("sid1").volatile.disconnectSockets(false)`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.In("user:bob").Except("sid1").Volatile().DisconnectSockets(ctx, false)
			}},
		{"serverSideEmit", `e.serverSideEmit("reload")`,
			func(ctx context.Context, e *emitter.Emitter) error { return e.ServerSideEmit(ctx, "reload") }},
		{"serverSideEmit values", `e.serverSideEmit("cfg", "a\"\\\n\t\b\f\r\u0001\u001f\u007f\u2028\u2029<>&é😀", 1, -2.5, 1e21, 1e-7,
			0.1, -0, NaN, Infinity, null, true, [1, [2]], {b: 1, a: [null], "3": "x"}, Buffer.from([1, 2, 255]),
			new Date(1700000000123), new Date(-62198755200000), new Date(253402300800000), new Date(-62167219200000), 2**53)`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.ServerSideEmit(ctx, "cfg", "a\"\\\n\t\b\f\r\x01\x1f\x7f\u2028\u2029<>&é😀", 1, -2.5, 1e21, 1e-7,
					0.1, math.Copysign(0, -1), math.NaN(), math.Inf(1), nil, true, []any{1, []any{2}},
					json.RawMessage(`{"b":1,"a":[null],"3":"x"}`), []byte{1, 2, 255},
					ms(1700000000123), ms(-62198755200000), ms(253402300800000), ms(-62167219200000), int64(1<<53))
			}},
		{"serverSideEmit struct", `e.of("/admin").serverSideEmit("x", {id: "m1", text: "<b>&</b>"}, {k: "v"})`,
			func(ctx context.Context, e *emitter.Emitter) error {
				return e.Of("/admin").ServerSideEmit(ctx, "x", message{ID: "m1", Text: "<b>&</b>"}, map[string]string{"k": "v"})
			}},
	}
}

// TestWireMatchesNodeEmitter runs every case on Node's
// @socket.io/redis-emitter 5.1 and on this package, both publishing to a
// real Redis, and compares what Redis delivered: channel and payload, byte
// for byte.
func TestWireMatchesNodeEmitter(t *testing.T) {
	node, modules := nodeAndModules(t, "@socket.io/redis-emitter", "redis")
	r := redistest.Start(t)
	const prefix = "wire"
	msgs := capture(t, r.Client(t), prefix)
	cases := wireCases()

	// Node first: every case, in order, on one connection.
	var spec []map[string]string
	for _, c := range cases {
		spec = append(spec, map[string]string{"name": c.name, "js": c.js})
	}
	specFile := filepath.Join(t.TempDir(), "cases.json")
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(specFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/node-emitter.cjs", specFile)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "REDIS_URL="+r.URL, "PREFIX="+prefix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node-emitter.cjs: %v\n%s%s", err, out, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Scan()
	var head struct{ Reserved []string }
	if err := json.Unmarshal(sc.Bytes(), &head); err != nil || !slices.Equal(head.Reserved, emitter.ReservedEvents) {
		t.Errorf("Node's RESERVED_EVENTS %q, ReservedEvents %q", head.Reserved, emitter.ReservedEvents)
	}
	for _, c := range cases {
		sc.Scan()
		var line struct{ Name, Error string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Name != c.name || line.Error != "" {
			t.Fatalf("node, case %q: %s", c.name, sc.Bytes())
		}
	}
	fromNode := make([]string, len(cases))
	nodeChannels := make([]string, len(cases))
	for i, c := range cases {
		m := nextMessage(t, msgs, "node, "+c.name)
		nodeChannels[i], fromNode[i] = m.Channel, m.Payload
	}

	// Then Go, the same cases in the same order.
	e := emitter.New(r.Client(t), emitter.Options{Prefix: prefix})
	for i, c := range cases {
		if err := c.run(ctx, e); err != nil {
			t.Fatalf("go, case %q: %v", c.name, err)
		}
		m := nextMessage(t, msgs, "go, "+c.name)
		if m.Channel != nodeChannels[i] {
			t.Errorf("%s: channel %q, Node's %q", c.name, m.Channel, nodeChannels[i])
		}
		if m.Payload != fromNode[i] {
			t.Errorf("%s: payload differs from Node's\n go:   %s\n node: %s", c.name, show(m.Payload), show(fromNode[i]))
		}
	}
	noMessage(t, msgs, 100*time.Millisecond)
}

// show is a payload for a failure message: JSON as text, msgpack as hex
// (the first 400 bytes).
func show(p string) string {
	if strings.HasPrefix(p, "{") {
		return p
	}
	h := hex.EncodeToString([]byte(p))
	if len(h) > 800 {
		h = h[:800] + fmt.Sprintf("... (%d bytes)", len(p))
	}
	return h
}
