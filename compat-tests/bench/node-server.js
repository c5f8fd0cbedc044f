// Reference server for `make bench`: Node socket.io 4.8 serving the same
// contract events as Switchboard's namespace "/" (docs/CONTRACT.md) with the
// same behaviour on the benchmarked paths, so that both servers do the same
// work: JWT (HS256/384/512) verified on connect with node:crypto, per-node
// and per-user connection limits, the per-socket rate limit, `user:<sub>`
// rooms, join-room/leave-room/presence with members, message broadcast to
// the room (sender included) with an {ok,id,ts} ack and clientId dedupe,
// user-joined/user-left, and connection state recovery.
//
// Same environment conventions as Switchboard: ADDR (default :3000),
// JWT_SECRET, JWT_LEEWAY, AUTH_REQUIRE_EXP, RATE_LIMIT (0 disables),
// RATE_BURST, MAX_CONNECTIONS and MAX_CONNECTIONS_PER_USER (0: no limit),
// MAX_ROOMS_PER_SOCKET, MESSAGE_MAX_BYTES, DEDUPE_WINDOW, RECOVERY_WINDOW
// (0 disables), PING_INTERVAL, PING_TIMEOUT, MAX_PAYLOAD, SOCKETIO_PATH,
// NODE_ID, LOG_LEVEL. REDIS_URL (unset by default): when set, the server
// uses @socket.io/redis-adapter on that Redis (key prefix "socket.io", as
// Switchboard's ADAPTER=redis), so that several of these form a Node-only
// cluster (compat-tests/cluster/parity.test.js). Presence stays per node.
//
//   JWT_SECRET=s ADDR=127.0.0.1:3001 node compat-tests/bench/node-server.js
import { createServer } from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Server } from 'socket.io';

const env = (k, d) => (process.env[k] !== undefined && process.env[k] !== '' ? process.env[k] : d);

// Go-style durations: 300ms, 30s, 2m, 1h, 1h30m; "0" is zero.
function duration(s) {
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  const unit = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  let ms = 0;
  let matched = '';
  for (const m of s.matchAll(re)) {
    ms += parseFloat(m[1]) * unit[m[2]];
    matched += m[0];
  }
  if (matched !== s) throw new Error(`bad duration ${JSON.stringify(s)}`);
  return ms;
}
const bool = (s) => ['1', 'true', 't', 'TRUE', 'True'].includes(s);

const cfg = {
  addr: env('ADDR', ':3000'),
  path: env('SOCKETIO_PATH', '/socket.io/'),
  secret: env('JWT_SECRET', ''),
  leewayS: duration(env('JWT_LEEWAY', '30s')) / 1000,
  requireExp: bool(env('AUTH_REQUIRE_EXP', '1')),
  rateLimit: parseFloat(env('RATE_LIMIT', '20')),
  rateBurst: parseInt(env('RATE_BURST', '0'), 10),
  maxConns: parseInt(env('MAX_CONNECTIONS', '10000'), 10),
  maxConnsPerUser: parseInt(env('MAX_CONNECTIONS_PER_USER', '20'), 10),
  maxRooms: parseInt(env('MAX_ROOMS_PER_SOCKET', '50'), 10),
  messageMax: parseInt(env('MESSAGE_MAX_BYTES', '4096'), 10),
  dedupeMs: duration(env('DEDUPE_WINDOW', '5m')),
  recoveryMs: duration(env('RECOVERY_WINDOW', '2m')),
  pingInterval: duration(env('PING_INTERVAL', '25s')),
  pingTimeout: duration(env('PING_TIMEOUT', '20s')),
  maxPayload: parseInt(env('MAX_PAYLOAD', '1000000'), 10),
  nodeId: env('NODE_ID', randomBytes(4).toString('hex')),
  logLevel: env('LOG_LEVEL', 'info'),
};
if (!cfg.secret) {
  console.error('node-server: JWT_SECRET is required');
  process.exit(2);
}
const rateBurst = cfg.rateBurst > 0 ? cfg.rateBurst : Math.floor(2 * cfg.rateLimit);
const floodDisconnectAfter = 10;

// ---- JWT (HS256/384/512) ----
const secret = Buffer.from(cfg.secret);
const hmacAlg = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
class AuthError extends Error {
  constructor(message, code) {
    super(message);
    this.data = { code };
  }
}
const invalid = () => new AuthError('Invalid token', 'token_invalid');

function verify(token) {
  if (typeof token !== 'string' || token === '') throw new AuthError('Authentication required', 'token_missing');
  const parts = token.split('.');
  if (parts.length !== 3) throw invalid();
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  } catch {
    throw invalid();
  }
  const alg = hmacAlg[header && header.alg];
  if (!alg) throw invalid();
  const want = createHmac(alg, secret).update(`${parts[0]}.${parts[1]}`).digest();
  const got = Buffer.from(parts[2], 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw invalid();
  if (!claims || typeof claims !== 'object') throw invalid();
  const now = Date.now() / 1000;
  if (typeof claims.sub !== 'string' || claims.sub.length < 1 || claims.sub.length > 128) throw invalid();
  if (claims.exp === undefined) {
    if (cfg.requireExp) throw invalid();
  } else if (typeof claims.exp !== 'number') {
    throw invalid();
  } else if (now > claims.exp + cfg.leewayS) {
    throw new AuthError('Token expired', 'token_expired');
  }
  if (typeof claims.nbf === 'number' && now + cfg.leewayS < claims.nbf) throw invalid();
  if (typeof claims.iat === 'number' && now + cfg.leewayS < claims.iat) throw invalid();
  const name = typeof claims.name === 'string' ? claims.name : '';
  const rooms = Array.isArray(claims.rooms) ? claims.rooms.filter((r) => typeof r === 'string') : null;
  return { id: claims.sub, name, rooms };
}

// ---- rooms, presence, dedupe ----
const roomRe = /^[A-Za-z0-9_.:-]{1,128}$/;
const validRoom = (r) => typeof r === 'string' && roomRe.test(r);
const reserved = (r) => r.startsWith('user:');
function roomAllowed(patterns, room) {
  if (!patterns) return true;
  return patterns.some((p) => new RegExp(`^${p.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`).test(room));
}
const fail = (code, message) => ({ ok: false, error: { code, message } });
class EventError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// room -> Map(userId -> {name, conns: Set(socketId)})
const presence = new Map();
function presenceJoin(room, user, sid) {
  let users = presence.get(room);
  if (!users) presence.set(room, (users = new Map()));
  let u = users.get(user.id);
  const first = !u;
  if (!u) users.set(user.id, (u = { name: user.name, conns: new Set() }));
  u.conns.add(sid);
  return first;
}
function presenceLeave(room, userId, sid) {
  const users = presence.get(room);
  const u = users && users.get(userId);
  if (!u) return false;
  u.conns.delete(sid);
  if (u.conns.size > 0) return false;
  users.delete(userId);
  if (users.size === 0) presence.delete(room);
  return true;
}
function members(room, withConnections) {
  const users = presence.get(room);
  if (!users) return [];
  const out = [];
  for (const [userId, u] of users) {
    out.push(withConnections ? { userId, name: u.name, connections: u.conns.size } : { userId, name: u.name });
  }
  return out;
}

const dedupe = new Map(); // userId\0clientId -> {id, ts, expires}
setInterval(() => {
  const now = Date.now();
  for (const [k, v] of dedupe) if (v.expires <= now) dedupe.delete(k);
}, 30_000).unref();

let seq = 0;
const nextId = () => `${Date.now().toString(36)}-${cfg.nodeId}-${(++seq).toString(36)}`;

// ---- server ----
const httpServer = createServer((req, res) => {
  const url = req.url || '/';
  if (req.method === 'GET' && (url === '/healthz' || url === '/readyz')) {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify({ status: url === '/healthz' ? 'ok' : 'ready', node: cfg.nodeId }));
    return;
  }
  res.writeHead(404).end();
});

const opts = {
  path: cfg.path.replace(/\/$/, ''),
  serveClient: false,
  pingInterval: cfg.pingInterval,
  pingTimeout: cfg.pingTimeout,
  maxHttpBufferSize: cfg.maxPayload,
};
if (cfg.recoveryMs > 0) {
  opts.connectionStateRecovery = { maxDisconnectionDuration: cfg.recoveryMs, skipMiddlewares: false };
}
if (process.env.REDIS_URL) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  pub.on('error', (err) => console.error('redis pub:', err.message));
  sub.on('error', (err) => console.error('redis sub:', err.message));
  await Promise.all([pub.connect(), sub.connect()]);
  opts.adapter = createAdapter(pub, sub);
}
const io = new Server(httpServer, opts);

const userConns = new Map(); // userId -> count
io.use((socket, next) => {
  let user;
  try {
    let token = socket.handshake.auth && socket.handshake.auth.token;
    if (!token) {
      const h = socket.handshake.headers.authorization;
      if (typeof h === 'string' && h.startsWith('Bearer ')) token = h.slice(7);
    }
    user = verify(token);
  } catch (err) {
    return next(err instanceof AuthError ? err : invalid());
  }
  if (cfg.maxConns > 0 && io.engine.clientsCount > cfg.maxConns) {
    return next(new AuthError('Too many connections', 'limit_connections'));
  }
  const n = userConns.get(user.id) || 0;
  if (cfg.maxConnsPerUser > 0 && n >= cfg.maxConnsPerUser) {
    return next(new AuthError('Too many connections', 'limit_connections'));
  }
  userConns.set(user.id, n + 1);
  socket.data.user = user;
  socket.data.counted = true;
  next();
});

function rateLimiter() {
  let tokens = rateBurst;
  let last = 0;
  let refusals = 0;
  return () => {
    const now = performance.now();
    if (last === 0) last = now;
    else if (now > last) {
      tokens = Math.min(rateBurst, tokens + ((now - last) / 1000) * cfg.rateLimit);
      last = now;
    }
    if (tokens >= 1) {
      tokens -= 1;
      refusals = 0;
      return 0;
    }
    return ++refusals;
  };
}

io.on('connection', (socket) => {
  const user = socket.data.user;
  const joined = (socket.data.joined ||= new Set());
  socket.join(`user:${user.id}`);
  if (socket.recovered) {
    for (const room of socket.rooms) {
      if (room === socket.id || room === `user:${user.id}` || !validRoom(room)) continue;
      joined.add(room);
      if (presenceJoin(room, user, socket.id)) {
        socket.to(room).emit('user-joined', { roomId: room, userId: user.id, name: user.name });
      }
    }
  }
  const allow = cfg.rateLimit > 0 ? rateLimiter() : null;
  const known = new Set();

  function on(event, fn) {
    known.add(event);
    socket.on(event, (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
      dispatch(fn, args, ack);
    });
  }
  function dispatch(fn, args, ack) {
    let reply;
    if (allow) {
      const refused = allow();
      if (refused > 0) {
        if (refused > floodDisconnectAfter) setImmediate(() => socket.disconnect());
        if (ack) ack(fail('rate_limited', 'too many events: slow down'));
        return;
      }
    }
    try {
      reply = { ok: true, ...fn(...args) };
    } catch (err) {
      reply = err instanceof EventError ? fail(err.code, err.message) : fail('internal', 'internal error');
      if (!(err instanceof EventError)) console.error('handler failed', err);
    }
    if (ack) ack(reply);
  }
  socket.onAny((event, ...args) => {
    if (known.has(event)) return;
    const ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
    dispatch(() => {
      throw new EventError('bad_request', `unknown event ${JSON.stringify(String(event).slice(0, 64))}`);
    }, [], ack);
  });

  function checkRoom(room) {
    if (!validRoom(room)) throw new EventError('invalid_room', 'room ids are 1-128 characters of A-Z a-z 0-9 _ . : -');
    if (reserved(room)) throw new EventError('forbidden_room', 'rooms named user:* are reserved');
    if (!roomAllowed(user.rooms, room)) throw new EventError('forbidden_room', `your token does not allow room "${room}"`);
  }

  on('join-room', (room) => {
    checkRoom(room);
    if (!joined.has(room)) {
      if (joined.size >= cfg.maxRooms) {
        throw new EventError('too_many_rooms', `a connection may join at most ${cfg.maxRooms} rooms`);
      }
      joined.add(room);
      socket.join(room);
      if (presenceJoin(room, user, socket.id)) {
        socket.to(room).emit('user-joined', { roomId: room, userId: user.id, name: user.name });
      }
    }
    return { room, members: members(room, false) };
  });

  on('leave-room', (room) => {
    if (!validRoom(room)) throw new EventError('invalid_room', 'room ids are 1-128 characters of A-Z a-z 0-9 _ . : -');
    if (!joined.has(room)) throw new EventError('not_in_room', `not in room "${room}"`);
    joined.delete(room);
    socket.leave(room);
    if (presenceLeave(room, user.id, socket.id)) {
      io.to(room).emit('user-left', { roomId: room, userId: user.id, name: user.name });
    }
    return { room };
  });

  on('presence', (room) => {
    checkRoom(room);
    return { room, members: members(room, true) };
  });

  on('message', (m) => {
    if (!m || typeof m !== 'object' || typeof m.roomId !== 'string' || typeof m.text !== 'string') {
      throw new EventError('bad_request', 'message needs roomId and text strings');
    }
    const { roomId: room, text } = m;
    if (!validRoom(room)) throw new EventError('invalid_room', 'room ids are 1-128 characters of A-Z a-z 0-9 _ . : -');
    if (text === '') throw new EventError('bad_request', 'text must not be empty');
    if (Buffer.byteLength(text) > cfg.messageMax) {
      throw new EventError('payload_too_large', `text is over ${cfg.messageMax} bytes`);
    }
    let clientId;
    if (m.clientId !== undefined && m.clientId !== null) {
      if (typeof m.clientId !== 'string' || m.clientId === '' || [...m.clientId].length > 64) {
        throw new EventError('bad_request', 'clientId must be 1-64 characters');
      }
      clientId = m.clientId;
    }
    if (!joined.has(room)) throw new EventError('not_in_room', `join room "${room}" before sending to it`);
    const id = nextId();
    const ts = Date.now();
    if (clientId) {
      const key = `${user.id}\0${clientId}`;
      const seen = dedupe.get(key);
      if (seen && seen.expires > ts) return { id: seen.id, ts: seen.ts, duplicate: true };
      dedupe.set(key, { id, ts, expires: ts + cfg.dedupeMs });
    }
    const msg = { id, roomId: room, userId: user.id, name: user.name, text, ts };
    if (clientId) msg.clientId = clientId;
    io.to(room).emit('message', msg);
    return { id, ts };
  });

  socket.on('disconnect', () => {
    for (const room of joined) {
      if (presenceLeave(room, user.id, socket.id)) {
        io.to(room).emit('user-left', { roomId: room, userId: user.id, name: user.name });
      }
    }
    joined.clear();
    if (socket.data.counted) {
      socket.data.counted = false;
      const n = (userConns.get(user.id) || 1) - 1;
      if (n <= 0) userConns.delete(user.id);
      else userConns.set(user.id, n);
    }
  });
});

// A socket refused after the middleware counted it (it never connects):
// nothing to undo, the middleware counts only on success.

const i = cfg.addr.lastIndexOf(':');
const host = cfg.addr.slice(0, i) || undefined;
const port = parseInt(cfg.addr.slice(i + 1), 10);
httpServer.listen({ host, port, backlog: 4096 }, () => {
  if (cfg.logLevel !== 'error' && cfg.logLevel !== 'warn') {
    console.error(`node reference server listening on ${cfg.addr} (node ${process.version}, pid ${process.pid})`);
  }
});

const shutdown = () => {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
