// Why stickiness is required: deploy/haproxy.cfg with its `cookie SERVERID` line removed is plain round-robin.
// A polling client's requests then land on nodes that do not know its session: HTTP 400 "Session ID unknown", and
// socket.io-client never connects. WebSocket-only clients hold one connection and work without stickiness.
import assert from 'node:assert/strict';
import { describe, before, after, afterEach, closeClients, collect, waitFor, ack } from '../helpers/index.js';
import { httpRequest } from '../helpers/raw.js';
import { joinOk } from '../helpers/room.js';
import { startCluster, clusterClient, nodeConnections, test } from './harness.js';

describe('plain round-robin HAProxy (no stickiness)', () => {
  let c;
  before(async () => {
    c = await startCluster({ balancer: 'haproxy-roundrobin' });
  });
  afterEach(() => closeClients());
  after(async () => {
    closeClients();
    await c?.stop();
  });

  test('the Engine.IO session of a polling client is unknown to the next node: HTTP 400 Session ID unknown', async () => {
    const hs = await httpRequest(`${c.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(hs.status, 200, JSON.stringify(hs));
    const { sid } = JSON.parse(hs.body.slice(1));
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const r = await httpRequest(`${c.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`, { timeoutMs: 30000 });
      statuses.push(r);
      if (r.status === 400) break;
    }
    const bad = statuses.find((r) => r.status === 400);
    assert.ok(bad, `no request of the session reached another node: ${JSON.stringify(statuses)}`);
    assert.deepEqual(JSON.parse(bad.body), { code: 1, message: 'Session ID unknown' });
  });

  test('socket.io-client with default transports (polling first) cannot connect: 400 Session ID unknown', async (t) => {
    // One client at a time, as the requests of a lone client alternate strictly between the nodes. (With many clients
    // connecting at once, a client's first requests can land on one node by chance and connect for a moment, until
    // one of its next requests reaches another node.)
    const N = 12;
    const results = [];
    for (let i = 0; i < N; i++) {
      const s = clusterClient(c.url, { user: `rr${i}`, timeout: 8000 });
      results.push(await new Promise((resolve) => {
        const timer = setTimeout(() => resolve({ timeout: true }), 10000);
        s.once('connect', () => { clearTimeout(timer); resolve({ connected: true }); });
        s.once('connect_error', (err) => { clearTimeout(timer); resolve({ err }); });
      }));
      s.disconnect();
    }
    const connectedCount = results.filter((r) => r.connected).length;
    const errors = results.filter((r) => r.err).map((r) => r.err);
    t.diagnostic(`round-robin, default transports: ${connectedCount}/${N} connected; errors: ${JSON.stringify([...new Set(errors.map((e) => `${e.message} ${e.description}`))])}`);
    assert.equal(connectedCount, 0, `${connectedCount} of ${N} polling clients connected through a round-robin balancer`);
    assert.equal(errors.length, N, `every client gets connect_error: ${JSON.stringify(results.map((r) => Object.keys(r)[0]))}`);
    for (const err of errors) {
      // engine.io-client's transport error: "xhr poll error" / "xhr post error", description = the HTTP status, context = the XHR.
      assert.match(err.message, /^xhr (poll|post) error$/, `connect_error: ${err.message}`);
      assert.equal(err.type, 'TransportError');
      assert.equal(err.description, 400, `HTTP status of the failed request: ${err.description}`);
      // The response body, when the XHR still holds it (engine.io-client aborts the request as it reports the error,
      // which may clear it first); the previous test shows the body of the same 400 on the wire.
      const body = err.context?.readyState === 4 ? err.context.responseText : undefined;
      if (body) assert.deepEqual(JSON.parse(body), { code: 1, message: 'Session ID unknown' });
    }
  });

  test('websocket-only clients connect through round-robin, spread over the nodes, and chat across nodes', async (t) => {
    const N = 30;
    const sockets = Array.from({ length: N }, (_, i) => clusterClient(c.url, { user: `ws${i}`, transports: ['websocket'] }));
    await Promise.all(sockets.map((s) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('websocket-only client did not connect')), 10000);
      s.once('connect', () => { clearTimeout(timer); resolve(); });
      s.once('connect_error', (e) => { clearTimeout(timer); reject(e); });
    })));
    const counts = await waitFor(async () => {
      const m = await Promise.all(c.nodes.map((n) => nodeConnections(n.url)));
      return m.reduce((a, x) => a + x.websocket, 0) === N ? m.map((x) => x.websocket) : null;
    }, 5000, { message: 'nodes count the websocket clients' });
    t.diagnostic(`round-robin, websocket only: ${N} connected, per node ${counts.join('/')}`);
    for (const n of counts) assert.ok(n * 6 >= N, `spread ${counts.join('/')}`);

    const room = 'rr-ws';
    for (const s of sockets) await joinOk(s, room);
    const got = sockets.map((s) => collect(s, 'message'));
    const senders = sockets.slice(0, 6);
    const acks = await Promise.all(senders.map((s, i) => ack(s, 'message', { roomId: room, text: `ws-${i}` })));
    for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
    await Promise.all(got.map((g) => g.waitCount(senders.length, 5000)));
    for (const g of got) assert.deepEqual(g.map((m) => m.text).sort(), senders.map((_, i) => `ws-${i}`).sort());
  });
});
