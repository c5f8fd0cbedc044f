// Spawns the Switchboard binary (or the example-embed binary) on a free port and waits until /healthz answers.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { binary } from './build.js';
import { TEST_SECRET } from './tokens.js';
import { sleep } from './wait.js';

const CONFIG_PREFIXES = ['ADDR', 'JWT_', 'AUTH_', 'MAX_', 'MESSAGE_', 'DEDUPE_', 'RECOVERY_', 'RATE_', 'PING_', 'SOCKETIO_', 'LOG_', 'REDIS', 'CORS', 'DRAIN', 'SHUTDOWN', 'NODE_ID', 'DEBUG',
  'HANDSHAKE_', 'TRUSTED_', 'SESSION_', 'HTTP_', 'METRICS_', 'PROBES_', 'WRITE_', 'ACK_', 'ADAPTER', 'STICKY', 'PPROF', 'PARSER', 'ALLOW_', 'PER_MESSAGE', 'SERVE_'];
// Every test client connects from 127.0.0.1: the per-IP limits are off unless a test turns them on.
const PER_IP_OFF = { HANDSHAKE_RATE_PER_IP: '0', MAX_CONNECTIONS_PER_IP: '0' };

const running = new Set();
const all = [];

function killAll() {
  for (const s of running) {
    try { s.proc.kill('SIGKILL'); } catch { /* gone */ }
  }
}
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

/** Picks a free TCP port on 127.0.0.1 (listen on :0, read, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function httpOk(url, timeoutMs) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

let counter = 0;

/**
 * startServer({ env, bin, name, args, healthTimeout }) → { url, port, proc, logs, stop(), kill(signal), restart() }
 *   env: extra environment; a null/undefined value removes the variable (e.g. { JWT_SECRET: null } for dev mode).
 *        JWT_SECRET defaults to the test secret. Config variables of the parent environment are never inherited.
 *   bin: 'switchboard' (default) | 'example-embed' | 'example-chat' | 'protocol-server' | an absolute path.
 */
export async function startServer({ env = {}, bin = 'switchboard', name, args = [], healthTimeout = 15000, port } = {}) {
  const file = bin.startsWith('/') ? bin : await binary(bin);
  port = port ?? (await freePort());
  const baseEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!CONFIG_PREFIXES.some((p) => k.startsWith(p))) baseEnv[k] = v;
  }
  // DRAIN_TIMEOUT (SIGTERM spreads disconnects over it, default 10s) is shortened so that stopping is quick.
  const parser = process.env.SB_PARSER ? { PARSER: process.env.SB_PARSER } : {}; // see clients.js
  const fullEnv = { ...baseEnv, JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'info', DRAIN_TIMEOUT: '1s', ...PER_IP_OFF, ...parser, ...env, ADDR: `127.0.0.1:${port}` };
  for (const k of Object.keys(fullEnv)) if (fullEnv[k] === null || fullEnv[k] === undefined) delete fullEnv[k];
  for (const k of Object.keys(fullEnv)) fullEnv[k] = String(fullEnv[k]);

  const s = {
    name: name || `${bin.split('/').pop()}#${++counter}`,
    port,
    url: `http://127.0.0.1:${port}`,
    proc: null,
    logs: [],
    exited: null,
    get alive() {
      return this.proc !== null && this.exited === null;
    },
  };
  all.push(s);

  const pushLog = (stream) => (chunk) => {
    for (const line of chunk.toString().split('\n')) {
      if (line === '') continue;
      s.logs.push(`[${s.name} ${stream}] ${line}`);
    }
    if (s.logs.length > 5000) s.logs.splice(0, s.logs.length - 5000);
  };

  async function spawnOnce() {
    s.exited = null;
    const proc = spawn(file, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    s.proc = proc;
    running.add(s);
    proc.stdout.on('data', pushLog('out'));
    proc.stderr.on('data', pushLog('err'));
    s.exitPromise = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        s.exited = { code, signal };
        running.delete(s);
        s.logs.push(`[${s.name}] exited code=${code} signal=${signal}`);
        resolve(s.exited);
      });
      proc.once('error', (err) => {
        s.exited = { code: null, signal: null, error: err };
        running.delete(s);
        s.logs.push(`[${s.name}] spawn error ${err.message}`);
        resolve(s.exited);
      });
    });
    const deadline = Date.now() + healthTimeout;
    for (;;) {
      if (s.exited) {
        throw new Error(`server ${s.name} exited during startup (${JSON.stringify(s.exited)})\n${s.logs.slice(-50).join('\n')}`);
      }
      if (await httpOk(`${s.url}/healthz`, 1000)) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`server ${s.name} did not answer /healthz within ${healthTimeout} ms\n${s.logs.slice(-50).join('\n')}`);
      }
      await sleep(50);
    }
  }

  /** Waits for the process to exit (bounded); resolves with {code, signal} or null on timeout. */
  s.waitExit = async (timeoutMs = 5000) => {
    if (!s.proc) return s.exited;
    let timer;
    const r = await Promise.race([s.exitPromise, new Promise((res) => (timer = setTimeout(() => res(null), timeoutMs)))]);
    clearTimeout(timer);
    return r;
  };

  /** SIGTERM, then SIGKILL after `graceMs`. Always resolves once the process is gone. */
  s.stop = async (graceMs = 5000) => {
    if (!s.alive) return s.exited;
    const t0 = Date.now();
    s.proc.kill('SIGTERM');
    const r = await s.waitExit(graceMs);
    if (process.env.COMPAT_DEBUG) {
      process.stderr.write(`[harness] ${s.name} stop took ${Date.now() - t0} ms\n${s.logs.slice(-15).join('\n')}\n`);
    }
    if (r) return r;
    s.logs.push(`[${s.name}] did not exit ${graceMs} ms after SIGTERM: SIGKILL`);
    s.proc.kill('SIGKILL');
    return s.waitExit(5000);
  };

  /** Sends `signal` (default SIGKILL); for SIGKILL/SIGTERM waits until the process is gone. */
  s.kill = async (signal = 'SIGKILL') => {
    if (!s.alive) return s.exited;
    s.proc.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') {
      const r = await s.waitExit(signal === 'SIGKILL' ? 5000 : 10000);
      if (!r) {
        s.proc.kill('SIGKILL');
        return s.waitExit(5000);
      }
      return r;
    }
    return null;
  };

  /** Stops the process (if running) and starts it again on the same port with the same configuration. */
  s.restart = async () => {
    await s.stop();
    await spawnOnce();
    return s;
  };

  s.logMark = () => s.logs.length;
  await spawnOnce();
  return s;
}

/** Every server started by this process (running or not), for log dumps. */
export function allServers() {
  return all;
}

/** Stops every server still running in this process. */
export async function stopAll() {
  await Promise.all([...running].map((s) => s.stop()));
}
