package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/switchboard/switchboard/adapter"
	"github.com/switchboard/switchboard/internal/sio"
)

// stores is what ADAPTER selects: where presence, de-duplication and
// broadcasts between nodes live, and the loops that keep them.
type stores struct {
	cluster  sio.Cluster
	presence adapter.Presence
	dedupe   adapter.Dedupe
	// dedupeLen is the number of clientIds remembered here (-1: in Redis).
	dedupeLen func() int
	run       []func(ctx context.Context, s *Server)
	pools     []redisPool // for the pool metrics
}

// redisPool is one of the node's Redis clients, by role.
type redisPool struct {
	name string
	c    *redis.Client
}

// clusterLoop is a cluster with a receive loop and a health signal.
type clusterLoop interface {
	sio.Cluster
	Healthy() bool
	Run(context.Context)
}

// recoveryPoolSize is the streams adapter's connections for session
// restores: enough to keep Redis busy, few enough that a storm of them
// leaves the live path its own pool.
const recoveryPoolSize = 4

func (s *Server) stores() (stores, error) {
	switch s.cfg.Adapter {
	case "", "memory":
		d := adapter.NewMemoryDedupe()
		return stores{presence: adapter.NewMemoryPresence(), dedupe: d, dedupeLen: d.Len}, nil
	case "redis", "redis-streams":
	default:
		return stores{}, fmt.Errorf("ADAPTER=%q: want memory, redis or redis-streams", s.cfg.Adapter)
	}
	opt, err := redis.ParseURL(s.cfg.RedisURL)
	if err != nil {
		return stores{}, fmt.Errorf("REDIS_URL: %w", err)
	}
	// Fail fast while Redis is down: callers degrade to local delivery.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
	opt.MaxRetries = 1
	opt.ContextTimeoutEnabled = true
	rc := redis.NewClient(opt)
	clients := []*redis.Client{rc}
	pools := []redisPool{{"commands", rc}}
	decodeLog := &rateLog{log: s.log, every: time.Second} // undecodable input is not a Redis error
	onErr := func(err error) {
		if errors.Is(err, adapter.ErrUndecodable) {
			decodeLog.warn(err, "cluster input dropped")
			return
		}
		s.redisLog.warn(err, "redis")
	}

	var cluster clusterLoop
	if s.cfg.Adapter == "redis-streams" {
		ropt := *opt
		ropt.ReadTimeout = 5 * time.Second // above the XREAD block time
		reader := redis.NewClient(&ropt)
		// Restores read on their own few connections: a reconnect storm
		// waits there, not in the pool live publishes use.
		vopt := *opt
		vopt.PoolSize = recoveryPoolSize
		recovery := redis.NewClient(&vopt)
		clients = append(clients, reader, recovery)
		pools = append(pools, redisPool{"stream_reader", reader}, redisPool{"recovery", recovery})
		cluster = adapter.NewRedisStreamsCluster(rc, reader, adapter.StreamsOptions{
			Prefix: s.cfg.RedisPrefix, RecoveryWindow: s.cfg.RecoveryWindow, OnError: onErr, Recovery: recovery,
			TailBytes: s.cfg.RecoveryMaxBytes,
		})
	} else {
		cluster = adapter.NewRedisCluster(rc, s.cfg.RedisPrefix, onErr)
	}
	// Presence changes with every connect and disconnect: on their own
	// pool, a storm of them never delays the messages' claims and publishes.
	pc := redis.NewClient(opt)
	clients = append(clients, pc)
	pools = append(pools, redisPool{"presence", pc})
	presence := adapter.NewRedisPresence(pc, adapter.RedisPresenceOptions{
		Prefix: s.cfg.RedisPrefix, NodeID: s.cfg.NodeID, OnError: onErr,
	})
	s.live.nodes = presence.Nodes // the live panel's cluster view (live.go)
	s.ready = func() error {
		if !cluster.Healthy() || !presence.Healthy() {
			return errors.New("redis unreachable")
		}
		return nil
	}
	return stores{
		cluster:   cluster,
		presence:  presence,
		dedupe:    adapter.NewRedisDedupe(rc, s.cfg.RedisPrefix, onErr),
		dedupeLen: func() int { return -1 },
		pools:     pools,
		run: []func(context.Context, *Server){
			func(ctx context.Context, _ *Server) { cluster.Run(ctx) },
			func(ctx context.Context, s *Server) { presence.Run(ctx, s.userGone) },
			func(ctx context.Context, _ *Server) {
				<-ctx.Done()
				for _, c := range clients {
					_ = c.Close()
				}
			},
		},
	}, nil
}

// rateLog logs repeated errors at most once per period, with a count of
// what it held back, so an outage cannot flood the logs.
type rateLog struct {
	log        zerolog.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
	count      func() // counts every error, logged or not
}

func (r *rateLog) warn(err error, what string) {
	if r.count != nil {
		r.count()
	}
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < r.every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	r.log.Warn().Err(err).Int("suppressed", n).Msg(what + " error")
}
