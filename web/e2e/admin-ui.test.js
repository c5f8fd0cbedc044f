// The official Socket.IO Admin UI (@socket.io/admin-ui 0.5.1's built ui/dist, served from node_modules on its own
// port) in Debian's Chromium against the real Switchboard binary with ADMIN_UI_PASSWORD_HASH: it logs in, lists this
// server and the connected sockets with their rooms, disconnects one socket with its button (the real client is
// disconnected), and against a two-node cluster on a real Redis shows both servers. Views exercised: dashboard,
// servers, sockets, rooms, clients, events and a socket's details (opened by the disconnect click).
//
// Screenshots: .tmp/admin-*.png, and docs/screenshots/admin-*.png (README) with UPDATE_SCREENSHOTS=1.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { chromium } from 'playwright-core';
import { startServer, stopAll, connect, ack, freePort, closeClients, once } from '../../compat-tests/helpers/index.js';
import { joinOk } from '../../compat-tests/helpers/room.js';
import { startRedis } from '../../compat-tests/cluster/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const UI_DIR = path.join(ROOT, 'node_modules', '@socket.io', 'admin-ui', 'ui', 'dist');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// docs/screenshots (README's) are rewritten only when asked: UPDATE_SCREENSHOTS=1 npm run test:browser.
const SHOTS = [path.join(ROOT, '.tmp'), ...(process.env.UPDATE_SCREENSHOTS ? [path.join(ROOT, 'docs', 'screenshots')] : [])];
const STEP = 15_000;
const PASSWORD = 'admin-ui-test-password';
const HASH = bcrypt.hashSync(PASSWORD, 4);

let ui = null; // { server, url }
let browser = null;
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml', '.json': 'application/json' };

/** Serves the UI's static files (its router uses #hashes: every path is a file). */
async function serveUI() {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    const file = path.resolve(UI_DIR, rel);
    if (!file.startsWith(UI_DIR + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${port}` };
}

before(async () => {
  assert.ok(fs.existsSync(path.join(UI_DIR, 'index.html')), `${UI_DIR} is missing: npm ci`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  for (const d of SHOTS) fs.mkdirSync(d, { recursive: true });
  ui = await serveUI();
  browser = await chromium.launch({
    executablePath: CHROMIUM, timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, { timeout: 120_000 });

after(async () => {
  closeClients();
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  if (ui) ui.server.close();
  await stopAll();
}, { timeout: 60_000 });

const adminEnv = (extra = {}) => ({ ADMIN_UI_PASSWORD_HASH: HASH, CORS_ORIGINS: ui.url, ...extra });

async function shot(page, name) {
  const buf = await page.screenshot({ fullPage: true });
  for (const d of SHOTS) fs.writeFileSync(path.join(d, `admin-${name}.png`), buf);
}

/** Opens the UI and logs in to serverUrl; resolves once the UI says it is connected. */
async function login(serverUrl, password = PASSWORD) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(STEP);
  // The UI loads fonts and icons from CDNs this machine cannot reach: refused at once rather than waited for.
  await context.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => route.abort());
  const page = await context.newPage();
  await page.goto(ui.url + '/', { waitUntil: 'load' });
  await page.getByLabel('Server URL').fill(serverUrl);
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Connect' }).click();
  return page;
}

test('the real Admin UI logs in, lists the server, the sockets and their rooms, and disconnects a socket', { timeout: 120_000 }, async () => {
  const srv = await startServer({ env: adminEnv({ NODE_ID: 'sb-one' }) });
  const alice = await connect(srv.url, { user: 'alice', transports: ['websocket'] });
  const bob = await connect(srv.url, { user: 'bob', transports: ['polling'], upgrade: false });
  await joinOk(alice, 'lobby');
  await joinOk(bob, 'lobby');
  await joinOk(alice, 'ops-room');

  // A wrong password is refused with the UI's own message.
  const bad = await login(srv.url, 'wrong');
  await bad.getByText('Invalid credentials').waitFor();
  await bad.context().close();

  const page = await login(srv.url);
  await page.locator('.v-dialog').first().waitFor({ state: 'hidden' });
  await page.getByRole('cell', { name: '/admin' }).first().waitFor(); // the namespaces card, from server_stats
  await page.waitForTimeout(2500); // a few seconds of aggregated events in the charts
  await shot(page, 'dashboard');

  await page.goto(ui.url + '/#/servers/');
  await page.getByText('sb-one').first().waitFor();
  await shot(page, 'servers');

  await page.goto(ui.url + '/#/sockets/');
  for (const s of [alice, bob]) await page.getByText(s.id).first().waitFor();
  await shot(page, 'sockets');

  await page.goto(ui.url + '/#/rooms/');
  await page.getByText('lobby').first().waitFor();
  await page.getByText('ops-room').first().waitFor();
  await shot(page, 'rooms');

  await page.goto(ui.url + '/#/clients/');
  await page.getByText(alice.io.engine.id.slice(0, 12)).first().waitFor(); // the UI's clientId: 12 characters of the sid
  await shot(page, 'clients');

  await page.goto(ui.url + '/#/events/');
  assert.equal((await ack(bob, 'presence', 'lobby')).ok, true);
  await page.getByText('presence').first().waitFor(); // event_received, in development mode
  await shot(page, 'events');

  // Disconnect alice with the button of her row: the real client gets "io server disconnect".
  await page.goto(ui.url + '/#/sockets/');
  const aliceId = alice.id; // the client forgets it once disconnected
  const row = page.locator('tr', { hasText: aliceId });
  const gone = once(alice, 'disconnect', STEP);
  await row.locator('button').last().click();
  const [reason] = await gone;
  assert.equal(reason, 'io server disconnect');
  // The UI shows it disconnected (the click also opened its details), and lists it no more.
  await page.getByText('disconnected').first().waitFor();
  await page.goto(ui.url + '/#/sockets/');
  await page.getByText(bob.id).first().waitFor();
  await page.locator('tbody tr', { hasText: aliceId }).first().waitFor({ state: 'detached' });
  assert.equal(bob.connected, true, 'only the chosen socket was disconnected');
  await page.context().close();
  await srv.stop();
});

test('a two-node cluster: the UI attached to one node shows both servers and the sockets of both', { timeout: 120_000 }, async () => {
  const redis = await startRedis();
  try {
    const env = (id) => ({ env: adminEnv({ NODE_ID: id, ADAPTER: 'redis', REDIS_URL: redis.url }) });
    const a = await startServer(env('sb-a'));
    const b = await startServer(env('sb-b'));
    const onA = await connect(a.url, { user: 'carol', transports: ['websocket'] });
    const onB = await connect(b.url, { user: 'dave', transports: ['websocket'] });
    await joinOk(onB, 'cluster-room');

    const page = await login(a.url);
    await page.locator('.v-dialog').first().waitFor({ state: 'hidden' });
    await page.goto(ui.url + '/#/servers/');
    await page.getByText('sb-a').first().waitFor();
    await page.getByText('sb-b').first().waitFor();
    await shot(page, 'cluster-servers');
    await page.goto(ui.url + '/#/sockets/');
    await page.getByText(onA.id).first().waitFor();
    await page.getByText(onB.id).first().waitFor();

    // The disconnect button reaches the other node through the adapter.
    const gone = once(onB, 'disconnect', STEP);
    await page.locator('tr', { hasText: onB.id }).locator('button').last().click();
    assert.equal((await gone)[0], 'io server disconnect');
    await page.context().close();
    await a.stop();
    await b.stop();
  } finally {
    await redis.stop();
  }
});
