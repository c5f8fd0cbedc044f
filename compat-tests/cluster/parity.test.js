// Parity with Node on cluster operations (issue 3): one scenario, run against a Node-only cluster (2 ×
// compat-tests/bench/node-server.js with @socket.io/redis-adapter on one Redis) and against 2 Switchboard nodes
// (ADAPTER=redis), with the official socket.io-client connected directly to each node (no balancer). Each run
// produces an outcome record (what every client observed, acks, fetchSockets results, disconnect reasons) with ids
// normalised to labels; the two records must be deepEqual.
//
// Scenario (room R, clients: alice@1, bob@2, erin@2 in R; dave@1, carol@2 outside it):
//   1. alice (node 1) and then bob (node 2) send a room message: every member gets each exactly once, non-members none;
//   2. @socket.io/redis-emitter to(R).emit / emit reach the right clients on both nodes;
//   3. emitter in(R).socketsJoin(O) then to(O).emit reaches them; fetchSockets() from an extra in-process Node
//      socket.io server (redis adapter, same Redis and prefix) returns the sockets of both nodes with their rooms;
//      in(R).socketsLeave(O) then to(O).emit reaches nobody; in(R).disconnectSockets() gives the members
//      `io server disconnect` and leaves the others connected (members of one node disconnected later in the batch
//      get the earlier ones' user-left, as in Node).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { Emitter } from '@socket.io/redis-emitter';
import { createClient } from 'redis';
import {
  describe, before, after, afterEach, closeClients, client, ack, sleep, waitFor, freePort, startServer, ROOT, TEST_SECRET,
} from '../helpers/index.js';
import { startCluster, startRedis, connected, redisAdapterClients, test } from './harness.js';

const NODE_SERVER = path.join(ROOT, 'compat-tests', 'bench', 'node-server.js');
const QUIET_MS = 400;
// Per-connection events outside this comparison: Switchboard's `session` {userId, name} on every new connection
// (docs/CONTRACT.md, "Delivery"); node-server.js does not emit it.
const SYNC_EVENT = '__parity_sync';
const IGNORED_EVENTS = new Set(['session', SYNC_EVENT]); // after a delivery, how long we keep listening for duplicates / strays

/** Starts n node-server.js processes on the Redis adapter (a Node-only cluster). */
async function startNodeCluster(redisUrl, n = 2) {
  const nodes = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = await startServer({
        bin: process.execPath,
        args: [NODE_SERVER],
        name: `node-ref${i + 1}`,
        env: { REDIS_URL: redisUrl, NODE_ID: `node-ref${i + 1}`, JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'warn' },
      });
      nodes.push(s);
    }
  } catch (err) {
    await Promise.all(nodes.map((s) => s.stop(3000)));
    throw err;
  }
  return { nodes, stop: () => Promise.all(nodes.map((s) => s.stop(3000))) };
}

/** An extra in-process Node socket.io server on the Redis adapter (default prefix "socket.io"): used for fetchSockets. */
async function startProbe(redisUrl) {
  const [pub, sub] = await redisAdapterClients(redisUrl);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub, { requestsTimeout: 5000 }) });
  const port = await freePort();
  await new Promise((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
  return {
    io,
    async close() {
      await new Promise((resolve) => io.close(() => resolve()));
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

/** Replaces ids/timestamps by stable markers and socket ids by client labels (recursively). */
function normalise(v, ids) {
  if (Array.isArray(v)) return v.map((x) => normalise(x, ids));
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'id' && (typeof x === 'string' || typeof x === 'number')) out[k] = ids.has(x) ? ids.get(x) : '<id>';
      else if (k === 'ts') out[k] = Number.isInteger(x) ? '<ts:int>' : `<ts:${typeof x}>`;
      else out[k] = normalise(x, ids);
    }
    return out;
  }
  if (typeof v === 'string' && ids.has(v)) return ids.get(v);
  return v;
}

/**
 * The scenario. urls: [node1Url, node2Url]; redisUrl: the cluster's Redis. Returns the outcome record.
 * Every wait is bounded; an expected event that does not arrive fails the run with a clear message.
 */
async function scenario(label, urls, redisUrl) {
  const R = 'parity-room';
  const O = 'parity-other';
  const out = { steps: {} };
  const emitterClient = createClient({ url: redisUrl });
  emitterClient.on('error', () => {});
  await emitterClient.connect();
  const emitter = new Emitter(emitterClient);
  const probe = await startProbe(redisUrl);
  try {
    const spec = [['alice', 0, true], ['dave', 0, false], ['bob', 1, true], ['erin', 1, true], ['carol', 1, false]];
    const cl = {};
    const ids = new Map();
    const logs = {};
    for (const [user, node] of spec) {
      const s = await connected(client(urls[node], { user }));
      cl[user] = s;
      ids.set(s.id, `<sid:${user}>`);
      logs[user] = [];
      s.onAny((event, ...args) => {
        if (IGNORED_EVENTS.has(event)) return;
        // Only the payload: Switchboard appends the connection-state-recovery offset (a string) to broadcasts, as
        // Node does with its in-memory adapter; Node on @socket.io/redis-adapter has no recovery and appends none.
        logs[user].push([event, args[0]]);
      });
      s.on('disconnect', (reason) => logs[user].push(['<disconnect>', reason]));
    }
    const members = spec.filter(([, , m]) => m).map(([u]) => u);
    const everyone = spec.map(([u]) => u);
    // Reads and clears the event logs (normalised), after waiting until `expect(logs)` holds and QUIET_MS more.
    const take = async (what, expect) => {
      await waitFor(() => expect(logs), 5000, { message: () => `${label}: ${what}: ${JSON.stringify(logs)}` });
      await sleep(QUIET_MS);
      const snap = {};
      for (const u of everyone) snap[u] = normalise(logs[u].splice(0), ids);
      return snap;
    };
    const count = (u, ev) => logs[u].filter(([e]) => e === ev).length;

    // Barrier across the cluster: an emitter broadcast published after an ack reaches every client only after
    // whatever the acked operation published (each node reads its Redis subscription in order). Without it, a
    // user-joined published by node 1 may reach node 2 after node 2 has already let a later joiner in (seen on
    // both Node and Switchboard): a race of the test, not a parity difference. The barrier events are not recorded.
    let syncN = 0;
    const sync = async () => {
      const n = ++syncN;
      const seen = new Set();
      const fns = everyone.map((u) => {
        const fn = (m) => { if (m === n) seen.add(u); };
        cl[u].on(SYNC_EVENT, fn);
        return [u, fn];
      });
      try {
        emitter.emit(SYNC_EVENT, n);
        await waitFor(() => seen.size === everyone.length, 5000, { message: () => `${label}: sync ${n}: ${[...seen]}` });
      } finally {
        for (const [u, fn] of fns) cl[u].off(SYNC_EVENT, fn);
      }
    };

    // 0. joins (sequential, each settled cluster-wide: user-joined goes to the members already in the room)
    const joins = {};
    for (const u of members) {
      const a = await ack(cl[u], 'join-room', R);
      joins[u] = { ok: a.ok, room: a.room };
      await sync();
    }
    out.steps.join = { acks: joins, events: await take('joins', () => count('alice', 'user-joined') >= 2 && count('bob', 'user-joined') >= 1) };

    // 1. room message from node 1, then from node 2
    const a1 = await ack(cl.alice, 'message', { roomId: R, text: 'from alice@node1' });
    out.steps.msgNode1 = {
      ack: normalise(a1, ids),
      events: await take('message from node 1', () => members.every((u) => count(u, 'message') >= 1)),
    };
    const a2 = await ack(cl.bob, 'message', { roomId: R, text: 'from bob@node2' });
    out.steps.msgNode2 = {
      ack: normalise(a2, ids),
      events: await take('message from node 2', () => members.every((u) => count(u, 'message') >= 1)),
    };

    // 2. emitter: to(room).emit and emit (whole namespace)
    emitter.to(R).emit('announce', { what: 'room', n: 1 });
    out.steps.emitterRoom = { events: await take('emitter to(room)', () => members.every((u) => count(u, 'announce') >= 1)) };
    emitter.emit('broadcast', { what: 'all', n: 2 });
    out.steps.emitterAll = { events: await take('emitter emit', () => everyone.every((u) => count(u, 'broadcast') >= 1)) };

    // 3. socketsJoin → to(other).emit; fetchSockets from the probe
    emitter.in(R).socketsJoin(O);
    const fetchRooms = async (room) => {
      const socks = await probe.io.in(room).fetchSockets();
      return socks
        .map((s) => ({ id: ids.get(s.id) ?? `<unknown:${s.id}>`, rooms: [...s.rooms].map((r) => ids.get(r) ?? r).sort() }))
        .sort((x, y) => (x.id < y.id ? -1 : 1));
    };
    // socketsJoin is fire-and-forget: wait (bounded) until the probe sees every member in O.
    let inOther = [];
    await waitFor(async () => (inOther = await fetchRooms(O)).length >= members.length, 8000, {
      message: () => `${label}: socketsJoin: fetchSockets(${O}) = ${JSON.stringify(inOther)}`,
    }).catch(() => {});
    emitter.to(O).emit('other-event', { n: 3 });
    out.steps.socketsJoin = {
      fetchOther: inOther,
      events: await take('to(other) after socketsJoin', () => members.every((u) => count(u, 'other-event') >= 1)),
    };
    out.steps.fetchSockets = {
      room: await fetchRooms(R),
      namespace: (await probe.io.fetchSockets()).map((s) => ids.get(s.id) ?? `<unknown:${s.id}>`).sort(),
    };

    // socketsLeave → to(other).emit reaches nobody
    emitter.in(R).socketsLeave(O);
    let stillOther = [];
    await waitFor(async () => (stillOther = await fetchRooms(O)).length === 0, 8000).catch(() => {});
    emitter.to(O).emit('other-event', { n: 4 });
    // barrier: a room broadcast sent after it has arrived at every member
    emitter.to(R).emit('barrier', { n: 5 });
    out.steps.socketsLeave = {
      fetchOther: stillOther,
      events: await take('after socketsLeave', () => members.every((u) => count(u, 'barrier') >= 1)),
    };

    // disconnectSockets
    emitter.in(R).disconnectSockets();
    out.steps.disconnectSockets = {
      events: await take('disconnectSockets', () => members.every((u) => count(u, '<disconnect>') >= 1)),
      connected: Object.fromEntries(everyone.map((u) => [u, cl[u].connected])),
    };
    out.steps.afterDisconnect = { fetchRoom: await fetchRooms(R), namespace: (await probe.io.fetchSockets()).map((s) => ids.get(s.id) ?? '<unknown>').sort() };
    return out;
  } finally {
    closeClients();
    await emitterClient.quit().catch(() => {});
    await probe.close().catch(() => {});
  }
}

describe('cluster parity: the same scenario on a Node-only cluster and on Switchboard', () => {
  const cleanups = [];
  const results = {};
  afterEach(() => closeClients());
  after(async () => {
    closeClients();
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  });

  test('Node-only cluster (2 × node-server.js + @socket.io/redis-adapter)', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const nc = await startNodeCluster(redis.url);
    cleanups.push(() => nc.stop());
    results.node = await scenario('node', nc.nodes.map((n) => n.url), redis.url);
  });

  test('Switchboard cluster (2 nodes, ADAPTER=redis)', async () => {
    const c = await startCluster({ balancer: null, nodes: 2 });
    cleanups.push(() => c.stop());
    results.switchboard = await scenario('switchboard', c.nodes.map((n) => n.url), c.redis.url);
  });

  // disconnectSockets: when it disconnects several sockets of one node, Node runs each disconnect (and its user-left)
  // at once, so the ones disconnected later still receive the earlier ones' user-left, while messages published
  // after the request reach none of them. Switchboard's adapter does the same (one socket at a time, each after its
  // own broadcasts came back from Redis; other nodes' messages held until the batch is done): compared strictly.
  test('Switchboard outcomes equal Node outcomes', () => {
    assert.ok(results.node, 'the Node run did not complete');
    assert.ok(results.switchboard, 'the Switchboard run did not complete');
    // PARITY_DUMP=<file>: write both outcome records there (JSON) for inspection.
    if (process.env.PARITY_DUMP) fs.writeFileSync(process.env.PARITY_DUMP, `${JSON.stringify(results, null, 1)}\n`);
    // Every differing step is reported (Switchboard = actual, Node = expected), not only the first.
    const diffs = [];
    assert.deepEqual(Object.keys(results.switchboard.steps), Object.keys(results.node.steps));
    for (const step of Object.keys(results.node.steps)) {
      try {
        assert.deepEqual(results.switchboard.steps[step], results.node.steps[step]);
      } catch (err) {
        diffs.push(`step ${step}: Switchboard (actual) vs Node (expected)\n${err.message}`);
      }
    }
    assert.equal(diffs.length, 0, `Switchboard differs from Node in ${diffs.length} step(s):\n\n${diffs.join('\n\n')}`);
  });
});
