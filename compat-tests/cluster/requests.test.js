// Requests Switchboard originates (issue 3): a Switchboard node (the example-embed binary with its EXAMPLE_ADMIN=1
// test hook, namespace /admin, which runs the cluster-wide operations of namespace "/") and a Node socket.io 4.8
// server with @socket.io/redis-adapter 8.3 on the same Redis and prefix. Switchboard's fetchSockets, serverSideEmit
// (with and without ack), socketsJoin, socketsLeave and disconnectSockets are answered / carried out by the Node
// server; the Node server's serverSideEmit (with and without ack) reaches Switchboard's handler.
import assert from 'node:assert/strict';
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { describe, before, after, afterEach, closeClients, ack, client, freePort, startServer, waitFor, once } from '../helpers/index.js';
import { joinOk } from '../helpers/room.js';
import { startRedis, connected, redisAdapterClients, waitReady, test } from './harness.js';

/** A Node socket.io server on the Redis adapter: join-room, and server-side listeners recording what they get. */
async function startNodeServer(redisUrl) {
  const [pub, sub] = await redisAdapterClients(redisUrl);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub, { requestsTimeout: 3000 }) });
  const notes = [];
  io.on('connection', (socket) => {
    socket.on('join-room', (roomId, cb) => {
      socket.join(roomId);
      cb?.({ ok: true, room: roomId, members: [] });
    });
  });
  // Server-side events from other servers (Switchboard's serverSideEmit).
  io.on('note', (...args) => notes.push(args));
  io.on('ping-node', (arg, cb) => cb({ from: 'node', arg }));
  const port = await freePort();
  await new Promise((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
  return {
    io,
    notes,
    url: `http://127.0.0.1:${port}`,
    async close() {
      io.disconnectSockets(true);
      await new Promise((resolve) => io.close(() => resolve()));
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

/** Calls an /admin event and returns its result (fails on a refused event). */
async function admin(socket, event, payload = {}) {
  const a = await ack(socket, event, payload);
  assert.equal(a.ok, true, `${event}: ${JSON.stringify(a)}`);
  return a;
}

describe('requests from Switchboard answered by a Node socket.io server (@socket.io/redis-adapter)', () => {
  let redis;
  let sb;
  let nodeSrv;
  before(async () => {
    redis = await startRedis();
    sb = await startServer({
      bin: 'example-embed',
      name: 'embed1',
      env: { ADAPTER: 'redis', REDIS_URL: redis.url, NODE_ID: 'embed1', EXAMPLE_ADMIN: '1', LOG_LEVEL: process.env.CLUSTER_LOG_LEVEL || 'warn' },
    });
    await waitReady(sb.url, 200, 15000);
    nodeSrv = await startNodeServer(redis.url);
  });
  afterEach(() => closeClients());
  after(async () => {
    closeClients();
    if (nodeSrv) await nodeSrv.close();
    await sb?.stop(3000);
    await redis?.stop();
  });

  /** Node clients n1 (in R) and n2 (not), a Switchboard client s1 (in R), and an /admin client on Switchboard. */
  async function setup() {
    const n1 = await connected(client(nodeSrv.url, { user: 'nina' }));
    const n2 = await connected(client(nodeSrv.url, { user: 'ned' }));
    assert.equal((await ack(n1, 'join-room', 'R')).ok, true);
    const s1 = await connected(client(sb.url, { user: 'sam' }));
    await joinOk(s1, 'R');
    const adm = await connected(client(sb.url, { user: 'root', nsp: '/admin' }));
    await waitFor(async () => (await admin(adm, 'server-count')).count === 2, 5000, { message: 'both servers counted (NUMSUB)' });
    return { n1, n2, s1, adm };
  }

  test('fetchSockets: the Node server answers with its sockets', async () => {
    const { n1, n2, s1, adm } = await setup();
    const r = await admin(adm, 'fetch-sockets', { rooms: ['R'] });
    assert.equal(r.error, null);
    const got = r.sockets.map((s) => s.id).sort();
    assert.deepEqual(got, [n1.id, s1.id].sort(), 'this node\'s and the Node server\'s members of R');
    const fromNode = r.sockets.find((s) => s.id === n1.id);
    assert.deepEqual(fromNode.rooms.sort(), [n1.id, 'R'].sort());
    const all = await admin(adm, 'fetch-sockets', { except: ['R'] });
    assert.ok(all.sockets.some((s) => s.id === n2.id), 'n2 (outside R) in fetchSockets(except R)');
    assert.ok(!all.sockets.some((s) => s.id === n1.id));
  });

  test('serverSideEmit and serverSideEmitWithAck reach the Node server\'s listeners', async () => {
    const { adm } = await setup();
    nodeSrv.notes.length = 0;
    const r = await admin(adm, 'server-side-emit', { event: 'note', args: ['hello', { k: 1 }] });
    assert.equal(r.error, null);
    await waitFor(() => nodeSrv.notes.length === 1, 3000, { message: 'the Node server gets the note' });
    assert.deepEqual(nodeSrv.notes[0], ['hello', { k: 1 }]);
    const w = await admin(adm, 'server-side-emit-with-ack', { event: 'ping-node', args: [42] });
    assert.equal(w.error, null);
    assert.deepEqual(w.responses, [{ from: 'node', arg: 42 }]);
  });

  test('socketsJoin and socketsLeave act on the Node server\'s sockets (and this node\'s)', async () => {
    const { n1, n2, s1, adm } = await setup();
    const rooms = () => nodeSrv.io.of('/').adapter.rooms;
    await admin(adm, 'sockets-join', { rooms: ['R'], join: ['V'] });
    await waitFor(() => rooms().get('V')?.has(n1.id), 3000, { message: 'n1 joins V on the Node server' });
    assert.ok(!rooms().get('V')?.has(n2.id));
    await waitFor(async () => (await admin(adm, 'fetch-sockets', { rooms: ['V'], local: true })).sockets.map((s) => s.id).includes(s1.id), 3000,
      { message: 's1 joins V on Switchboard' });
    await admin(adm, 'sockets-leave', { rooms: ['V'], leave: ['V'] });
    await waitFor(() => !rooms().get('V')?.has(n1.id), 3000, { message: 'n1 leaves V' });
    await waitFor(async () => (await admin(adm, 'fetch-sockets', { rooms: ['V'] })).sockets.length === 0, 3000, { message: 'V is empty everywhere' });
  });

  test('disconnectSockets disconnects the Node server\'s sockets', async () => {
    const { n1, n2, s1, adm } = await setup();
    const reasons = {};
    n1.on('disconnect', (r) => { reasons.n1 = r; });
    s1.on('disconnect', (r) => { reasons.s1 = r; });
    await admin(adm, 'disconnect-sockets', { rooms: ['R'] });
    await waitFor(() => reasons.n1 && reasons.s1, 5000, { message: () => `R's members disconnected: ${JSON.stringify(reasons)}` });
    assert.deepEqual(reasons, { n1: 'io server disconnect', s1: 'io server disconnect' });
    assert.equal(n2.connected, true);
    assert.equal(adm.connected, true);
  });

  test('the Node server\'s serverSideEmit (with and without ack) reaches Switchboard\'s handler', async () => {
    const { adm } = await setup();
    const seen = once(adm, 'server-side', 5000);
    nodeSrv.io.serverSideEmit('hello-sb', 1, { x: 'y' });
    const [ev] = await seen;
    assert.deepEqual(ev, { event: 'hello-sb', args: [1, { x: 'y' }] });
    const answers = await nodeSrv.io.serverSideEmitWithAck('who', 'asks');
    assert.deepEqual(answers, [{ node: 'embed1', event: 'who', args: ['asks'] }]);
  });
});
