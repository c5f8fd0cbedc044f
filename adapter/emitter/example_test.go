package emitter_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/adapter/emitter"
)

// A Go backend publishes to the sockets of a cluster (Switchboard nodes with
// ADAPTER=redis and REDIS_PREFIX=socket.io, Node servers with the redis
// adapter) without running a server. (Not run by go test: it needs a Redis
// with servers on it; TestSwitchboardNode and TestNodeServer run the same
// calls.)
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	io := emitter.New(rdb, emitter.Options{}) // prefix "socket.io", namespace "/"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// io.to("lobby").except("user:bob").emit("announcement", {text: "..."})
	if err := io.To("lobby").Except("user:bob").Emit(ctx, "announcement", map[string]any{"text": "maintenance at 10"}); err != nil {
		log.Print(err) // e.g. emitter: emit "announcement": publish to socket.io#/#lobby#: dial tcp ...: connection refused
	}
	// Binary: the clients get a binary attachment.
	_ = io.Emit(ctx, "avatar", map[string]any{"user": "alice", "png": []byte{0x89, 'P', 'N', 'G'}})
	// Another namespace; every tab of a user (the contract's user:<id> room).
	admin := io.Of("/admin")
	_ = admin.In("user:alice").Emit(ctx, "notice", "your export is ready")
	// Rooms and connections.
	_ = io.In("user:alice").SocketsJoin(ctx, "beta-testers")
	_ = io.In("beta-testers").SocketsLeave(ctx, "beta-testers")
	_ = io.In("user:mallory").DisconnectSockets(ctx, true)
	// To the servers' OnServerSideEmit handlers (Node: io.on("reload", ...)).
	_ = io.ServerSideEmit(ctx, "reload", "config")
}

// Flags, as Node's emitter.volatile and emitter.compress(false).
func ExampleBroadcastOperator_Volatile() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	io := emitter.New(rdb, emitter.Options{Prefix: "sb", Namespace: "/live"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Positions: a socket that is not ready for it misses it, uncompressed.
	_ = io.To("map").Volatile().Compress(false).Emit(ctx, "position", 48.85, 2.35)
}
