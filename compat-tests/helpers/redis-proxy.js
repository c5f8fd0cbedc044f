// A fault-injecting TCP proxy between Switchboard nodes and Redis (node:net), for the cluster tests that create bad
// conditions: latency, stalls, cuts, and slowing down only the Redis calls of one room or one user.
//
//   const rp = await startRedisProxy(redisPort)
//   rp.url / rp.port                 REDIS_URL for the nodes (redis://127.0.0.1:<port>/0)
//   rp.setLatency({ up, down })      added delay in ms for every connection, per direction: up = node → Redis
//                                    (commands), down = Redis → node (replies, pub/sub pushes). Order is kept.
//   rp.slowCommands(markers, ms)     delays by `ms` every command (up direction) whose bytes contain one of
//                                    `markers` (strings or Buffers); returns a rule { hits, off() }. See below.
//   rp.stall() / rp.unstall()        stop forwarding in both directions without closing anything (a black hole:
//                                    clients see timeouts, not errors); unstall() forwards what was held, in order.
//   rp.cut()                         destroys every connection (both sides see a reset/close); what was held is lost
//   rp.refuse() / rp.accept()        stop listening (new connections get ECONNREFUSED, as with Redis down) / listen
//                                    again on the same port
//   rp.outage(ms, { mode })          one outage of `ms`, resolves when it is over:
//                                      mode 'stall' (default): stall, and refuse new connections, for ms; then
//                                        cut what was stalled (nothing held is forwarded) and accept again;
//                                      mode 'cut': cut and refuse for ms, then accept again.
//   rp.conns                         the open connections: { id, latency: {up, down} | null, stalled, cut() , ... }
//                                    (conn.latency overrides rp's latency for that connection; conn.stalled = true
//                                    stalls that connection alone)
//   rp.stats                         { accepted, commands, delayed, dropped }
//   rp.close()
//   proxyGroup([rp1, rp2, ...])      the same operations over several proxies (one per node), e.g. c.redisProxy
//
// Slowing one room down. Redis traffic has no notion of rooms at the TCP level, but a Switchboard node's calls on a
// room message carry the room and the user in their arguments:
//   - the de-duplication claim is an EVALSHA whose key is "<prefix>:sb:dedupe:<userId>\0<clientId>";
//   - the broadcast is a PUBLISH on "<prefix>#/#<room>#" (redis adapter) or an XADD whose `data` field is JSON with
//     the room in `opts.rooms` (redis-streams adapter).
// So the proxy parses the commands it forwards (RESP: an array of bulk strings "*<n>\r\n$<len>\r\n<bytes>\r\n...",
// which is all go-redis sends; inline commands are one line) and delays those that contain a marker the test chose:
// the room name slows the broadcast, a user id slows the claim too (use both to slow "one room's Redis calls").
// A Redis connection is ordered (replies come in command order), so a delayed command holds the commands behind it
// on the same connection; go-redis takes a connection from its pool for each command (no multiplexing), so a
// delayed command delays only the caller that issued it, not the other callers' commands on other connections.
// Replies and pub/sub pushes (down direction) are not parsed: they are forwarded as chunks (with `down` latency).
//
// Every timer is bounded by the delays set; close() (or closeRedisProxies()) drops everything.
import net from 'node:net';

const proxies = new Set();

/** Closes every Redis proxy started in this process. */
export async function closeRedisProxies() {
  await Promise.all([...proxies].map((p) => p.close()));
}

const CRLF = Buffer.from('\r\n');

/**
 * Length of the first complete RESP command in buf (from 0), 0 if incomplete, -1 if not RESP.
 * Commands: "*<n>\r\n" then n bulk strings "$<len>\r\n<len bytes>\r\n"; or an inline command ending in "\r\n".
 */
export function respFrameLength(buf) {
  if (buf.length === 0) return 0;
  if (buf[0] !== 0x2a /* * */) {
    const i = buf.indexOf(CRLF);
    return i < 0 ? (buf.length > 64 * 1024 ? -1 : 0) : i + 2;
  }
  let i = buf.indexOf(CRLF);
  if (i < 0) return buf.length > 32 ? -1 : 0;
  const n = Number(buf.toString('latin1', 1, i));
  if (!Number.isInteger(n) || n < 0 || n > 1024 * 1024) return -1;
  let p = i + 2;
  for (let k = 0; k < n; k++) {
    if (p >= buf.length) return 0;
    if (buf[p] !== 0x24 /* $ */) return -1;
    i = buf.indexOf(CRLF, p);
    if (i < 0) return buf.length - p > 32 ? -1 : 0;
    const len = Number(buf.toString('latin1', p + 1, i));
    if (!Number.isInteger(len) || len < 0) return -1;
    p = i + 2 + len + 2;
    if (p > buf.length) return 0;
  }
  return p;
}

/**
 * An ordered, delayable, stallable byte pipe: push(buf, delayMs) schedules buf for write at now + delayMs, never
 * before what was pushed earlier.
 */
function makePipe(write, isStalled) {
  const q = [];
  let timer = null;
  let last = 0;
  const pipe = {
    get length() { return q.length; },
    push(buf, delayMs) {
      const at = Math.max(Date.now() + delayMs, last);
      last = at;
      q.push({ buf, at });
      pipe.pump();
    },
    pump() {
      if (timer) { clearTimeout(timer); timer = null; }
      if (isStalled()) return;
      const now = Date.now();
      while (q.length && q[0].at <= now) write(q.shift().buf);
      if (q.length) timer = setTimeout(() => { timer = null; pipe.pump(); }, Math.max(1, q[0].at - now));
    },
    clear() {
      if (timer) { clearTimeout(timer); timer = null; }
      const n = q.length;
      q.length = 0;
      return n;
    },
  };
  return pipe;
}

export async function startRedisProxy(targetPort, { host = '127.0.0.1' } = {}) {
  const conns = new Set();
  const rules = new Set();
  let latency = { up: 0, down: 0 };
  let stalled = false;
  let server = null;
  let listening = false;
  let nextId = 0;
  let closed = false;

  const p = {
    port: 0,
    url: '',
    stats: { accepted: 0, commands: 0, delayed: 0, dropped: 0 },
    get conns() { return [...conns]; },
    get connections() { return conns.size; },
    get stalled() { return stalled; },
    get listening() { return listening; },
  };

  function onConnection(client) {
    if (closed || !listening) { client.destroy(); return; }
    p.stats.accepted++;
    const upstream = net.connect(targetPort, host);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const conn = { id: ++nextId, latency: null, stalled: false, raw: false, pending: Buffer.alloc(0), gone: false };
    const isStalled = () => stalled || conn.stalled;
    const lat = (dir) => (conn.latency ? conn.latency[dir] || 0 : latency[dir] || 0);
    conn.up = makePipe((b) => { if (!conn.gone) upstream.write(b); }, isStalled);
    conn.down = makePipe((b) => { if (!conn.gone) client.write(b); }, isStalled);
    conn.cut = () => {
      if (conn.gone) return;
      conn.gone = true;
      conns.delete(conn);
      p.stats.dropped += conn.up.clear() + conn.down.clear();
      client.destroy();
      upstream.destroy();
    };
    conn.pump = () => { conn.up.pump(); conn.down.pump(); };
    conns.add(conn);

    client.on('data', (d) => {
      if (conn.raw) { conn.up.push(d, lat('up')); return; }
      let buf = conn.pending.length ? Buffer.concat([conn.pending, d]) : d;
      for (;;) {
        const n = respFrameLength(buf);
        if (n < 0) { // not RESP: forward the rest as it comes, unparsed
          conn.raw = true;
          conn.up.push(buf, lat('up'));
          buf = Buffer.alloc(0);
          break;
        }
        if (n === 0) break;
        const frame = buf.subarray(0, n);
        buf = buf.subarray(n);
        p.stats.commands++;
        let extra = 0;
        for (const r of rules) {
          if (r.markers.some((m) => frame.includes(m))) {
            r.hits++;
            extra = Math.max(extra, r.ms);
          }
        }
        if (extra) p.stats.delayed++;
        conn.up.push(Buffer.from(frame), lat('up') + extra);
      }
      conn.pending = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
    });
    upstream.on('data', (d) => conn.down.push(d, lat('down')));
    for (const s of [client, upstream]) {
      s.on('error', conn.cut);
      s.on('close', conn.cut);
    }
  }

  function listen(port) {
    return new Promise((resolve, reject) => {
      const s = net.createServer(onConnection);
      s.once('error', reject);
      s.listen(port, host, () => {
        s.off('error', reject);
        server = s;
        listening = true;
        resolve(s.address().port);
      });
    });
  }

  p.setLatency = ({ up = 0, down = 0 } = {}) => {
    latency = { up, down };
  };

  p.slowCommands = (markers, ms) => {
    const list = (Array.isArray(markers) ? markers : [markers]).map((m) => (Buffer.isBuffer(m) ? m : Buffer.from(String(m))));
    if (!list.length || list.some((m) => m.length === 0)) throw new Error('slowCommands: empty marker');
    const rule = { markers: list, ms, hits: 0, off: () => rules.delete(rule) };
    rules.add(rule);
    return rule;
  };

  p.stall = () => { stalled = true; };
  p.unstall = () => {
    stalled = false;
    for (const c of conns) c.pump();
  };

  p.cut = () => {
    for (const c of [...conns]) c.cut();
  };

  p.refuse = () => {
    if (!listening) return;
    listening = false;
    server.close(); // the listening socket closes now; open connections are ours to cut
    server = null;
  };

  p.accept = async () => {
    if (listening || closed) return;
    // The port was ours a moment ago; retry briefly in case the kernel has not released it (bounded).
    for (let i = 0; ; i++) {
      try {
        await listen(p.port);
        return;
      } catch (err) {
        if (i >= 100) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };

  p.outage = async (ms, { mode = 'stall' } = {}) => {
    const startedAt = Date.now();
    p.refuse();
    if (mode === 'stall') p.stall();
    else if (mode === 'cut') p.cut();
    else throw new Error(`outage: unknown mode ${mode}`);
    await new Promise((r) => setTimeout(r, ms));
    p.cut(); // a stalled connection is dropped with what it held: nothing sent during the outage reaches Redis
    stalled = false;
    await p.accept();
    return { startedAt, endedAt: Date.now() };
  };

  p.close = async () => {
    closed = true;
    proxies.delete(p);
    rules.clear();
    p.refuse();
    p.cut();
  };

  proxies.add(p);
  p.port = await listen(0);
  p.url = `redis://${host}:${p.port}/0`;
  return p;
}

/** The proxy operations applied to every proxy of the list (e.g. one proxy per node). */
export function proxyGroup(list) {
  const each = (fn) => list.map(fn);
  return {
    proxies: list,
    get stats() {
      const s = { accepted: 0, commands: 0, delayed: 0, dropped: 0 };
      for (const p of list) for (const k of Object.keys(s)) s[k] += p.stats[k];
      return s;
    },
    get conns() { return list.flatMap((p) => p.conns); },
    get connections() { return list.reduce((n, p) => n + p.connections, 0); },
    setLatency: (l) => { each((p) => p.setLatency(l)); },
    slowCommands: (markers, ms) => {
      const rules = each((p) => p.slowCommands(markers, ms));
      return { get hits() { return rules.reduce((n, r) => n + r.hits, 0); }, off: () => rules.forEach((r) => r.off()) };
    },
    stall: () => { each((p) => p.stall()); },
    unstall: () => { each((p) => p.unstall()); },
    cut: () => { each((p) => p.cut()); },
    refuse: () => { each((p) => p.refuse()); },
    accept: async () => { await Promise.all(each((p) => p.accept())); },
    outage: async (ms, opts) => {
      const r = await Promise.all(each((p) => p.outage(ms, opts)));
      return { startedAt: Math.min(...r.map((x) => x.startedAt)), endedAt: Math.max(...r.map((x) => x.endedAt)) };
    },
    close: async () => { await Promise.all(each((p) => p.close())); },
  };
}
