// End-to-end test of the demo page (web/index.html + web/app.js) in a real browser: Debian's Chromium driven by
// playwright-core, against the real Switchboard binary in development mode.
//
//   npm run test:browser                       # builds .tmp/bin/switchboard-e2e first
//   SWITCHBOARD_BIN=.tmp/bin/switchboard npm run test:browser
//   CHROMIUM=/path/to/chromium npm run test:browser   # default /usr/bin/chromium
//
// Leaves screenshots in .tmp/page.png (desktop), .tmp/page-narrow.png (390 px wide), .tmp/page-alice.png and, of
// the live panel, .tmp/page-live.png (docs/screenshots/page-live.png is a copy), .tmp/page-live-dark.png and
// .tmp/page-live-narrow.png.
// E2E_DEBUG=1 prints the (tolerated) network errors the browser logs while the server is restarted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TMP = path.join(ROOT, '.tmp');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP = 15_000; // upper bound of any single wait in this file

// Settings that would change the server's mode or behaviour: never inherited from the caller's environment.
const CONFIG_ENV = /^(ADDR|SOCKETIO_PATH|JWT_|AUTH_|MAX_|MESSAGE_|DEDUPE_|RECOVERY_|RATE_|PING_|HANDSHAKE_|CORS_|NODE_ID|DRAIN_|LOG_|REDIS|TRUSTED_|SESSION_|HTTP_|METRICS_|PROBES_|WRITE_|ACK_|ADAPTER)/;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
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

function goBuild(out) {
  return new Promise((resolve, reject) => {
    execFile('go', ['build', '-o', out, './cmd/switchboard'], { cwd: ROOT, timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`go build failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(out);
    });
  });
}

async function binary() {
  if (process.env.SWITCHBOARD_BIN) return path.resolve(process.env.SWITCHBOARD_BIN);
  fs.mkdirSync(path.join(TMP, 'bin'), { recursive: true });
  // Own output name, so a build here never replaces a binary another test run is executing.
  return goBuild(path.join(TMP, 'bin', 'switchboard-e2e'));
}

// ---------------------------------------------------------------------------------------------------------------

let server = null; // { proc, url, logs, exited }
let browser = null;
const consoleErrors = []; // `${who}: ${text}` for every console error / uncaught page error

async function startServer(port) {
  const file = await binary();
  port = port ?? (await freePort());
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!CONFIG_ENV.test(k)) env[k] = v;
  Object.assign(env, { ADDR: `127.0.0.1:${port}`, DRAIN_TIMEOUT: '1s', LOG_LEVEL: process.env.E2E_LOG_LEVEL || 'debug' }); // no JWT_*: development mode
  const s = { url: `http://127.0.0.1:${port}`, port, logs: [], exited: null };
  s.proc = spawn(file, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = (chunk) => {
    s.logs.push(...chunk.toString().split('\n').filter(Boolean));
    if (s.logs.length > 2000) s.logs.splice(0, s.logs.length - 2000);
  };
  s.proc.stdout.on('data', log);
  s.proc.stderr.on('data', log);
  s.exitPromise = new Promise((resolve) => {
    s.proc.once('exit', (code, signal) => resolve((s.exited = { code, signal })));
    s.proc.once('error', (error) => resolve((s.exited = { error })));
  });
  server = s;
  const deadline = Date.now() + STEP;
  for (;;) {
    if (s.exited) throw new Error(`switchboard exited at startup: ${JSON.stringify(s.exited)}\n${s.logs.join('\n')}`);
    try {
      const res = await fetch(`${s.url}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return s;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`switchboard did not answer /healthz in ${STEP} ms\n${s.logs.join('\n')}`);
    await sleep(50);
  }
}

async function stopServer(signal = 'SIGTERM') {
  const s = server;
  if (!s || s.exited) return;
  s.proc.kill(signal);
  const bounded = (ms) => Promise.race([s.exitPromise, sleep(ms)]);
  await bounded(5000);
  if (!s.exited) {
    s.proc.kill('SIGKILL');
    await bounded(5000);
  }
}

process.once('exit', () => {
  if (server && !server.exited) server.proc.kill('SIGKILL');
});

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, { timeout: 330_000 });

after(async () => {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10_000)]);
  await stopServer();
}, { timeout: 30_000 });

// ---------------------------------------------------------------------------------------------------------------
// Page helpers

/** Opens the demo page in a fresh browser context (its own storage), recording console errors. */
async function openPage(who, viewport = { width: 1100, height: 720 }) {
  const context = await browser.newContext({ viewport, colorScheme: 'light' });
  context.setDefaultTimeout(STEP);
  context.setDefaultNavigationTimeout(STEP);
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(`${who}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => consoleErrors.push(`${who}: uncaught ${err.message}`));
  await page.goto(server.url + '/', { waitUntil: 'load' });
  return page;
}

/** Signs in through the form (development token) and waits until the page says it is connected. */
async function signIn(page, name) {
  await page.getByLabel('Display name').fill(name);
  assert.equal(await page.locator('#user-id').getAttribute('placeholder'), name.toLowerCase(), 'user id placeholder follows the name');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.locator('[data-testid="status"][data-state="connected"]').waitFor();
  assert.equal(await page.getByTestId('me-id').textContent(), `@${name.toLowerCase()}`);
}

async function joinRoom(page, roomId) {
  assert.equal(await page.getByTestId('room-input').inputValue(), 'lobby', 'the room field defaults to "lobby"');
  if (roomId !== 'lobby') await page.getByTestId('room-input').fill(roomId);
  await page.getByTestId('join').click();
  await page.locator(`[data-testid="room-tab"][data-room="${roomId}"][aria-current="true"]`).waitFor();
}

const members = (page, room) => page.locator(`[data-testid="member-list"][data-room="${room}"] [data-testid="member"]`);
const messages = (page, room) => page.locator(`[data-testid="message-list"][data-room="${room}"] [data-testid="message"]`);

async function memberIds(page, room) {
  return (await members(page, room).evaluateAll((els) => els.map((e) => e.dataset.userId))).sort();
}

/** Waits (bounded) until fn() resolves truthy; returns its value. */
async function eventually(fn, what, timeout = STEP) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await sleep(100);
  }
}

async function typeAndSend(page, text) {
  await page.getByTestId('message-input').fill(text);
  await page.getByTestId('message-input').press('Enter');
}

// ---------------------------------------------------------------------------------------------------------------

test('two users chat in the lobby through the demo page', async (t) => {
  let a; // Alice's page
  let b; // Bob's page

  await t.test('both sign in and show the transport', async () => {
    a = await openPage('alice');
    b = await openPage('bob');
    assert.equal(await a.title(), 'Switchboard demo');
    assert.equal(await a.getByTestId('status').textContent(), 'Not connected');
    await signIn(a, 'Alice');
    await signIn(b, 'Bob');
    for (const page of [a, b]) {
      const transport = page.getByTestId('transport');
      await transport.waitFor({ state: 'visible' });
      assert.match(await transport.textContent(), /^(polling|websocket)$/);
      // The client starts on polling and upgrades: the badge follows the upgrade.
      await page.locator('[data-testid="transport"][data-transport="websocket"]').waitFor();
    }
  });

  await t.test('both join the lobby; each sees the other in the member list', async () => {
    await joinRoom(a, 'lobby');
    assert.deepEqual(await memberIds(a, 'lobby'), ['alice']);
    await joinRoom(b, 'lobby');
    // Bob gets Alice from the join acknowledgement, Alice gets Bob from user-joined.
    assert.deepEqual(await memberIds(b, 'lobby'), ['alice', 'bob']);
    await eventually(async () => (await memberIds(a, 'lobby')).join() === 'alice,bob', 'Alice to see Bob join');
    await a.locator('[data-testid="system-message"]', { hasText: 'Bob joined' }).waitFor();
    assert.equal(await b.getByTestId('room-title').textContent(), '#lobby');
  });

  await t.test("Alice's message reaches Bob; Alice sees the server id", async () => {
    const text = 'Hello from <b>Alice</b> & co <img src=x onerror="window.__pwned=1">';
    await typeAndSend(a, text);
    assert.equal(await a.getByTestId('message-input').inputValue(), '', 'Enter sends and clears the box');

    const mine = messages(a, 'lobby').filter({ hasText: 'Hello from' });
    await a.locator('[data-testid="message"][data-state="sent"]', { hasText: 'Hello from' }).waitFor();
    const id = await mine.getAttribute('data-message-id');
    assert.ok(id && id !== 'undefined', `server id on Alice's message: ${id}`);
    assert.match(await mine.getByTestId('message-meta').textContent(), new RegExp(`id ${id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

    const theirs = messages(b, 'lobby').filter({ hasText: 'Hello from' });
    await theirs.waitFor();
    assert.equal(await theirs.getAttribute('data-user-id'), 'alice');
    assert.equal(await theirs.getAttribute('data-message-id'), id, 'Bob sees the same id');
    assert.equal(await theirs.getByTestId('message-author').textContent(), 'Alice');
    // Rendered as text, never as HTML.
    assert.equal(await theirs.getByTestId('message-text').textContent(), text);
    assert.equal(await theirs.locator('b, img').count(), 0);
    assert.equal(await b.evaluate(() => window.__pwned), undefined);
    assert.equal(await messages(a, 'lobby').count(), 1, 'the broadcast back to Alice does not duplicate her message');

    const reply = 'Hi Alice! Ça va? — Grüße, Юля';
    await typeAndSend(b, reply);
    await b.locator('[data-testid="message"][data-state="sent"]', { hasText: 'Hi Alice!' }).waitFor();
    const got = messages(a, 'lobby').filter({ hasText: 'Hi Alice!' });
    await got.waitFor();
    assert.equal(await got.getByTestId('message-text').textContent(), reply);
  });

  await t.test('a refused message shows the error code', async () => {
    await typeAndSend(a, 'x'.repeat(5000)); // above MESSAGE_MAX_BYTES (4096)
    const failed = a.locator('[data-testid="message"][data-state="failed"]');
    await failed.waitFor();
    assert.equal(await failed.getAttribute('data-error'), 'payload_too_large');
    assert.match(await failed.getByTestId('message-meta').textContent(), /payload_too_large/);
    await sleep(300);
    assert.equal(await messages(b, 'lobby').filter({ hasText: 'xxxx' }).count(), 0, 'Bob never sees it');
    fs.mkdirSync(TMP, { recursive: true });
    await a.screenshot({ path: path.join(TMP, 'page-alice.png') });
  });

  await t.test('presence refresh lists both users', async () => {
    await b.getByTestId('presence').click();
    await eventually(async () => !(await b.getByTestId('presence').isDisabled()), 'presence to answer');
    assert.deepEqual(await memberIds(b, 'lobby'), ['alice', 'bob']);
    assert.equal(await b.locator('#member-count').textContent(), '2');
  });

  await t.test('Alice closes her page and Bob sees her leave', async () => {
    await a.context().close();
    await b.locator('[data-testid="member-list"][data-room="lobby"] [data-user-id="alice"]').waitFor({ state: 'detached' });
    await b.locator('[data-testid="system-message"]', { hasText: 'Alice left' }).waitFor();
    assert.deepEqual(await memberIds(b, 'lobby'), ['bob']);
  });

  await t.test('screenshots', async () => {
    fs.mkdirSync(TMP, { recursive: true });
    await b.getByTestId('message-input').fill('Typing a reply…');
    await b.screenshot({ path: path.join(TMP, 'page.png'), fullPage: false });
    await b.setViewportSize({ width: 390, height: 760 });
    await b.screenshot({ path: path.join(TMP, 'page-narrow.png'), fullPage: true });
    await b.setViewportSize({ width: 1100, height: 720 });
  });

  await t.test('no console errors so far', async () => {
    assert.deepEqual(consoleErrors, []);
  });

  await t.test('server restart: Bob sees the reconnect attempts, then is back in the lobby', async () => {
    await b.getByTestId('message-input').fill('');
    await stopServer('SIGKILL'); // the new process has a new development secret and no memory of the room
    await b.locator('[data-testid="status"][data-state="reconnecting"]').waitFor();
    let status = '';
    await eventually(async () => /attempt \d+/.test((status = await b.getByTestId('status').textContent())), `a numbered reconnect attempt (status: ${status})`);
    assert.ok(await b.getByTestId('transport').isHidden(), 'no transport while disconnected');
    await startServer(server.port);
    await b.locator('[data-testid="status"][data-state="connected"]').waitFor({ timeout: 40_000 }); // backoff ≤ 30 s
    await b.locator('[data-testid="transport"]:not([hidden])').waitFor();
    // The client module re-joins the lobby and the page refreshes its members.
    await eventually(async () => (await memberIds(b, 'lobby')).join() === 'bob', 'the member list after the re-join');
    await typeAndSend(b, 'back again');
    await b.locator('[data-testid="message"][data-state="sent"]', { hasText: 'back again' }).waitFor();
    // While the server was down the browser reported the refused connections; nothing else may show up.
    const unexpected = consoleErrors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET/.test(e));
    // A request for an Engine.IO session the client abandoned while reconnecting (its pending poll aborted, which
    // ends the session as in Node) is refused with 400 "Session ID unknown"; the server logs every refusal (debug).
    const http400 = unexpected.filter((e) => /status of 400/.test(e));
    const unknownSid = server.logs.filter((l) => l.includes('request refused') && l.includes('Session ID unknown'));
    const log = `server log:\n${server.logs.slice(-60).join('\n')}`;
    assert.deepEqual(unexpected.filter((e) => !http400.includes(e)), [], log);
    assert.ok(http400.length <= unknownSid.length, `400s the server did not refuse as "Session ID unknown"; ${log}`);
    if (process.env.E2E_DEBUG) console.log(consoleErrors);
    consoleErrors.length = 0;
  });

  await t.test('Bob leaves the lobby', async () => {
    await b.getByTestId('leave').click();
    await b.locator('[data-testid="room-tab"][data-room="lobby"]').waitFor({ state: 'detached' });
    assert.equal(await b.getByTestId('room-title').textContent(), 'No room selected');
    assert.ok(await b.getByTestId('send').isDisabled());
    await b.context().close();
    assert.deepEqual(consoleErrors, []);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The live panel (GET /live.json every 2 s): node id, connections, rooms, events per second, cluster nodes.

const LIVE_REFRESH = 2000; // the page's refresh period (web/app.js)

/** WCAG contrast ratio of an element's text against the first opaque background behind it. */
function contrastOf(page, selector) {
  return page.locator(selector).first().evaluate((node) => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    let bg = null;
    for (let e = node; e && !bg; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) bg = c.slice(0, 3);
    }
    const fg = rgb(getComputedStyle(node).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(bg || [255, 255, 255])].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
  });
}

async function rate(page, testid) {
  const dd = page.getByTestId(testid);
  return { now: Number(await dd.getAttribute('data-now')), total: Number(await dd.getAttribute('data-total')) };
}

test('the live panel shows the node and moves when a second user joins and sends', async (t) => {
  let c; // Carol's page: the one watching the panel
  let d; // Dave's page: the second user
  let node;

  await t.test('the panel shows the node id, its connections and the cluster', async () => {
    const res = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(STEP) });
    node = (await res.json()).node;
    assert.ok(node, 'the node id from /healthz');
    c = await openPage('carol');
    await signIn(c, 'Carol');
    await eventually(async () => (await c.getByTestId('live-node').textContent()) === node, `node id ${node} in the panel`);
    await eventually(async () => Number(await c.getByTestId('live-connections').getAttribute('data-value')) >= 1, 'Carol counted');
    assert.match(await c.getByTestId('live-summary').textContent(), /^\d+ connections?, \d+ rooms?, 1 node \(.+\)\.$/);
    assert.deepEqual(await c.locator('[data-testid="live-nodes"] li').evaluateAll((els) => els.map((e) => e.dataset.node)), [node]);
    assert.equal(await c.getByTestId('live-cluster').textContent(), 'memory adapter: one node');
    assert.match(await c.getByTestId('live-transports').textContent(), /^websocket \d+ · polling \d+$/);
  });

  await t.test('accessible: a heading, labels, a polite summary, keyboard reachable', async () => {
    const region = c.getByRole('region', { name: 'Live: this server' });
    assert.equal(await region.count(), 1, 'the panel is a region named by its heading');
    assert.equal(await c.getByRole('heading', { name: 'Live: this server' }).count(), 1);
    const labels = await c.locator('#live-stats dt').allTextContents();
    assert.deepEqual(labels, ['Node', 'Connections', 'Rooms on /', 'Events in', 'Events out', 'Cluster']);
    assert.equal(await c.locator('#live-stats dd').count(), labels.length);
    const summary = c.getByTestId('live-summary');
    assert.equal(await summary.getAttribute('aria-live'), 'polite');
    assert.equal(await c.locator('#live [aria-live]').count(), 1, 'one live region, not one per number');
    assert.equal(await c.locator('#live svg[aria-hidden="true"]').count(), 2, 'the sparklines are hidden; their numbers are text');
    // Keyboard: Tab reaches the summary (after the sidebar's controls), Enter folds and unfolds the panel.
    const toggle = c.locator('#live-details > summary');
    let tabs = 0;
    await c.locator('#signout-btn').focus();
    while (!(await toggle.evaluate((e) => e === document.activeElement)) && tabs++ < 20) await c.keyboard.press('Tab');
    assert.ok(tabs < 20, 'the panel is reachable with Tab');
    await c.keyboard.press('Enter');
    assert.equal(await c.locator('#live-details').evaluate((e) => e.open), false, 'Enter folds the panel');
    assert.match(await c.getByTestId('live-peek').textContent(), /conn/, 'folded, the summary still shows the count');
    await c.keyboard.press('Enter');
    assert.equal(await c.locator('#live-details').evaluate((e) => e.open), true, 'Enter unfolds it');
  });

  await t.test('its numbers move when Dave joins and sends', async () => {
    // Start from a quiet window: the earlier tests' events leave the 10 s window.
    await eventually(
      async () => (await rate(c, 'live-events-in')).total === 0 && (await rate(c, 'live-events-out')).total === 0,
      'a quiet 10 s window',
      STEP,
    );
    const before = Number(await c.getByTestId('live-connections').getAttribute('data-value'));
    d = await openPage('dave');
    await signIn(d, 'Dave');
    await joinRoom(d, 'lobby');
    await typeAndSend(d, 'Hi from Dave');
    await d.locator('[data-testid="message"][data-state="sent"]', { hasText: 'Hi from Dave' }).waitFor();
    // Within a few refresh periods: the sampler ticks every second, the page asks every 2 s.
    let last = '';
    await eventually(
      async () => {
        const conns = Number(await c.getByTestId('live-connections').getAttribute('data-value'));
        const ins = await rate(c, 'live-events-in');
        const outs = await rate(c, 'live-events-out');
        last = JSON.stringify({ before, conns, ins, outs });
        return conns > before && ins.total > 0 && outs.total > 0;
      },
      'the panel to count Dave and his events',
      4 * LIVE_REFRESH,
    ).catch((err) => {
      throw new Error(`${err.message}; ${last}`);
    });
    assert.match(await c.getByTestId('live-events-in').textContent(), /\d+\/s.*\d+ in \d+ s/);
  });

  await t.test('screenshots of the panel (light, dark, 390 px)', async () => {
    fs.mkdirSync(TMP, { recursive: true });
    await joinRoom(c, 'lobby');
    await typeAndSend(d, 'Carol, the panel counts this one too');
    await messages(c, 'lobby').filter({ hasText: 'the panel counts' }).waitFor();
    await eventually(async () => (await rate(c, 'live-events-out')).total >= 2, 'the panel to show the new events', 4 * LIVE_REFRESH);
    for (const sel of ['#live-title', '#live-stats dt', '#live-node', '.live-sub', '#live-summary', '.live-hint']) {
      const ratio = await contrastOf(c, sel);
      assert.ok(ratio >= 4.5, `light theme: ${sel} contrast ${ratio.toFixed(2)} < 4.5`);
    }
    await c.screenshot({ path: path.join(TMP, 'page-live.png') });

    await c.emulateMedia({ colorScheme: 'dark' });
    for (const sel of ['#live-title', '#live-stats dt', '#live-node', '.live-sub', '#live-summary', '.live-hint']) {
      const ratio = await contrastOf(c, sel);
      assert.ok(ratio >= 4.5, `dark theme: ${sel} contrast ${ratio.toFixed(2)} < 4.5`);
    }
    await c.screenshot({ path: path.join(TMP, 'page-live-dark.png') });
    await c.emulateMedia({ colorScheme: 'light' });

    await c.setViewportSize({ width: 390, height: 844 });
    assert.equal(await c.locator('#live-details').evaluate((e) => e.open), true);
    await c.locator('#live').scrollIntoViewIfNeeded();
    const overflow = await c.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways at 390 px by ${overflow} px`);
    const box = await c.locator('#live').boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `the panel fits 390 px: ${JSON.stringify(box)}`);
    await c.screenshot({ path: path.join(TMP, 'page-live-narrow.png'), fullPage: true });
    await c.setViewportSize({ width: 1100, height: 720 });
  });

  await t.test('a page opened on a narrow screen starts with the panel folded', async () => {
    const n = await openPage('narrow', { width: 390, height: 844 });
    assert.equal(await n.locator('#live-details').evaluate((e) => e.open), false);
    await n.context().close();
  });

  await t.test('no console errors', async () => {
    await d.context().close();
    await c.context().close();
    assert.deepEqual(consoleErrors, []);
  });
});
