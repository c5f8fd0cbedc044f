// Per-client-IP limits and session binding behind the deploy/ balancers (HAProxy and nginx): the nodes must see the
// real client address, which the balancers name in X-Forwarded-For and the nodes believe because the harness sets
// TRUSTED_PROXIES=127.0.0.1/32 (the balancers connect to the nodes from 127.0.0.1).
//
// Clients bind distinct loopback source addresses (Linux routes all of 127.0.0.0/8 to lo): an "attacker" at
// 127.0.0.2 opens sessions until every node refuses it, while a "user" at 127.0.0.3 connects and gets acks. The per-IP
// cap (MAX_CONNECTIONS_PER_IP) is per node, so across the three nodes the attacker is admitted exactly 3 x cap times,
// each node refusing (HTTP 429 + Retry-After) exactly when it holds `cap` of its sessions; which node served each
// attempt is read from the nodes' /metrics. A last cluster runs without TRUSTED_PROXIES: every client then shares
// the balancer's address, so once the attacker fills the cap the user is refused too, and a session id stolen by
// another client is accepted (SESSION_BIND_IP cannot tell them apart) — which is why TRUSTED_PROXIES matters.
import assert from 'node:assert/strict';
import http from 'node:http';
import WebSocket from 'ws';
import { describe, before, after, afterEach, closeClients, client, ack, token, waitFor, once } from '../helpers/index.js';
import { startCluster, upgraded, test } from './harness.js';

const CAP = 5;
const ATTACKER = '127.0.0.2';
const USER = '127.0.0.3';
const ENV = { MAX_CONNECTIONS_PER_IP: String(CAP), HANDSHAKE_RATE_PER_IP: '0' };
const MAX_ATTEMPTS = 3 * CAP + 15; // bound of the attacker's loop

// ---------------------------------------------------------------------------------------------------------------
// Node metrics

/** { ws, polling, ipLimit, mismatch } of one node from its /metrics. */
async function nodeState(nodeUrl) {
  const res = await fetch(`${nodeUrl}/metrics`, { signal: AbortSignal.timeout(3000) });
  const text = await res.text();
  const num = (re) => {
    const m = text.match(re);
    return m ? Number(m[1]) : 0; // a counter not yet incremented may be absent
  };
  return {
    ws: num(/^switchboard_connections\{transport="websocket"\} ([0-9.e+]+)$/m),
    polling: num(/^switchboard_connections\{transport="polling"\} ([0-9.e+]+)$/m),
    ipLimit: num(/^switchboard_handshake_refusals_total\{reason="ip_limit"\} ([0-9.e+]+)$/m),
    mismatch: num(/^switchboard_session_ip_mismatch_total ([0-9.e+]+)$/m),
  };
}

/** { node1: state, node2: state, node3: state }. */
async function snapshot(c) {
  const states = await Promise.all(c.nodes.map((n) => nodeState(n.url)));
  return Object.fromEntries(c.nodes.map((n, i) => [n.id, states[i]]));
}

const total = (snap, key) => Object.values(snap).reduce((s, v) => s + v[key], 0);

// ---------------------------------------------------------------------------------------------------------------
// Clients from a given source address

/**
 * One socket.io-client session over WebSocket only (engine.io-client forwards `localAddress` to `ws`), from `from`.
 * Resolves { ok: true, socket } on connect, { ok: false, status, err } on connect_error (status: the HTTP status of
 * the refused upgrade, from ws's "Unexpected server response: N").
 */
async function wsSession(url, from, user) {
  const socket = client(url, { user, transports: ['websocket'], localAddress: from, timeout: 5000 });
  try {
    await once(socket, 'connect', 8000, { rejectOn: ['connect_error'] });
    return { ok: true, socket };
  } catch (err) {
    socket.disconnect();
    const detail = err?.description?.message || err?.message || String(err);
    const m = /Unexpected server response: (\d+)/.exec(detail);
    return { ok: false, status: m ? Number(m[1]) : null, err: detail };
  }
}

/** A raw WebSocket upgrade from `from`: { status, retryAfter, body } (101 when accepted; the socket is closed). */
function rawUpgrade(url, from) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, { localAddress: from, handshakeTimeout: 5000 });
    const t = setTimeout(() => { ws.terminate(); resolve({ status: null, error: 'timeout' }); }, 8000);
    ws.on('unexpected-response', (req, res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        clearTimeout(t);
        resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'], body: Buffer.concat(parts).toString() });
      });
      res.on('error', () => { clearTimeout(t); resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] }); });
    });
    ws.on('open', () => { clearTimeout(t); ws.terminate(); resolve({ status: 101 }); });
    ws.on('error', (e) => { clearTimeout(t); resolve({ status: null, error: e.message }); });
  });
}

/** One HTTP request from `from` (agent-less, bounded) → { status, headers, body } or { error }. */
function request(url, { from, method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve) => {
    const req = http.request(url, { method, headers, localAddress: from, agent: false, timeout: 8000 }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString() }));
      res.on('error', (error) => resolve({ status: res.statusCode, error }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error }));
    req.end(body);
  });
}

/** Cookie header echoing every Set-Cookie of a response (the balancer's and the node's sticky cookies). */
function cookieHeader(res) {
  return (res.headers?.['set-cookie'] || []).map((l) => l.split(';')[0].trim()).join('; ');
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

/**
 * The attacker opens WebSocket sessions one at a time until every node has refused it (bounded by MAX_ATTEMPTS).
 * After each attempt the nodes' metrics say which node served it (its websocket gauge or its ip_limit counter
 * moved by one); each admission must find that node below the cap, each refusal must be a 429 at exactly the cap.
 */
async function fillFrom(t, c, from, label) {
  const sockets = [];
  const refusals = [];
  const perNode = Object.fromEntries(c.nodes.map((n) => [n.id, { admitted: 0, refused: 0 }]));
  let before = await snapshot(c);
  for (let i = 0; i < MAX_ATTEMPTS && !Object.values(perNode).every((p) => p.refused > 0); i++) {
    const r = await wsSession(c.url, from, `${label}${i}`);
    let after;
    await waitFor(async () => {
      after = await snapshot(c);
      return total(after, 'ws') + total(after, 'ipLimit') === total(before, 'ws') + total(before, 'ipLimit') + 1;
    }, 5000, { message: () => `${label} attempt ${i} (${r.ok ? 'admitted' : `refused ${r.status}`}): nodes moved by other than one: ${JSON.stringify({ before, after })}` });
    const moved = c.nodes.map((n) => n.id).filter((id) => after[id].ws !== before[id].ws || after[id].ipLimit !== before[id].ipLimit);
    assert.equal(moved.length, 1, `attempt ${i}: exactly one node served it: ${JSON.stringify({ before, after })}`);
    const id = moved[0];
    if (r.ok) {
      sockets.push(r.socket);
      assert.equal(after[id].ws, before[id].ws + 1, `attempt ${i} admitted: ${id}'s websocket count grows`);
      assert.ok(before[id].ws < CAP, `attempt ${i}: ${id} admitted session ${before[id].ws + 1} of ${from} beyond its cap ${CAP}`);
      perNode[id].admitted++;
    } else {
      refusals.push(r);
      assert.equal(r.status, 429, `attempt ${i}: refused with HTTP 429, got ${r.status} (${r.err})`);
      assert.equal(after[id].ipLimit, before[id].ipLimit + 1, `attempt ${i}: ${id} counts an ip_limit refusal`);
      assert.equal(before[id].ws, CAP, `attempt ${i}: ${id} refused ${from} while holding ${before[id].ws} of its sessions, not its cap ${CAP}`);
      perNode[id].refused++;
    }
    before = after;
  }
  t.diagnostic(`${label} from ${from}: ${sockets.length} admitted, ${refusals.length} refused; per node ${JSON.stringify(perNode)}`);
  for (const [id, p] of Object.entries(perNode)) {
    assert.ok(p.refused > 0, `${id} never refused ${from} in ${MAX_ATTEMPTS} attempts: ${JSON.stringify(perNode)}`);
    assert.equal(p.admitted, CAP, `${id} admitted ${p.admitted} sessions of ${from}, want its cap ${CAP}`);
  }
  assert.equal(sockets.length, 3 * CAP, 'across the cluster the attacker gets exactly 3 x cap sessions');
  return { sockets, refusals, perNode };
}

/** A user at USER, default transports (polling, then upgrade), through the balancer with the sticky cookie jar. */
function userClient(url, user) {
  return client(url, {
    user,
    withCredentials: true, // engine.io-client's cookie jar: the sticky cookie across polling and the upgrade
    agent: new http.Agent({ localAddress: USER }), // polling requests (and the upgrade) from USER
    localAddress: USER,
    timeout: 5000,
  });
}

/** Polling handshake from `owner`, then the same sid (and sticky cookies) used from `thief`: { thief, owner }. */
async function stealSession(url, owner, thief) {
  const hs = await request(`${url}/socket.io/?EIO=4&transport=polling`, { from: owner });
  assert.equal(hs.status, 200, `polling handshake from ${owner}: ${JSON.stringify(hs)}`);
  const sid = JSON.parse(hs.body.match(/^0(\{.*\})/)[1]).sid;
  const headers = { Cookie: cookieHeader(hs), 'Content-Type': 'text/plain;charset=UTF-8' };
  const base = `${url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
  const body = `40${JSON.stringify({ token: token('owner') })}`;
  const stolen = await request(base, { from: thief, method: 'POST', headers, body });
  const own = await request(base, { from: owner, method: 'POST', headers, body });
  await request(base, { from: owner, method: 'POST', headers, body: '1' }); // Engine.IO close: no session left over
  return { stolen, own };
}

for (const kind of ['haproxy', 'nginx']) {
  describe(`client IPs behind ${kind} with TRUSTED_PROXIES=127.0.0.1/32`, () => {
    let c;
    before(async () => {
      c = await startCluster({ balancer: kind, env: ENV });
    });
    afterEach(async () => {
      closeClients();
      if (c) {
        await waitFor(async () => {
          const s = await snapshot(c);
          return total(s, 'ws') === 0 && total(s, 'polling') === 0;
        }, 10000, { message: 'sessions of the test closed on every node' });
      }
    });
    after(async () => {
      closeClients();
      await c?.stop();
    });

    test(`${kind}: an attacker at ${ATTACKER} is capped at ${CAP} sessions per node (429) while a user at ${USER} connects and gets acks`, async (t) => {
      const start = await snapshot(c);
      for (const [id, s] of Object.entries(start)) assert.equal(s.ipLimit, 0, `${id}: no ip_limit refusal before the attacker exceeds its cap`);

      const { refusals } = await fillFrom(t, c, ATTACKER, `atk-${kind}-`);
      assert.ok(refusals.length >= 3 && refusals.every((r) => r.status === 429), `refusals: ${JSON.stringify(refusals)}`);

      // The refusal carries Retry-After (raw upgrade, so the response headers are visible).
      const raw = await rawUpgrade(c.url, ATTACKER);
      assert.equal(raw.status, 429, `raw upgrade from the capped attacker: ${JSON.stringify(raw)}`);
      assert.match(String(raw.retryAfter), /^[1-9][0-9]*$/, `Retry-After on the 429: ${JSON.stringify(raw)}`);
      assert.match(raw.body, /Too many sessions from this address/);
      const full = await snapshot(c);

      // The user, on another address, is not affected: three sockets (round-robin: one per node) with default
      // transports connect, upgrade, join a room and exchange a message.
      const users = [0, 1, 2].map((i) => userClient(c.url, `user-${kind}-${i}`));
      await Promise.all(users.map((s) => once(s, 'connect', 10000, { rejectOn: ['connect_error'] }).catch((err) => {
        const why = err?.description?.message ?? err?.description ?? '';
        throw new Error(`user at ${USER} refused while the attacker holds its cap: ${err.message} ${why}`);
      })));
      await Promise.all(users.map((s) => upgraded(s, 10000)));
      const room = `ip-${kind}`;
      for (const s of users) {
        const a = await ack(s, 'join-room', room);
        assert.equal(a.ok, true, `join-room ack: ${JSON.stringify(a)}`);
        assert.equal(a.room, room);
      }
      const got = users.map((s) => once(s, 'message', 5000));
      const m = await ack(users[0], 'message', { roomId: room, text: 'hello from 127.0.0.3', clientId: `cid-${kind}` });
      assert.equal(m.ok, true, `message ack: ${JSON.stringify(m)}`);
      assert.equal(typeof m.id, 'string');
      for (const [msg] of await Promise.all(got)) assert.equal(msg.text, 'hello from 127.0.0.3');

      const end = await snapshot(c);
      assert.equal(total(end, 'ipLimit'), total(full, 'ipLimit'), 'the user at another address was never refused by the per-IP cap');
      assert.equal(total(end, 'ws'), 3 * CAP + users.length, 'attacker sessions and user sessions are all open');
      t.diagnostic(`${kind}: ip_limit refusals per node ${JSON.stringify(Object.fromEntries(Object.entries(end).map(([k, v]) => [k, v.ipLimit])))}`);
    });

    test(`${kind}: a session id used from another client address is unknown (SESSION_BIND_IP sees the real client)`, async () => {
      const before = await snapshot(c);
      const { stolen, own } = await stealSession(c.url, USER, ATTACKER);
      assert.equal(stolen.status, 400, `POST with a stolen sid from ${ATTACKER}: ${JSON.stringify(stolen)}`);
      assert.match(stolen.body, /Session ID unknown/);
      assert.equal(own.status, 200, `the owner's own POST still works: ${JSON.stringify(own)}`);
      const after = await snapshot(c);
      assert.equal(total(after, 'mismatch'), total(before, 'mismatch') + 1, 'one session_ip_mismatch counted');
    });
  });
}

describe('client IPs behind haproxy WITHOUT TRUSTED_PROXIES: every client is the balancer', () => {
  let c;
  before(async () => {
    c = await startCluster({ balancer: 'haproxy', env: { ...ENV, TRUSTED_PROXIES: '' } });
  });
  afterEach(() => closeClients());
  after(async () => {
    closeClients();
    await c?.stop();
  });

  test(`untrusted haproxy: once the attacker at ${ATTACKER} fills the cap, the user at ${USER} is refused too`, async (t) => {
    await fillFrom(t, c, ATTACKER, 'atk-untrusted-');
    const before = await snapshot(c);
    // Three attempts: round-robin tries every node, and every node counts the user as the attacker's address.
    const tries = [];
    for (let i = 0; i < 3; i++) tries.push(await wsSession(c.url, USER, `user-untrusted-${i}`));
    for (const r of tries) {
      assert.equal(r.ok, false, `user at ${USER} admitted although the nodes cannot tell it from the attacker`);
      assert.equal(r.status, 429, `user refused with 429: ${r.err}`);
    }
    const after = await snapshot(c);
    assert.equal(total(after, 'ipLimit'), total(before, 'ipLimit') + 3, 'the user\'s attempts counted as ip_limit refusals');

    // And session binding cannot tell the two apart either: the stolen sid is accepted (attacker sessions closed
    // first, or the owner's own handshake would be refused by the shared cap).
    closeClients();
    await waitFor(async () => total(await snapshot(c), 'ws') === 0, 10000, { message: 'attacker sessions closed' });
    const { stolen } = await stealSession(c.url, USER, ATTACKER);
    assert.equal(stolen.status, 200, `without TRUSTED_PROXIES the thief and the owner share 127.0.0.1: ${JSON.stringify(stolen)}`);
  });
});
