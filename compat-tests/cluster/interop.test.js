// Interoperation with Node's Socket.IO cluster stack on the same Redis and key prefix (default "socket.io"):
//   - a Node socket.io 4.8 server with @socket.io/redis-adapter 8.3 shares rooms with a Switchboard node, both ways;
//   - @socket.io/redis-emitter 5.1 from this (plain Node) process reaches Switchboard clients in a room, in the whole
//     namespace, with binary payloads, and its socketsJoin / socketsLeave / disconnectSockets act on Switchboard
//     sockets.
import assert from 'node:assert/strict';
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { Emitter } from '@socket.io/redis-emitter';
import { createClient } from 'redis';
import { describe, before, after, afterEach, closeClients, collect, sleep, ack, client, freePort } from '../helpers/index.js';
import { joinOk, sendOk, assertMessageEvent } from '../helpers/room.js';
import { startCluster, connected, redisAdapterClients, test } from './harness.js';

/** A Node socket.io server on the Redis adapter with a contract-ish "rooms" handler (join-room, message). */
async function startNodeServer(redisUrl) {
  const [pub, sub] = await redisAdapterClients(redisUrl);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  let seq = 0;
  io.use((socket, next) => {
    // The test tokens' payload (signature not checked here: this server only stands in for a Node deployment).
    try {
      const claims = JSON.parse(Buffer.from(String(socket.handshake.auth.token).split('.')[1], 'base64url').toString());
      socket.data.userId = claims.sub;
      socket.data.name = claims.name;
      socket.join(`user:${claims.sub}`);
      next();
    } catch {
      next(new Error('Invalid token'));
    }
  });
  io.on('connection', (socket) => {
    socket.on('join-room', (roomId, cb) => {
      socket.join(roomId);
      cb?.({ ok: true, room: roomId, members: [] });
    });
    socket.on('message', ({ roomId, text } = {}, cb) => {
      if (!socket.rooms.has(roomId)) return cb?.({ ok: false, error: { code: 'not_in_room', message: 'join the room first' } });
      const m = { id: `nodejs-${++seq}`, roomId, userId: socket.data.userId, name: socket.data.name, text, ts: Date.now() };
      io.to(roomId).emit('message', m);
      cb?.({ ok: true, id: m.id, ts: m.ts });
    });
  });
  const port = await freePort();
  await new Promise((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
  return {
    io,
    url: `http://127.0.0.1:${port}`,
    async close() {
      io.disconnectSockets(true);
      await new Promise((resolve) => io.close(() => resolve()));
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

const toBuf = (x) => (Buffer.isBuffer(x) ? x : Buffer.from(x instanceof ArrayBuffer ? new Uint8Array(x) : x));

describe('interop with Node socket.io + @socket.io/redis-adapter and @socket.io/redis-emitter', () => {
  let c;
  let nodeSrv;
  let emitterClient;
  let emitter;
  before(async () => {
    c = await startCluster({ balancer: null, nodes: 1 });
    nodeSrv = await startNodeServer(c.redis.url);
    emitterClient = createClient({ url: c.redis.url });
    emitterClient.on('error', () => {});
    await emitterClient.connect();
    emitter = new Emitter(emitterClient);
  });
  afterEach(() => closeClients());
  after(async () => {
    closeClients();
    if (emitterClient) await emitterClient.quit().catch(() => {});
    if (nodeSrv) await nodeSrv.close();
    await c?.stop();
  });

  /** sw: Switchboard client in the room, swOut: Switchboard client outside it, nd/ndOut: same on the Node server. */
  async function scene(room) {
    const sw = await connected(client(c.url, { user: 'alice' }));
    const swOut = await connected(client(c.url, { user: 'sam' }));
    const nd = await connected(client(nodeSrv.url, { user: 'nora' }));
    const ndOut = await connected(client(nodeSrv.url, { user: 'ned' }));
    await joinOk(sw, room);
    await joinOk(nd, room);
    return { sw, swOut, nd, ndOut };
  }

  test('a Node server broadcast to a room reaches the Switchboard client in it, and only it', async () => {
    const room = 'mixed-a';
    const { sw, swOut, nd, ndOut } = await scene(room);
    const swGot = collect(sw, 'message');
    const outGot = collect(swOut, 'message');
    const ndOutGot = collect(ndOut, 'message');

    const payload = { id: 'from-node-server', roomId: room, userId: 'system', name: 'System', text: 'héllo ✓', ts: 1700000000000 };
    nodeSrv.io.to(room).emit('message', payload);
    await swGot.waitCount(1, 5000);
    assert.deepEqual(swGot[0], payload);

    // The Node server's contract-ish handler: its client's room message reaches the Switchboard member.
    const a = await ack(nd, 'message', { roomId: room, text: 'from nora' });
    assert.equal(a.ok, true);
    await swGot.waitCount(2, 5000);
    assert.deepEqual(swGot[1], { id: a.id, roomId: room, userId: 'nora', name: 'Nora', text: 'from nora', ts: a.ts });

    // Ordering of a burst from the Node side.
    for (let i = 0; i < 50; i++) nodeSrv.io.to(room).emit('message', { ...payload, id: `burst-${i}`, text: `b${i}` });
    await swGot.waitCount(52, 5000);
    assert.deepEqual(swGot.slice(2).map((m) => m.text), Array.from({ length: 50 }, (_, i) => `b${i}`));

    await sleep(200);
    assert.equal(outGot.length, 0, 'a Switchboard client outside the room got the room broadcast');
    assert.equal(ndOutGot.length, 0, 'a Node client outside the room got the room broadcast');
  });

  test('a Switchboard room message reaches the Node server\'s client in the room', async () => {
    const room = 'mixed-b';
    const { sw, nd, ndOut } = await scene(room);
    const ndGot = collect(nd, 'message');
    const ndOutGot = collect(ndOut, 'message');
    const swGot = collect(sw, 'message');
    const a = await sendOk(sw, room, 'from alice on switchboard');
    await ndGot.waitCount(1, 5000);
    assertMessageEvent(ndGot[0], { id: a.id, roomId: room, userId: 'alice', name: 'Alice', text: 'from alice on switchboard', ts: a.ts });
    await swGot.waitCount(1, 5000);
    assert.deepEqual(ndGot[0], swGot[0], 'the Node client and the Switchboard client got the same event');

    // Several in a row, in order.
    for (let i = 0; i < 20; i++) await sendOk(sw, room, `s${i}`);
    await ndGot.waitCount(21, 5000);
    assert.deepEqual(ndGot.slice(1).map((m) => m.text), Array.from({ length: 20 }, (_, i) => `s${i}`));
    await sleep(200);
    assert.equal(ndOutGot.length, 0, 'a Node client outside the room got the room message');
  });

  test('a Node server broadcast with acks (io.timeout().to(room).emitWithAck) gets the Switchboard client\'s ack', async () => {
    const room = 'mixed-ack';
    const { sw, nd } = await scene(room);
    sw.on('poll', (q, cb) => cb({ from: 'alice', q }));
    nd.on('poll', (q, cb) => cb({ from: 'nora', q }));
    const replies = await nodeSrv.io.timeout(5000).to(room).emitWithAck('poll', 'ready?');
    const byUser = Object.fromEntries(replies.map((r) => [r.from, r]));
    assert.deepEqual(byUser, { alice: { from: 'alice', q: 'ready?' }, nora: { from: 'nora', q: 'ready?' } }, JSON.stringify(replies));
  });

  test('redis-emitter: to(room).emit reaches Switchboard clients in the room only, including binary payloads', async () => {
    const room = 'mixed-c';
    const { sw, swOut, nd } = await scene(room);
    const swGot = collect(sw, 'message');
    const outGot = collect(swOut, 'message');
    const ndGot = collect(nd, 'message');
    const payload = { id: 'from-emitter', roomId: room, userId: 'system', name: 'System', text: 'emitted', ts: 1700000000001 };
    emitter.to(room).emit('message', payload);
    await swGot.waitCount(1, 5000);
    assert.deepEqual(swGot[0], payload);
    await ndGot.waitCount(1, 5000);

    // Binary: a Buffer as an argument and nested in an object.
    const swBin = collect(sw, 'blob', { all: true });
    const outBin = collect(swOut, 'blob', { all: true });
    const bytes = Buffer.from([0, 1, 2, 127, 128, 254, 255]);
    emitter.to(room).emit('blob', bytes, { label: 'nested', data: Buffer.from('héllo', 'utf8') });
    await swBin.waitCount(1, 5000);
    const [b0, b1] = swBin[0];
    assert.deepEqual(toBuf(b0), bytes);
    assert.equal(b1.label, 'nested');
    assert.equal(toBuf(b1.data).toString('utf8'), 'héllo');

    // To the user room every Switchboard socket joins on connect (user:<sub>).
    const tab2 = await connected(client(c.url, { user: 'alice' }));
    const tabs = [collect(sw, 'note'), collect(tab2, 'note')];
    const samNote = collect(swOut, 'note');
    emitter.to('user:alice').emit('note', 'for every tab of alice');
    await Promise.all(tabs.map((g) => g.waitCount(1, 5000)));
    for (const g of tabs) assert.deepEqual(g[0], 'for every tab of alice');

    await sleep(200);
    assert.equal(outGot.length, 0, 'a Switchboard client outside the room got the emitter\'s room broadcast');
    assert.equal(outBin.length, 0, 'a Switchboard client outside the room got the emitter\'s binary room broadcast');
    assert.equal(samNote.length, 0, 'another user got the user-room broadcast');
  });

  test('redis-emitter: emit() reaches every Switchboard client of the namespace, including binary payloads', async () => {
    const { sw, swOut, nd, ndOut } = await scene('mixed-d');
    const all = [sw, swOut, nd, ndOut];
    const got = all.map((s) => collect(s, 'announcement', { all: true }));
    emitter.emit('announcement', { text: 'to everyone' });
    await Promise.all(got.map((g) => g.waitCount(1, 5000).catch(() => {})));
    assert.deepEqual(got.map((g) => g.length), [1, 1, 1, 1], 'namespace-wide broadcast reached [sw in room, sw outside, node in room, node outside]');
    // First argument only: with connection state recovery (on by default in Switchboard) a broadcast carries its
    // offset as an extra last argument, as Node's server does; socket.io-client passes it on to listeners.
    for (const g of got) assert.deepEqual(g[0][0], { text: 'to everyone' });

    const bytes = Buffer.from([9, 8, 7, 0, 255]);
    emitter.emit('announcement', bytes);
    await Promise.all(got.map((g) => g.waitCount(2, 5000).catch(() => {})));
    assert.deepEqual(got.map((g) => g.length), [2, 2, 2, 2], 'binary namespace-wide broadcast');
    for (const g of got) assert.deepEqual(toBuf(g[1][0]), bytes);
  });

  test('redis-emitter: socketsJoin / socketsLeave / disconnectSockets act on Switchboard sockets', async () => {
    const room = 'mixed-e';
    const { sw, swOut, nd } = await scene(room);
    const swExtra = collect(sw, 'extra');
    const outExtra = collect(swOut, 'extra');
    const ndExtra = collect(nd, 'extra');

    emitter.in(room).socketsJoin('extra-room');
    // The join travels on the request channel, the broadcast on the room channel: allow the join to land first.
    await sleep(300);
    emitter.to('extra-room').emit('extra', 1);
    await swExtra.waitCount(1, 5000);
    await ndExtra.waitCount(1, 5000);
    assert.deepEqual([...swExtra], [1]);

    emitter.in(room).socketsLeave('extra-room');
    await sleep(300);
    emitter.to('extra-room').emit('extra', 2);
    await sleep(500);
    assert.deepEqual([...swExtra], [1], 'socketsLeave: the Switchboard socket still got a broadcast to the room it left');
    assert.deepEqual([...outExtra], [], 'a socket outside the source room was joined');

    const swDisc = collect(sw, 'disconnect');
    const outDisc = collect(swOut, 'disconnect');
    const ndDisc = collect(nd, 'disconnect');
    emitter.in(room).disconnectSockets();
    await swDisc.waitCount(1, 5000);
    await ndDisc.waitCount(1, 5000);
    assert.equal(ndDisc[0], 'io server disconnect', 'Node reference');
    assert.equal(swDisc[0], 'io server disconnect', `Switchboard socket disconnect reason: ${swDisc[0]}`);
    await sleep(300);
    assert.equal(outDisc.length, 0, 'a socket outside the room was disconnected');
    assert.equal(swOut.connected, true);
  });
});
