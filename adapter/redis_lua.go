package adapter

import "github.com/redis/go-redis/v9"

// Lua scripts behind RedisPresence. Every script takes the key prefix
// ("<Prefix>:sb:") as ARGV[1] and derives its key names from it with the
// helpers below, which are the only place key names are spelled out (see the
// data model at the top of redis_presence.go). Scripts touch keys derived at
// run time (a dead node's entries name the rooms to clean up), so they need a
// single Redis (standalone, or a Sentinel-managed primary), not Redis Cluster.

const redisLuaPrelude = `
local P = ARGV[1]
-- enc/dec: binary-safe length-prefixed tuples ("4:room5:alice...").
local function enc(...)
  local t = {}
  for i = 1, select('#', ...) do
    local s = select(i, ...)
    t[#t + 1] = #s .. ':' .. s
  end
  return table.concat(t)
end
local function dec(s)
  local out, i = {}, 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    if not c then break end
    local n = tonumber(string.sub(s, i, c - 1))
    if not n then break end
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + 1 + n
  end
  return out
end
local function k_nodes() return P .. 'nodes' end
local function k_alive(n) return P .. 'node:' .. n .. ':alive' end
local function k_synced(n) return P .. 'node:' .. n .. ':synced' end
local function k_entries(n) return P .. 'node:' .. n .. ':entries' end
local function k_rconns(r) return P .. 'room:' .. r .. ':conns' end
local function k_rusers(r) return P .. 'room:' .. r .. ':users' end
local function k_rnames(r) return P .. 'room:' .. r .. ':names' end
local function k_uconns(u) return P .. 'user:' .. u .. ':conns' end

-- register makes sure a node that writes entries can be found (and reaped)
-- and is not taken for dead before its first heartbeat.
local function register(node, ttl)
  redis.call('SADD', k_nodes(), node)
  redis.call('SET', k_alive(node), node, 'PX', ttl, 'NX')
end

-- room_leave removes connection conn of user from room. owner, when given,
-- restricts it to entries registered by that node. Returns nil when there was
-- no such entry, false when the user still has connections in the room, and
-- the user's name when it was the user's last one.
local function room_leave(room, user, conn, owner)
  local f = enc(user, conn)
  local node = redis.call('HGET', k_rconns(room), f)
  if not node or (owner and node ~= owner) then return nil end
  redis.call('HDEL', k_rconns(room), f)
  redis.call('SREM', k_entries(node), enc('r', room, user, conn))
  if redis.call('HINCRBY', k_rusers(room), user, -1) > 0 then return false end
  local name = redis.call('HGET', k_rnames(room), user) or ''
  redis.call('HDEL', k_rusers(room), user)
  redis.call('HDEL', k_rnames(room), user)
  return name
end

-- conn_remove forgets connection conn of user (restricted to owner if given).
local function conn_remove(user, conn, owner)
  local node = redis.call('HGET', k_uconns(user), conn)
  if not node or (owner and node ~= owner) then return 0 end
  redis.call('HDEL', k_uconns(user), conn)
  redis.call('SREM', k_entries(node), enc('c', user, conn))
  return 1
end
`

func newRedisScript(body string) *redis.Script { return redis.NewScript(redisLuaPrelude + body) }

// ARGV: prefix, room, user, name, conn, node, ttl(ms) -> 1 if first.
var redisJoinScript = newRedisScript(`
local room, user, name, conn, node, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
redis.call('HSET', k_rnames(room), user, name)
if redis.call('HSETNX', k_rconns(room), enc(user, conn), node) == 0 then return 0 end
redis.call('SADD', k_entries(node), enc('r', room, user, conn))
register(node, ttl)
if redis.call('HINCRBY', k_rusers(room), user, 1) == 1 then return 1 end
return 0
`)

// ARGV: prefix, room, user, conn -> {last (0|1), name}.
var redisLeaveScript = newRedisScript(`
local name = room_leave(ARGV[2], ARGV[3], ARGV[4], nil)
if name then return {1, name} end
return {0, ''}
`)

// ARGV: prefix, room -> flat {user, connections, name, ...}.
var redisMembersScript = newRedisScript(`
local room = ARGV[2]
local users = redis.call('HGETALL', k_rusers(room))
local out = {}
for i = 1, #users, 2 do
  out[#out + 1] = users[i]
  out[#out + 1] = users[i + 1]
  out[#out + 1] = redis.call('HGET', k_rnames(room), users[i]) or ''
end
return out
`)

// ARGV: prefix, user, conn, limit (<= 0: none), node, ttl(ms) -> 1 if counted.
var redisAddConnScript = newRedisScript(`
local user, conn, limit, node, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local k = k_uconns(user)
if redis.call('HEXISTS', k, conn) == 1 then return 1 end
if limit > 0 and redis.call('HLEN', k) >= limit then return 0 end
redis.call('HSET', k, conn, node)
redis.call('SADD', k_entries(node), enc('c', user, conn))
register(node, ttl)
return 1
`)

// ARGV: prefix, user, conn -> 1 if it was counted.
var redisRemoveConnScript = newRedisScript(`
return conn_remove(ARGV[2], ARGV[3], nil)
`)

// ARGV: prefix, node, ttl(ms), token -> 1 when Redis holds this node's
// complete state ("synced" = "ok"); otherwise marks a resync as pending under
// token and returns 0.
var redisHeartbeatScript = newRedisScript(`
local node, ttl, tok = ARGV[2], ARGV[3], ARGV[4]
redis.call('SET', k_alive(node), node, 'PX', ttl)
redis.call('SADD', k_nodes(), node)
if redis.call('GET', k_synced(node)) == 'ok' then return 1 end
redis.call('SET', k_synced(node), 'pending:' .. tok)
return 0
`)

// ARGV: prefix, node, token -> 1 when the pending resync under token is now
// complete (nothing reaped or lost since it started).
var redisSyncedScript = newRedisScript(`
local node, tok = ARGV[2], ARGV[3]
if redis.call('GET', k_synced(node)) ~= 'pending:' .. tok then return 0 end
redis.call('SET', k_synced(node), 'ok')
return 1
`)

// ARGV: prefix -> registered nodes whose heartbeat key is gone.
var redisDeadNodesScript = newRedisScript(`
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', k_nodes())) do
  if redis.call('EXISTS', k_alive(n)) == 0 then out[#out + 1] = n end
end
return out
`)

// ARGV: prefix -> registered nodes whose heartbeat key is alive (the live
// panel's list of nodes).
var redisLiveNodesScript = newRedisScript(`
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', k_nodes())) do
  if redis.call('EXISTS', k_alive(n)) == 1 then out[#out + 1] = n end
end
return out
`)

// ARGV: prefix, node, batch -> {more (0|1), room, user, name, ...}: undoes up
// to batch entries of a dead node, popping each from the node's set so that
// concurrent reapers process every entry exactly once. Returns the (room,
// user) pairs whose last connection went. Stops (more = 0, nothing done) if
// the node is alive again.
var redisReapScript = newRedisScript(`
local node, batch = ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', k_alive(node)) == 1 then return {0} end
redis.call('DEL', k_synced(node))
local out = {0}
for _, it in ipairs(redis.call('SPOP', k_entries(node), batch)) do
  local d = dec(it)
  if d[1] == 'r' then
    local name = room_leave(d[2], d[3], d[4], node)
    if name then
      out[#out + 1] = d[2]
      out[#out + 1] = d[3]
      out[#out + 1] = name
    end
  elseif d[1] == 'c' then
    conn_remove(d[2], d[3], node)
  end
end
if redis.call('SCARD', k_entries(node)) == 0 then
  redis.call('SREM', k_nodes(), node)
else
  out[1] = 1
end
return out
`)

// Used by RedisDedupe (no prelude). KEYS[1] = dedupe key; ARGV: value,
// ttl(ms) -> {earlier (0|1), value that holds}.
var redisClaimScript = redis.NewScript(`
local old = redis.call('GET', KEYS[1])
if old then return {1, old} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {0, ARGV[1]}
`)
