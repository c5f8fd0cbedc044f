package adapter

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/sio"
)

// Publishing once per key (sio.OnceLink): the de-duplication entry and the
// publish are one Lua script, so that whatever happens to its answer the
// message was published if and only if the key holds it. A claim before the
// publish and a release after a failed one left two gaps: a release that
// could not reach Redis answered the retry "duplicate" for a message never
// delivered, and a publish whose answer was lost after Redis ran it was
// released and then delivered again by the retry.
//
// The key and its value are RedisDedupe's ("<prefix>:sb:dedupe:<key>", the
// JSON of the Accepted): nodes of either kind see each other's entries.

// onceScriptPublish: KEYS[1] the entry; ARGV value, ttl ms, channel, payload.
var onceScriptPublish = redis.NewScript(`
local old = redis.call('GET', KEYS[1])
if old then return {1, old} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local n = redis.call('PUBLISH', ARGV[3], ARGV[4])
if n == 0 then
  redis.call('DEL', KEYS[1])
  return {2, 0}
end
return {0, n}
`)

// errNoReceivers: a PUBLISH no server heard (not even this one, which
// delivers its own broadcasts when they come back: its subscription is down).
// The broadcast reached nobody, so it is refused, not acknowledged.
var errNoReceivers = errors.New("cluster: no server is subscribed (subscriptions down): broadcast delivered nowhere")

// onceScriptXAdd: KEYS[1] the entry, KEYS[2] the stream; ARGV value, ttl ms,
// maxlen, then the entry's fields and values.
var onceScriptXAdd = redis.NewScript(`
local old = redis.call('GET', KEYS[1])
if old then return {1, old} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return {0, id}
`)

func onceKey(prefix, key string) string {
	if prefix == "" {
		prefix = "socket.io"
	}
	return prefix + ":sb:dedupe:" + key
}

// onceReply reads {earlier, value | id | receivers}.
func onceReply(res []any, err error) (prev []byte, id string, _ error) {
	if err != nil {
		return nil, "", err
	}
	if len(res) != 2 {
		return nil, "", fmt.Errorf("unexpected publish-once reply %v", res)
	}
	earlier, _ := res[0].(int64)
	s, _ := res[1].(string)
	if n, ok := res[1].(int64); ok {
		s = strconv.FormatInt(n, 10) // PUBLISH's receivers
	}
	if earlier == 2 {
		return nil, "", errNoReceivers
	}
	if earlier == 1 {
		if s == "" {
			s = "{}" // an entry is never empty; a duplicate all the same
		}
		return []byte(s), "", nil
	}
	return nil, s, nil
}

func ttlMillis(o sio.Once) int64 { return max(o.TTL.Milliseconds(), 1) }

// PublishOnce implements sio.OnceLink on the pub/sub adapter.
func (l *redisLink) PublishOnce(p sio.Packet, opts sio.BroadcastOpts, once sio.Once) ([]byte, error) {
	if !l.r.healthy.Load() {
		return nil, errClusterDown
	}
	payload, err := l.encode(p, opts)
	if err != nil {
		return nil, err
	}
	channel := l.channel
	if len(opts.Rooms) == 1 {
		channel += opts.Rooms[0] + "#"
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	res, err := onceScriptPublish.Run(ctx, l.r.c, []string{onceKey(l.r.prefix, once.Key)},
		once.Value, ttlMillis(once), channel, payload).Slice()
	prev, n, err := onceReply(res, err)
	if errors.Is(err, errNoReceivers) {
		l.r.onError(err)
		return nil, err
	}
	if err != nil {
		l.r.healthy.Store(false)
		l.r.onError(err)
		return nil, err
	}
	if prev == nil {
		receivers, _ := strconv.ParseInt(n, 10, 64)
		l.r.reach.note(receivers)
	}
	return prev, nil
}

// PublishOnce implements sio.OnceLink on the streams adapter: the entry is
// XADDed by the script.
func (l *streamLink) PublishOnce(p sio.Packet, opts sio.BroadcastOpts, once sio.Once) ([]byte, error) {
	r := l.r
	if !r.healthy.Load() {
		return nil, errClusterDown
	}
	data, err := encodeStreamData(p, l.nsp, opts, "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	res, err := onceScriptXAdd.Run(ctx, r.c, []string{onceKey(r.stream, once.Key), r.stream},
		once.Value, ttlMillis(once), strconv.FormatInt(r.maxLen, 10),
		"uid", r.uid, "nsp", l.nsp, "type", "3", "data", data).Slice()
	prev, _, err := onceReply(res, err)
	if err != nil {
		r.healthy.Store(false)
		r.onError(err)
		return nil, err
	}
	return prev, nil
}
