// Cluster test harness: a real redis-server, N Switchboard nodes (ADAPTER=redis) and a real HAProxy or nginx, all on
// free loopback ports, rendered from the one source of truth in deploy/ (haproxy.cfg, nginx.conf: their @@NAME@@
// placeholders are substituted here). Everything started here is torn down by cluster.stop() (call it in `after`)
// and, as a last resort, SIGKILLed (whole process group) when the test process exits. Every wait is bounded.
//
//   const c = await startCluster({ balancer: 'haproxy' | 'haproxy-roundrobin' | 'nginx' | null, nodes: 3, env })
//   c.url            the balancer's URL (or node 1's when balancer is null)
//   c.nodes[i]       helpers/server.js servers ({url, port, kill(), stop(), restart(), logs, ...}); .id = 'node<i+1>'
//   c.redis          { url, port, stop(), start(), kill() }
//   c.lb             { url, kind, logs, stop() }
//   c.stop()
//
// startCluster({ redisVia: 'proxy' }): every node reaches Redis through its own helpers/redis-proxy.js proxy (latency,
// stalls, cuts, slowed commands): c.redisProxies[i] is node i's, c.redisProxy applies an operation to all of them.
// redisVia may also be a proxy object (anything with .url) that every node then uses; the caller closes it.
//
// Environment: SWITCHBOARD_BIN (prebuilt binary), HAPROXY_BIN / NGINX_BIN / REDIS_SERVER_BIN (default: Debian's),
// CLUSTER_LOG_LEVEL (nodes' LOG_LEVEL, default warn), CLUSTER_LOG_DIR (write every process's output there at stop).
// Test files get: startCluster, clusterClient (withCredentials: true, for the sticky cookie), nodeOf (the node a
// socket is on, from the node's sticky cookie), connectOnNode, upgraded, nodeConnections (/metrics), readyStatus,
// httpGet/setCookies, haproxyStates (admin socket), and `test` (dumps balancer/redis output when a test fails).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { ROOT, startServer, freePort, sleep, waitFor, client, test as helperTest } from '../helpers/index.js';
import { startRedisProxy, proxyGroup } from '../helpers/redis-proxy.js';

export const DEPLOY = path.join(ROOT, 'deploy');
export const STICKY_COOKIE = 'sb_node';
const HAPROXY = process.env.HAPROXY_BIN || (fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy');
const NGINX = process.env.NGINX_BIN || (fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');
const REDIS = process.env.REDIS_SERVER_BIN || 'redis-server';

// ---------------------------------------------------------------------------------------------------------------
// Child processes (redis, haproxy, nginx): each in its own process group, so that nginx's workers go with it.

const children = new Set();
const logSources = new Set();

function killGroup(proc, signal) {
  try {
    process.kill(-proc.pid, signal);
  } catch {
    try { proc.kill(signal); } catch { /* gone */ }
  }
}

process.once('exit', () => {
  for (const c of children) killGroup(c.proc, 'SIGKILL');
});

const tmpDirs = new Set();
process.once('exit', () => {
  for (const d of tmpDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

export function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  // nginx workers run as another user when the master is root: let them traverse to their temp files.
  fs.chmodSync(d, 0o755);
  tmpDirs.add(d);
  return d;
}

/** Spawns a long-running child in its own process group; returns { proc, logs, exited, waitExit(ms), stop(sig, ms) }. */
function spawnChild(name, cmd, args, { cwd } = {}) {
  const c = { name, proc: null, logs: [], exited: null };
  const proc = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  c.proc = proc;
  children.add(c);
  logSources.add(c);
  const push = (stream) => (chunk) => {
    for (const line of chunk.toString().split('\n')) if (line) c.logs.push(`[${name} ${stream}] ${line}`);
    if (c.logs.length > 3000) c.logs.splice(0, c.logs.length - 3000);
  };
  proc.stdout.on('data', push('out'));
  proc.stderr.on('data', push('err'));
  c.exitPromise = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      c.exited = { code, signal };
      children.delete(c);
      c.logs.push(`[${name}] exited code=${code} signal=${signal}`);
      resolve(c.exited);
    });
    proc.once('error', (err) => {
      c.exited = { code: null, signal: null, error: err.message };
      children.delete(c);
      c.logs.push(`[${name}] spawn error: ${err.message}`);
      resolve(c.exited);
    });
  });
  c.waitExit = async (ms) => {
    let t;
    const r = await Promise.race([c.exitPromise, new Promise((res) => (t = setTimeout(() => res(null), ms)))]);
    clearTimeout(t);
    return r;
  };
  /** Signal the group, wait up to ms, then SIGKILL the group. Resolves once the leader is gone. */
  c.stop = async (signal = 'SIGTERM', ms = 5000) => {
    if (c.exited) return c.exited;
    killGroup(proc, signal);
    const r = await c.waitExit(ms);
    if (r) {
      killGroup(proc, 'SIGKILL'); // stragglers (nginx workers) of the group, if any
      return r;
    }
    c.logs.push(`[${name}] still running ${ms} ms after ${signal}: SIGKILL`);
    killGroup(proc, 'SIGKILL');
    return c.waitExit(5000);
  };
  return c;
}

function tcpOpen(port, ms = 500) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const t = setTimeout(() => { s.destroy(); resolve(false); }, ms);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Redis

/** Minimal RESP client for one command (PING, SHUTDOWN...). Resolves the first reply line or null. */
export function redisCommand(port, ...argv) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const t = setTimeout(() => { s.destroy(); resolve(null); }, 1000);
    s.once('connect', () => s.write(`*${argv.length}\r\n${argv.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) { clearTimeout(t); s.destroy(); resolve(buf.split('\r\n')[0]); }
    });
    s.once('error', () => { clearTimeout(t); resolve(null); });
    s.once('close', () => { clearTimeout(t); resolve(buf ? buf.split('\r\n')[0] : null); });
  });
}

/** Starts redis-server on a free port (never 6379). .stop() stops it, .start() starts it again on the same port. */
export async function startRedis({ port } = {}) {
  port = port ?? (await freePort());
  if (port === 6379) port = await freePort();
  const dir = tempDir('sb-redis-');
  const r = { port, url: `redis://127.0.0.1:${port}/0`, child: null, dir, logs: [] };
  r.start = async () => {
    for (let attempt = 0; ; attempt++) {
      r.child = spawnChild(`redis:${port}`, REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', dir, '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning']);
      r.logs = r.child.logs;
      const ok = await waitFor(async () => r.child.exited || (await redisCommand(port, 'PING')) === '+PONG', 10000, { interval: 30, message: 'redis PING' });
      if (ok === true) return r;
      // The port may still be held for a moment after a restart: retry a few times.
      if (attempt >= 20) throw new Error(`redis-server did not start on ${port}: ${r.child.logs.slice(-10).join('\n')}`);
      await sleep(100);
    }
  };
  r.stop = async () => { if (r.child) await r.child.stop('SIGTERM', 5000); };
  r.kill = async () => { if (r.child) await r.child.stop('SIGKILL', 5000); };
  await r.start();
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// Balancers

/** Replaces every @@NAME@@ of the template with vars[NAME]; fails on any placeholder left or any var unused. */
export function render(templateFile, vars) {
  let text = fs.readFileSync(path.join(DEPLOY, templateFile), 'utf8');
  for (const [k, v] of Object.entries(vars)) {
    const token = `@@${k}@@`;
    if (!text.includes(token)) throw new Error(`${templateFile}: placeholder ${token} not found`);
    text = text.split(token).join(String(v));
  }
  const left = text.match(/@@[A-Z0-9_]+@@/g);
  if (left) throw new Error(`${templateFile}: placeholders left unrendered: ${[...new Set(left)].join(', ')}`);
  return text;
}

/**
 * Starts a balancer in front of three nodes. kind: 'haproxy' | 'nginx' | 'haproxy-roundrobin' (haproxy.cfg with
 * its `cookie SERVERID` line removed: plain round-robin, no stickiness).
 */
export async function startBalancer(kind, nodePorts, { port, edit = (cfg) => cfg } = {}) {
  if (nodePorts.length !== 3) throw new Error('deploy/ configs are written for exactly 3 nodes');
  port = port ?? (await freePort());
  const dir = tempDir(`sb-${kind}-`);
  const nodes = { NODE1: `127.0.0.1:${nodePorts[0]}`, NODE2: `127.0.0.1:${nodePorts[1]}`, NODE3: `127.0.0.1:${nodePorts[2]}` };
  let child;
  if (kind === 'haproxy' || kind === 'haproxy-roundrobin') {
    let cfg = render('haproxy.cfg', { LISTEN: `127.0.0.1:${port}`, RUN_DIR: dir, ...nodes });
    if (kind === 'haproxy-roundrobin') {
      const re = /^\s*cookie SERVERID .*$/m;
      if (!re.test(cfg)) throw new Error('haproxy.cfg: no `cookie SERVERID` line to remove');
      cfg = cfg.replace(re, '    # (cookie stickiness removed by the test harness: plain round-robin)');
    }
    const file = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(file, edit(cfg));
    child = spawnChild(`${kind}:${port}`, HAPROXY, ['-db', '-f', file]);
  } else if (kind === 'nginx') {
    const user = os.userInfo().username;
    const cfg = render('nginx.conf', {
      LISTEN: `127.0.0.1:${port}`, RUN_DIR: dir, LOG_DIR: dir, STICKY_COOKIE, NGINX_USER: user, ...nodes,
    });
    const file = path.join(dir, 'nginx.conf');
    fs.writeFileSync(file, edit(cfg));
    child = spawnChild(`nginx:${port}`, NGINX, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', file, '-g', 'daemon off;']);
  } else {
    throw new Error(`unknown balancer ${kind}`);
  }
  const lb = { kind, port, url: `http://127.0.0.1:${port}`, dir, child, logs: child.logs };
  lb.fileLogs = () => {
    const out = [];
    for (const f of ['error.log', 'access.log']) {
      const p = path.join(dir, f);
      if (fs.existsSync(p)) out.push(...fs.readFileSync(p, 'utf8').split('\n').filter(Boolean).slice(-3000).map((l) => `[${kind} ${f}] ${l}`));
    }
    return out;
  };
  logSources.add({ get logs() { return [...child.logs, ...lb.fileLogs()]; } });
  await waitFor(async () => child.exited || (await tcpOpen(port)), 10000, { interval: 30, message: `${kind} listening on ${port}` });
  if (child.exited) throw new Error(`${kind} exited at startup: ${[...child.logs, ...lb.fileLogs()].slice(-20).join('\n')}`);
  lb.stop = () => child.stop('SIGTERM', 5000);
  return lb;
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster

/** Starts Redis (unless given), `nodes` Switchboard nodes (NODE_ID node1..) and a balancer. */
export async function startCluster({ balancer = 'haproxy', balancerEdit, nodes = 3, env = {}, nodeEnv = () => ({}), redis, redisVia } = {}) {
  const c = { nodes: [], redis: null, lb: null, ownRedis: !redis, redisProxies: [], redisProxy: null };
  c.stop = async () => {
    if (c.lb) await c.lb.stop();
    // CLUSTER_LOG_DIR=<dir>: keep every process's output of this cluster there (for digging into a failure).
    if (process.env.CLUSTER_LOG_DIR) {
      const dir = path.join(process.env.CLUSTER_LOG_DIR, `cluster-${process.pid}-${Date.now()}`);
      fs.mkdirSync(dir, { recursive: true });
      for (const n of c.nodes) fs.writeFileSync(path.join(dir, `${n.id}.log`), n.logs.join('\n'));
      if (c.lb) fs.writeFileSync(path.join(dir, `${c.lb.kind}.log`), [...c.lb.logs, ...c.lb.fileLogs()].join('\n'));
      if (c.redis && c.ownRedis) fs.writeFileSync(path.join(dir, 'redis.log'), c.redis.logs.join('\n'));
    }
    await Promise.all(c.nodes.map((n) => n.stop(3000)));
    if (c.ownProxies) await Promise.all(c.redisProxies.map((p) => p.close()));
    if (c.ownRedis && c.redis) await c.redis.stop();
  };
  try {
    c.redis = redis ?? (await startRedis());
    if (redisVia === 'proxy') {
      c.ownProxies = true;
      for (let i = 0; i < nodes; i++) c.redisProxies.push(await startRedisProxy(c.redis.port));
      c.redisProxy = proxyGroup(c.redisProxies);
    } else if (redisVia) {
      c.redisProxies = Array.from({ length: nodes }, () => redisVia);
      c.redisProxy = redisVia;
    }
    c.nodes = await Promise.all(Array.from({ length: nodes }, (_, i) => startServer({
      name: `node${i + 1}`,
      env: {
        ADAPTER: 'redis',
        REDIS_URL: c.redisProxies[i]?.url ?? c.redis.url,
        NODE_ID: `node${i + 1}`,
        STICKY_COOKIE,
        TRUSTED_PROXIES: '127.0.0.1/32', // the balancers' X-Forwarded-For names the client
        LOG_LEVEL: process.env.CLUSTER_LOG_LEVEL || 'warn',
        ...env,
        ...nodeEnv(i),
      },
    })));
    c.nodes.forEach((n, i) => { n.id = `node${i + 1}`; });
    c.byId = (id) => c.nodes.find((n) => n.id === id);
    await Promise.all(c.nodes.map((n) => waitReady(n.url, 200, 15000)));
    if (balancer) {
      c.lb = await startBalancer(balancer, c.nodes.map((n) => n.port), { edit: balancerEdit });
      c.url = c.lb.url;
      // Through the balancer, every node must answer before the tests start.
      await waitFor(async () => {
        const seen = new Set();
        for (let i = 0; i < 9; i++) {
          const h = await getJson(`${c.url}/healthz`);
          if (h?.body?.node) seen.add(h.body.node);
        }
        return seen.size === nodes;
      }, 15000, { message: 'balancer reaches the nodes' });
    } else {
      c.url = c.nodes[0].url;
    }
  } catch (err) {
    await c.stop();
    throw err;
  }
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP probes

/** GET url → { code, body (parsed JSON or text) } or null when unreachable. */
export async function getJson(url, timeoutMs = 2000) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body;
    try { body = JSON.parse(text); } catch { body = text; }
    return { code: res.status, body };
  } catch {
    return null;
  }
}

/** One plain HTTP GET with extra headers (agent-less, bounded) → { status, headers, body, ms } or { error, ms }. */
export function httpGet(url, { headers = {}, timeoutMs = 10000 } = {}) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const req = http.get(url, { headers, agent: false, timeout: timeoutMs }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString(), ms: Date.now() - t0 }));
      res.on('error', (error) => resolve({ error, ms: Date.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error, ms: Date.now() - t0 }));
  });
}

/** Cookie name → value from a response's Set-Cookie headers. */
export function setCookies(res) {
  const out = {};
  for (const line of res.headers?.['set-cookie'] || []) {
    const [pair] = line.split(';');
    const i = pair.indexOf('=');
    out[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return out;
}

/** HAProxy server states from its admin socket: { node1: 'UP', node2: 'DOWN', ... } (haproxy balancers only). */
export function haproxyStates(lb) {
  return new Promise((resolve) => {
    const sock = net.connect(path.join(lb.dir, 'haproxy.sock'));
    let buf = '';
    const t = setTimeout(() => { sock.destroy(); resolve(null); }, 2000);
    sock.on('connect', () => sock.write('show stat\n'));
    sock.on('data', (d) => { buf += d; });
    sock.on('error', () => { clearTimeout(t); resolve(null); });
    sock.on('close', () => {
      clearTimeout(t);
      const lines = buf.split('\n').filter(Boolean);
      if (!lines.length) return resolve(null);
      const cols = lines[0].replace(/^# /, '').split(',');
      const iName = cols.indexOf('svname');
      const iStatus = cols.indexOf('status');
      const out = {};
      for (const l of lines.slice(1)) {
        const f = l.split(',');
        if (/^node\d+$/.test(f[iName])) out[f[iName]] = f[iStatus];
      }
      resolve(out);
    });
  });
}

export async function readyStatus(nodeUrl) {
  const r = await getJson(`${nodeUrl}/readyz`, 2000);
  return r ? r.code : 0;
}

export function waitReady(nodeUrl, status = 200, timeoutMs = 15000) {
  return waitFor(async () => (await readyStatus(nodeUrl)) === status, timeoutMs, { interval: 50, message: `${nodeUrl}/readyz == ${status}` });
}

/** { polling, websocket, total } from a node's /metrics switchboard_connections. */
export async function nodeConnections(nodeUrl) {
  const res = await fetch(`${nodeUrl}/metrics`, { signal: AbortSignal.timeout(3000) });
  const text = await res.text();
  const out = { polling: 0, websocket: 0, total: 0 };
  for (const m of text.matchAll(/^switchboard_connections\{transport="([a-z]+)"\} ([0-9.e+]+)$/gm)) {
    out[m[1]] = Number(m[2]);
    out.total += Number(m[2]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Clients

/**
 * A socket.io-client socket (tracked by helpers/clients.js, closed by closeClients()) with withCredentials: true, so
 * that engine.io-client's Node cookie jar keeps the balancer's sticky cookie across the polling requests and the
 * WebSocket upgrade (engine.io-client 6.6: the jar exists only when withCredentials is true).
 */
export function clusterClient(url, opts = {}) {
  return client(url, { withCredentials: true, ...opts });
}

/** The cookies the socket's current Engine.IO connection holds, as an object. */
export function cookiesOf(socket) {
  const jar = socket.io?.engine?._cookieJar;
  const out = {};
  if (jar) for (const [name, c] of jar.cookies) out[name] = c.value;
  return out;
}

/** NODE_ID of the node serving the socket (from the node's STICKY_COOKIE on the handshake). */
export function nodeOf(socket) {
  return cookiesOf(socket)[STICKY_COOKIE];
}

/** Waits until the socket's engine runs on WebSocket. */
export function upgraded(socket, timeoutMs = 10000) {
  return waitFor(() => socket.connected && socket.io.engine?.transport?.name === 'websocket', timeoutMs, { message: 'upgrade to websocket' });
}

/** Waits for `connect` (rejects on connect_error). */
export function connected(socket, timeoutMs = 10000) {
  if (socket.connected) return Promise.resolve(socket);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { cleanup(); reject(new Error('timed out waiting for connect')); }, timeoutMs);
    const onC = () => { cleanup(); resolve(socket); };
    const onE = (e) => { cleanup(); reject(e); };
    const cleanup = () => { clearTimeout(t); socket.off('connect', onC); socket.off('connect_error', onE); };
    socket.on('connect', onC);
    socket.on('connect_error', onE);
  });
}

/**
 * Connects through the balancer until the socket lands on node `nodeId` (the balancer's round-robin moves on
 * each new session). Bounded: at most `attempts` sessions.
 */
export async function connectOnNode(url, nodeId, opts = {}, attempts = 12) {
  for (let i = 0; i < attempts; i++) {
    const s = clusterClient(url, opts);
    await connected(s);
    if (nodeOf(s) === nodeId) return s;
    s.disconnect();
  }
  throw new Error(`no session landed on ${nodeId} in ${attempts} attempts`);
}

// ---------------------------------------------------------------------------------------------------------------
// Test wrapper: like helpers' test, plus the balancer/redis output when a test fails.

export function test(name, opts, fn) {
  if (typeof opts === 'function') { fn = opts; opts = {}; }
  return helperTest(name, opts, async function wrapped(t) {
    const marks = new Map([...logSources].map((s) => [s, s.logs.length]));
    try {
      return await fn.call(this, t);
    } catch (err) {
      const lines = [];
      for (const s of logSources) lines.push(...s.logs.slice(marks.get(s) ?? 0).slice(-100));
      process.stderr.write(`\n----- ${name}: balancer/redis output during the test:\n${lines.join('\n') || '(none)'}\n-----\n`);
      throw err;
    }
  });
}


/** Connected pub/sub node-redis clients for @socket.io/redis-adapter (errors ignored: tests stop Redis on purpose). */
export async function redisAdapterClients(redisUrl) {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on('error', () => {});
  sub.on('error', () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  return [pub, sub];
}
