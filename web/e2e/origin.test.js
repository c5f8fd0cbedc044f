// The Origin check in a real browser (Debian's Chromium via playwright-core): browsers apply CORS to long-polling
// but not to WebSockets, so the server checks Origin itself. Switchboard runs in production mode (JWT_SECRET set)
// with CORS_ORIGINS naming page server A; page servers A and B (node:http, other ports, so other origins) serve a
// page that loads the vendored socket.io client and connects to Switchboard with a valid token, once with
// transports ['websocket'] and once with the default transports (polling, then upgrade), reporting
// connect/connect_error into window.state.
//   - from A (allowed): both connect, upgrade to WebSocket and get the join-room ack;
//   - from B (not allowed): neither connects (the WebSocket handshake is refused with 403, the polling handshake
//     is refused with 403 and without CORS headers), and switchboard_handshake_refusals_total{reason="origin"} grows;
//   - with CORS_ORIGINS empty, a page served by Switchboard itself (same origin) connects, and page A does not.
//   - with PER_MESSAGE_DEFLATE=1 Chromium's permessage-deflate offer is accepted (no context takeover) and a large
//     message goes both ways; without it, the offer is declined.
//
//   SWITCHBOARD_BIN=.tmp/bin/switchboard node --test --test-timeout=120000 web/e2e/origin.test.js
//   CHROMIUM=/path/to/chromium ...        # default /usr/bin/chromium
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer, freePort } from '../../compat-tests/helpers/server.js';
import { token } from '../../compat-tests/helpers/tokens.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VENDOR = path.join(ROOT, 'server', 'clientbundle', 'dist', 'socket.io.esm.min.js');
const STEP = 15_000; // upper bound of any single wait in this file

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------------
// The page: a module that imports the socket.io client from `importPath` and defines window.connectTo(name, cfg),
// which records the outcome in window.state[name]: status 'connected' → 'done' (with the ack and the transport)
// or 'error' (with connect_error's message). No reconnection: one attempt per case.

function clientModule(importPath) {
  return `
import { io } from ${JSON.stringify(importPath)};
window.state = {};
window.sockets = [];
window.connectTo = (name, { url, token, transports, room }) => {
  const st = (window.state[name] = { status: 'pending', events: [] });
  const opts = { auth: { token }, reconnection: false, timeout: 5000 };
  if (transports) opts.transports = transports;
  const socket = io(url, opts);
  window.sockets.push(socket);
  // The Engine.IO session's first transport, and whether it upgraded (the upgrade may finish before 'connect').
  socket.io.once('open', () => {
    st.openTransport = socket.io.engine.transport.name;
    socket.io.engine.once('upgrade', () => { st.upgraded = true; });
  });
  socket.on('connect', async () => {
    st.events.push('connect');
    st.status = 'connected';
    try {
      if (socket.io.engine.transport.name !== 'websocket') {
        await new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no upgrade to websocket within 10s')), 10000);
          socket.io.engine.once('upgrade', () => { clearTimeout(t); resolve(); });
        });
      }
      st.transport = socket.io.engine.transport.name;
      st.ack = await socket.timeout(5000).emitWithAck('join-room', room);
      st.status = 'done';
    } catch (err) {
      st.status = 'failed';
      st.error = String(err && err.message || err);
    }
  });
  socket.on('connect_error', (err) => {
    st.events.push('connect_error');
    st.status = 'error';
    st.error = err.message;
    st.description = err.description === undefined ? undefined : String(err.description && err.description.type || err.description);
  });
};
window.closeAll = () => { for (const s of window.sockets) s.close(); };
`;
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>origin test</title>
<script type="module">${clientModule('/socket.io.esm.min.js')}</script>
</head><body>origin test page</body></html>`;

/** A static page server on 127.0.0.1: / (the page) and /socket.io.esm.min.js (the vendored client). */
async function startPageServer() {
  const port = await freePort();
  const js = fs.readFileSync(VENDOR);
  const srv = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(PAGE);
    } else if (p === '/socket.io.esm.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      res.end(js);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  return { port, url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(() => r()); }) };
}

// ---------------------------------------------------------------------------------------------------------------

let browser = null;
const pageServers = [];
const switchboards = [];

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, { timeout: 60_000 });

after(async () => {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10_000)]);
  await Promise.all(pageServers.map((s) => s.close()));
  await Promise.all(switchboards.map((s) => s.stop(3000)));
}, { timeout: 30_000 });

async function switchboard(env) {
  const s = await startServer({ name: `switchboard-origin#${switchboards.length + 1}`, env: { LOG_LEVEL: 'debug', ...env } });
  switchboards.push(s);
  return s;
}

async function pageServer() {
  const p = await startPageServer();
  pageServers.push(p);
  return p;
}

/** switchboard_handshake_refusals_total{reason="origin"} of a Switchboard. */
async function originRefusals(sb) {
  const res = await fetch(`${sb.url}/metrics`, { signal: AbortSignal.timeout(3000) });
  const m = /^switchboard_handshake_refusals_total\{reason="origin"\} ([0-9.e+]+)$/m.exec(await res.text());
  return m ? Number(m[1]) : 0;
}

/** A fresh browser context (own cookies) on `url`; waits until window.connectTo exists. */
async function openPage(url, { inject } = {}) {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP);
  context.setDefaultNavigationTimeout(STEP);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(`uncaught ${err.message}`));
  await page.goto(url, { waitUntil: 'load' });
  if (inject) await page.addScriptTag({ type: 'module', content: inject });
  await page.waitForFunction(() => typeof window.connectTo === 'function', null, { timeout: STEP });
  return page;
}

/** Runs one case in the page and returns window.state[name] once it is final (done, failed or error). */
async function runCase(page, name, cfg) {
  await page.evaluate(([n, c]) => window.connectTo(n, c), [name, cfg]);
  await page.waitForFunction((n) => ['done', 'failed', 'error'].includes(window.state[n]?.status), name, { timeout: STEP });
  return page.evaluate((n) => window.state[n], name);
}

const CASES = [
  { name: 'websocket', transports: ['websocket'], refusedWith: 'websocket error' },
  { name: 'default', transports: undefined, refusedWith: 'xhr poll error' },
];

function assertConnected(st, what, room) {
  assert.equal(st.status, 'done', `${what}: ${JSON.stringify(st)}`);
  assert.deepEqual(st.events, ['connect'], `${what}: events ${JSON.stringify(st.events)}`);
  assert.equal(st.transport, 'websocket', `${what}: ends on websocket`);
  assert.equal(st.ack?.ok, true, `${what}: join-room ack ${JSON.stringify(st.ack)}`);
  assert.equal(st.ack.room, room);
}

function assertRefused(st, what, message) {
  assert.equal(st.status, 'error', `${what}: expected connect_error, got ${JSON.stringify(st)}`);
  assert.ok(!st.events.includes('connect'), `${what}: connected: ${JSON.stringify(st)}`);
  // A transport error, i.e. refused before any Socket.IO packet (not an auth refusal such as "Invalid token").
  assert.equal(st.error, message, `${what}: ${JSON.stringify(st)}`);
}

// ---------------------------------------------------------------------------------------------------------------

describe('production mode with CORS_ORIGINS = page server A', () => {
  let sb;
  let a;
  let b;
  before(async () => {
    a = await pageServer();
    b = await pageServer();
    sb = await switchboard({ CORS_ORIGINS: a.url });
  }, { timeout: 60_000 });

  test('from the allowed origin (A) both transports connect, upgrade and get the join-room ack', async () => {
    const before = await originRefusals(sb);
    const page = await openPage(`${a.url}/`);
    try {
      for (const c of CASES) {
        const room = `origin-a-${c.name}`;
        const st = await runCase(page, c.name, { url: sb.url, token: token(`alice-${c.name}`), transports: c.transports, room });
        assertConnected(st, `A, ${c.name}`, room);
        assert.equal(st.openTransport, c.transports ? 'websocket' : 'polling', `A, ${c.name}: first transport`);
        if (!c.transports) assert.equal(st.upgraded, true, 'A, default: polling upgraded to websocket (the upgrade passes the Origin check)');
      }
      assert.deepEqual(page.errors, []);
      assert.equal(await originRefusals(sb), before, 'no origin refusal for the allowed origin');
    } finally {
      await page.context().close();
    }
  });

  test('from another origin (B) neither transport connects; the refusals are counted', async () => {
    const before = await originRefusals(sb);
    const page = await openPage(`${b.url}/`);
    try {
      for (const c of CASES) {
        const st = await runCase(page, c.name, { url: sb.url, token: token(`mallory-${c.name}`), transports: c.transports, room: `origin-b-${c.name}` });
        assertRefused(st, `B, ${c.name}`, c.refusedWith);
      }
      // One refused WebSocket handshake and one refused polling handshake (no reconnection).
      assert.equal(await originRefusals(sb), before + 2, 'switchboard_handshake_refusals_total{reason="origin"} grew by 2');
    } finally {
      await page.context().close();
    }
  });

  test('the 403 itself, as the browser would send it (Origin B), and no Origin at all', async () => {
    const ws = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    const get = (headers) => new Promise((resolve) => {
      const req = http.get(`${sb.url}/socket.io/?EIO=4&transport=${headers.Upgrade ? 'websocket' : 'polling'}`, { headers, agent: false, timeout: 5000 }, (res) => {
        res.resume();
        resolve({ status: res.statusCode, acao: res.headers['access-control-allow-origin'] });
        if (res.statusCode === 101) res.socket.destroy();
      });
      req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode }); });
      req.on('error', (e) => resolve({ error: e.message }));
      req.on('timeout', () => req.destroy(new Error('timeout')));
    });
    assert.equal((await get({ ...ws, Origin: b.url })).status, 403, 'WebSocket handshake from B');
    const pb = await get({ Origin: b.url });
    assert.equal(pb.status, 403, 'polling handshake from B');
    assert.equal(pb.acao, undefined, 'no CORS header for B');
    assert.equal((await get({ ...ws, Origin: a.url })).status, 101, 'WebSocket handshake from A');
    const pa = await get({ Origin: a.url });
    assert.equal(pa.status, 200, 'polling handshake from A');
    assert.equal(pa.acao, a.url);
    assert.equal((await get(ws)).status, 101, 'no Origin (not a browser): accepted');
  });
});

describe('production mode with CORS_ORIGINS empty: same origin only', () => {
  let sb;
  let a;
  before(async () => {
    a = await pageServer();
    sb = await switchboard({ CORS_ORIGINS: '' });
  }, { timeout: 60_000 });

  test('a page served by Switchboard itself connects with both transports', async () => {
    const before = await originRefusals(sb);
    // Any page of Switchboard's origin will do: /healthz, with socket.io-client from the bundle it serves.
    const page = await openPage(`${sb.url}/healthz`, { inject: clientModule('/socket.io/socket.io.esm.min.js') });
    try {
      for (const c of CASES) {
        const room = `same-origin-${c.name}`;
        const st = await runCase(page, c.name, { url: sb.url, token: token(`sam-${c.name}`), transports: c.transports, room });
        assertConnected(st, `same origin, ${c.name}`, room);
        assert.equal(st.openTransport, c.transports ? 'websocket' : 'polling', `same origin, ${c.name}: first transport`);
      }
      assert.deepEqual(page.errors, []);
      assert.equal(await originRefusals(sb), before, 'no origin refusal for the same origin');
    } finally {
      await page.context().close();
    }
  });

  test('a page of another origin (A) does not connect', async () => {
    const before = await originRefusals(sb);
    const page = await openPage(`${a.url}/`);
    try {
      for (const c of CASES) {
        const st = await runCase(page, c.name, { url: sb.url, token: token(`eve-${c.name}`), transports: c.transports, room: `x-${c.name}` });
        assertRefused(st, `A without CORS_ORIGINS, ${c.name}`, c.refusedWith);
      }
      assert.equal(await originRefusals(sb), before + 2);
    } finally {
      await page.context().close();
    }
  });
});

describe('PER_MESSAGE_DEFLATE=1: Chromium negotiates permessage-deflate', () => {
  let sb;
  let plain;
  before(async () => {
    sb = await switchboard({ CORS_ORIGINS: '', PER_MESSAGE_DEFLATE: '1', MESSAGE_MAX_BYTES: '20000' });
    plain = await switchboard({ CORS_ORIGINS: '' });
  }, { timeout: 60_000 });

  test('the extension is accepted without context takeover and a large message goes both ways', async () => {
    const page = await openPage(`${sb.url}/healthz`, { inject: clientModule('/socket.io/socket.io.esm.min.js') });
    try {
      const room = 'deflate-room';
      const st = await runCase(page, 'websocket', { url: sb.url, token: token('zed'), transports: ['websocket'], room });
      assertConnected(st, 'deflate', room);
      const ext = await page.evaluate(() => window.sockets[0].io.engine.transport.ws.extensions);
      assert.match(ext, /^permessage-deflate;\s*server_no_context_takeover;\s*client_no_context_takeover$/);
      // Chromium compresses what it sends; the echo (12 KB, above the threshold) comes back compressed.
      const text = 'the quick brown fox jumps over the lazy dog. '.repeat(270);
      const echo = await page.evaluate(([r, t]) => new Promise((resolve, reject) => {
        const s = window.sockets[0];
        s.once('message', (m) => resolve(m.text));
        s.timeout(5000).emitWithAck('message', { roomId: r, text: t }).then((a) => { if (!a.ok) reject(new Error(JSON.stringify(a))); }, reject);
      }), [room, text]);
      assert.equal(echo, text);
      assert.deepEqual(page.errors, []);
    } finally {
      await page.context().close();
    }
    const page2 = await openPage(`${plain.url}/healthz`, { inject: clientModule('/socket.io/socket.io.esm.min.js') });
    try {
      const st = await runCase(page2, 'websocket', { url: plain.url, token: token('zed'), transports: ['websocket'], room: 'plain-room' });
      assertConnected(st, 'no deflate', 'plain-room');
      assert.equal(await page2.evaluate(() => window.sockets[0].io.engine.transport.ws.extensions), '', 'declined by default');
    } finally {
      await page2.context().close();
    }
  });
});
