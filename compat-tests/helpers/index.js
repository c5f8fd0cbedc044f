// One import for the test files. `test` wraps node:test's test so that, when a test fails, the logs the servers
// printed during that test are written to stderr.
import nodeTest, { describe, before, after, beforeEach, afterEach } from 'node:test';
import { allServers, startServer, stopAll } from './server.js';
import { closeClients } from './clients.js';
import { closeRaw } from './raw.js';
import { closeProxies } from './proxy.js';

export { describe, before, after, beforeEach, afterEach };
export * from './wait.js';
export * from './tokens.js';
export * from './clients.js';
export { startServer, stopAll, freePort, allServers } from './server.js';
export { startProxy, closeProxies } from './proxy.js';
export { closeRaw } from './raw.js';
export { binary, ROOT } from './build.js';

function dumpLogs(name, marks, err) {
  const lines = [];
  for (const s of allServers()) {
    const from = marks.get(s) ?? 0;
    const part = s.logs.slice(from);
    if (part.length) lines.push(...part.slice(-300));
  }
  process.stderr.write(`\n----- test failed: ${name}: ${err && err.message}\n----- server output during the test:\n${lines.join('\n') || '(none)'}\n-----\n`);
}

function wrap(name, fn) {
  if (typeof fn !== 'function') return fn;
  return async function wrapped(t) {
    const marks = new Map(allServers().map((s) => [s, s.logs.length]));
    try {
      return await fn.call(this, t);
    } catch (err) {
      dumpLogs(name, marks, err);
      throw err;
    }
  };
}

/** test(name, [options], fn) — node:test's test with server log dumps on failure. */
export function test(name, opts, fn) {
  if (typeof opts === 'function') return nodeTest(name, wrap(name, opts));
  return nodeTest(name, opts, wrap(name, fn));
}
export const it = test;

/** Standard hooks for a file: close clients after each test, stop servers after all. */
export function standardHooks() {
  afterEach(async () => {
    closeClients();
    closeRaw();
    await closeProxies();
  });
  after(async () => {
    closeClients();
    closeRaw();
    await closeProxies();
    await stopAll();
  });
}

/** Starts a server for the whole describe block/file and stops it in `after`. Returns a getter object. */
export function serverFor(options = {}) {
  const ref = { srv: null };
  before(async () => {
    ref.srv = await startServer(options);
  });
  after(async () => {
    if (ref.srv) await ref.srv.stop();
  });
  return ref;
}

/** Asserts the server process is alive and /healthz answers 200. */
export async function assertAlive(srv) {
  if (!srv.alive) throw new Error(`server ${srv.name} is not running: ${JSON.stringify(srv.exited)}`);
  const res = await fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(3000) });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`/healthz answered ${res.status}`);
}

