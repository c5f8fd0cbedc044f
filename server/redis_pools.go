package server

import "github.com/prometheus/client_golang/prometheus"

// poolCollector exports the connection pools of the node's Redis clients,
// one per role (commands, presence, recovery, stream_reader): a pool whose
// waits climb is the first sign that one kind of work is starving another.
type poolCollector []redisPool

var (
	poolConns = prometheus.NewDesc("switchboard_redis_pool_connections",
		"Connections open in the Redis client's pool.", []string{"pool"}, nil)
	poolWaits = prometheus.NewDesc("switchboard_redis_pool_waits_total",
		"Commands that waited for a free connection of the pool.", []string{"pool"}, nil)
	poolWaitSeconds = prometheus.NewDesc("switchboard_redis_pool_wait_seconds_total",
		"Time commands spent waiting for a free connection of the pool.", []string{"pool"}, nil)
	poolTimeouts = prometheus.NewDesc("switchboard_redis_pool_timeouts_total",
		"Commands that gave up waiting for a connection of the pool.", []string{"pool"}, nil)
)

func (p poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConns
	ch <- poolWaits
	ch <- poolWaitSeconds
	ch <- poolTimeouts
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, rp := range p {
		st := rp.c.PoolStats()
		ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.TotalConns), rp.name)
		ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(st.WaitCount), rp.name)
		ch <- prometheus.MustNewConstMetric(poolWaitSeconds, prometheus.CounterValue, float64(st.WaitDurationNs)/1e9, rp.name)
		ch <- prometheus.MustNewConstMetric(poolTimeouts, prometheus.CounterValue, float64(st.Timeouts), rp.name)
	}
}
