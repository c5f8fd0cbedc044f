package emitter_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboard/switchboard/adapter/emitter"
	"github.com/switchboard/switchboard/internal/redistest"
)

func TestReservedEventsRefused(t *testing.T) {
	r := redistest.Start(t)
	msgs := capture(t, r.Client(t), "socket.io")
	e := emitter.New(r.Client(t), emitter.Options{})
	ctx := testContext(t, 5*time.Second)
	for _, name := range emitter.ReservedEvents {
		for what, err := range map[string]error{
			"Emit":           e.Emit(ctx, name, 1),
			"To.Emit":        e.To("r").Emit(ctx, name),
			"ServerSideEmit": e.ServerSideEmit(ctx, name),
		} {
			if !errors.Is(err, emitter.ErrReservedEvent) || !strings.Contains(err.Error(), `"`+name+`"`) {
				t.Errorf("%s(%q) = %v, want ErrReservedEvent", what, name, err)
			}
		}
	}
	if err := e.Emit(ctx, "connection"); err != nil { // not reserved (a server-side name only)
		t.Fatal(err)
	}
	if m := nextMessage(t, msgs, "connection"); m.Channel != "socket.io#/#" {
		t.Fatalf("published on %s", m.Channel)
	}
	noMessage(t, msgs, 100*time.Millisecond)
}

// The zero Options are Node's defaults; Options.Namespace is Of's.
func TestOptionsAndChannels(t *testing.T) {
	r := redistest.Start(t)
	msgs := capture(t, r.Client(t), "")
	ctx := testContext(t, 5*time.Second)
	def := emitter.New(r.Client(t), emitter.Options{})
	chat := emitter.New(r.Client(t), emitter.Options{Prefix: "p", Namespace: "chat"})
	if def.Namespace() != "/" || chat.Namespace() != "/chat" || def.Of("x").Namespace() != "/x" || chat.Of("/y").Namespace() != "/y" {
		t.Fatalf("namespaces %q %q %q %q", def.Namespace(), chat.Namespace(), def.Of("x").Namespace(), chat.Of("/y").Namespace())
	}
	for _, c := range []struct {
		run     func() error
		channel string
	}{
		{func() error { return def.Emit(ctx, "a") }, "socket.io#/#"},
		{func() error { return def.To("r").Emit(ctx, "a") }, "socket.io#/#r#"},
		{func() error { return def.To("r", "s").Emit(ctx, "a") }, "socket.io#/#"},
		{func() error { return chat.Emit(ctx, "a") }, "p#/chat#"},
		{func() error { return chat.Of("/y").In("r").Emit(ctx, "a") }, "p#/y#r#"},
		{func() error { return chat.SocketsJoin(ctx, "r") }, "p-request#/chat#"},
		{func() error { return chat.To("r").DisconnectSockets(ctx, true) }, "p-request#/chat#"},
		{func() error { return chat.ServerSideEmit(ctx, "a") }, "p-request#/chat#"},
	} {
		must(t, c.run())
		if m := nextMessage(t, msgs, c.channel); m.Channel != c.channel {
			t.Errorf("published on %s, want %s", m.Channel, c.channel)
		}
	}
}

// Operators are values: deriving one leaves the original as it was.
func TestOperatorsAreValues(t *testing.T) {
	r := redistest.Start(t)
	msgs := capture(t, r.Client(t), "socket.io")
	e := emitter.New(r.Client(t), emitter.Options{})
	ctx := testContext(t, 5*time.Second)
	base := e.To("a")
	wider := base.To("b")
	_ = base.Except("x")
	_ = base.Volatile()
	_ = wider.Compress(true)
	for _, c := range []struct {
		op   emitter.BroadcastOperator
		want map[string]any
	}{
		{base, map[string]any{"rooms": []any{"a"}, "flags": map[string]any{}, "except": []any{}}},
		{wider, map[string]any{"rooms": []any{"a", "b"}, "flags": map[string]any{}, "except": []any{}}},
		{wider.Volatile().Except("x"), map[string]any{"rooms": []any{"a", "b"}, "flags": map[string]any{"volatile": true}, "except": []any{"x"}}},
	} {
		must(t, c.op.Emit(ctx, "m"))
		var msg []any
		if err := msgpack.Unmarshal([]byte(nextMessage(t, msgs, "emit").Payload), &msg); err != nil {
			t.Fatal(err)
		}
		if got, want := jsonOf(t, msg[2]), jsonOf(t, c.want); got != want {
			t.Errorf("opts %s, want %s", got, want)
		}
	}
	var zero emitter.BroadcastOperator
	if err := zero.Emit(ctx, "m"); err == nil {
		t.Error("the zero BroadcastOperator emitted")
	}
	noMessage(t, msgs, 100*time.Millisecond)
}

// Integral doubles out of the 64-bit integers' range are float 64 here;
// notepack.io writes them as wrapped integers (1e21 arrives as
// 3875820019684212736), so they are left out of the byte comparison.
func TestHugeIntegralDoubles(t *testing.T) {
	r := redistest.Start(t)
	msgs := capture(t, r.Client(t), "socket.io")
	e := emitter.New(r.Client(t), emitter.Options{})
	ctx := testContext(t, 5*time.Second)
	values := []any{1e21, -1e21, math.MaxFloat64, float64(1 << 64), -float64(1<<63) - 4096, float64(1 << 63), -float64(1 << 63)}
	must(t, e.Emit(ctx, "h", values...))
	var msg []any
	dec := msgpack.NewDecoder(strings.NewReader(nextMessage(t, msgs, "emit").Payload))
	dec.UseLooseInterfaceDecoding(true)
	if err := dec.Decode(&msg); err != nil {
		t.Fatal(err)
	}
	data := msg[1].(map[string]any)["data"].([]any)[1:]
	for i, v := range data {
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
		case uint64:
			f = float64(x)
		}
		if f != values[i] {
			t.Errorf("value %d: %v (%T), want %v", i, v, v, values[i])
		}
	}
}

func TestErrors(t *testing.T) {
	r := redistest.Start(t)
	msgs := capture(t, r.Client(t), "socket.io")
	e := emitter.New(r.Client(t), emitter.Options{})
	ctx := testContext(t, 5*time.Second)

	if err := e.Emit(ctx, "x", 1, make(chan int)); err == nil || !strings.Contains(err.Error(), `emitter: emit "x": argument 2:`) {
		t.Errorf("unencodable argument: %v", err)
	}
	loop := []any{nil}
	loop[0] = loop
	if err := e.ServerSideEmit(ctx, "x", loop); err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Errorf("a value that contains itself: %v", err)
	}
	if err := e.Emit(ctx, "x", []byte(`{`)); err != nil { // binary, not JSON
		t.Errorf("[]byte: %v", err)
	}
	nextMessage(t, msgs, "binary")
	noMessage(t, msgs, 100*time.Millisecond)

	// Redis gone: the error says what was being published, and where.
	down := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	r.Stop()
	defer down.Close()
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := emitter.New(down, emitter.Options{}).To("lobby").Emit(short, "news", "x")
	if err == nil || !strings.HasPrefix(err.Error(), `emitter: emit "news": publish to socket.io#/#lobby#: `) {
		t.Errorf("Redis down: %v", err)
	}
	err = emitter.New(down, emitter.Options{}).SocketsJoin(short, "r")
	if err == nil || !strings.HasPrefix(err.Error(), `emitter: sockets join: publish to socket.io-request#/#: `) {
		t.Errorf("Redis down: %v", err)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
