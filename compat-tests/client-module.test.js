// web/switchboard-client.js: ordered offline queue, retries with a stable clientId (exactly once), refusals as coded
// errors, re-joining rooms after a lost session, token refresh.
import assert from 'node:assert/strict';
import http from 'node:http';
import { Server } from 'socket.io';
import { describe, test, standardHooks, serverFor, startServer, connect, ack, once, waitFor, sleep, startProxy, board, boardConnected, token } from './helpers/index.js';
import { joinOk, sendOk, record, settle } from './helpers/room.js';
import { Switchboard } from '../web/switchboard-client.js';

standardHooks();

const FAST = { transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 300 };

/** bob sends to `room` and the module's socket waits for it (it then holds a recovery offset). */
async function primed(sb, bob, room) {
  const got = once(sb.socket, 'message', 5000);
  await sendOk(bob, room, `prime-${room}`);
  await got;
}

/** Counts outgoing packets by event name on the module's socket. */
function outgoing(sb) {
  const log = [];
  sb.socket.onAnyOutgoing((ev, ...args) => log.push([ev, args[0]]));
  log.count = (ev) => log.filter(([e]) => e === ev).length;
  return log;
}

describe('client module', () => {
  const ref = serverFor();

  test('defaults: backoff 1 s → 30 s with 0.5 jitter, auth token, overridable', async () => {
    const sb = board(ref.srv.url, { user: 'alice', transports: ['websocket'] });
    assert.equal(sb.socket.io.reconnectionDelay(), 1000);
    assert.equal(sb.socket.io.reconnectionDelayMax(), 30000);
    assert.equal(sb.socket.io.randomizationFactor(), 0.5);
    assert.equal(sb.socket.io.reconnection(), true);
    await once(sb.socket, 'connect', 5000, { rejectOn: ['connect_error'] });
    const sb2 = board(ref.srv.url, { user: 'bob', transports: ['polling'], reconnectionDelay: 10, reconnectionDelayMax: 20, randomizationFactor: 0, path: '/socket.io/' });
    assert.equal(sb2.socket.io.reconnectionDelay(), 10);
    assert.equal(sb2.socket.io.reconnectionDelayMax(), 20);
    assert.equal(sb2.socket.io.randomizationFactor(), 0);
    await once(sb2.socket, 'connect', 5000, { rejectOn: ['connect_error'] });
    assert.equal(sb2.socket.io.engine.transport.name, 'polling');
  });

  test('join / presence / send / leave resolve with the server acks; events reach on() listeners', async () => {
    const a = await boardConnected(ref.srv.url, { user: 'alice', ...FAST });
    const b = await boardConnected(ref.srv.url, { user: 'bob', ...FAST });
    assert.deepEqual(await a.join('mod'), { ok: true, room: 'mod', members: [{ userId: 'alice', name: 'Alice' }] });
    const joined = [];
    a.on('user-joined', (e) => joined.push(e));
    await b.join('mod');
    assert.ok(a.rooms.has('mod'));
    const p = await a.presence('mod');
    assert.equal(p.ok, true);
    assert.equal(p.members.length, 2);
    const msgs = [];
    const onMsg = (m) => msgs.push(m);
    b.on('message', onMsg);
    const sent = await a.send('mod', 'hello via module');
    assert.equal(sent.ok, true);
    assert.ok(!sent.duplicate);
    await waitFor(() => msgs.length === 1, 3000);
    assert.equal(msgs[0].id, sent.id);
    assert.equal(msgs[0].text, 'hello via module');
    assert.match(msgs[0].clientId, /^[0-9a-f-]{36}$/, 'a UUID clientId is generated');
    b.off('message', onMsg);
    const left = once(a.socket, 'user-left', 3000);
    assert.deepEqual(await b.leave('mod'), { ok: true, room: 'mod' });
    await left;
    assert.equal(b.rooms.has('mod'), false);
    assert.deepEqual(joined, [{ roomId: 'mod', userId: 'bob', name: 'Bob' }]);
  });

  test('server refusals reject with an Error carrying .code and are not retried', async () => {
    const a = await boardConnected(ref.srv.url, { user: 'alice', ...FAST, token: token('alice', { rooms: ['ok-*'] }) });
    const out = outgoing(a);
    await assert.rejects(a.join('bad room'), (e) => e instanceof Error && e.code === 'invalid_room');
    await assert.rejects(a.join('user:bob'), (e) => e.code === 'forbidden_room');
    await assert.rejects(a.join('not-ok'), (e) => e.code === 'forbidden_room');
    await assert.rejects(a.send('ok-1', 'not joined'), (e) => e.code === 'not_in_room' && typeof e.message === 'string' && e.message.length > 0);
    await a.join('ok-1');
    await assert.rejects(a.send('ok-1', 'x'.repeat(5000)), (e) => e.code === 'payload_too_large');
    await assert.rejects(a.send('ok-1', ''), (e) => e.code === 'bad_request');
    assert.equal(out.count('join-room'), 4, 'each refused join was emitted exactly once');
    assert.equal(out.count('message'), 3, 'each refused message was emitted exactly once');
    assert.equal(a.pending, 0);
    assert.deepEqual([...a.rooms], ['ok-1']);
  });

  test('offline: sends are queued in order and delivered in order after reconnect', async () => {
    const proxy = await startProxy(ref.srv.port);
    const a = await boardConnected(proxy.url, { user: 'alice', ...FAST });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await a.join('offline');
    await joinOk(bob, 'offline');
    const lb = record(bob);
    const gone = once(a.socket, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    const results = [];
    const sends = Array.from({ length: 10 }, (_, i) => a.send('offline', `q${i}`).then((r) => { results.push(i); return r; }));
    await sleep(400);
    assert.equal(a.pending, 10);
    assert.deepEqual(results, [], 'nothing can be acknowledged while offline');
    assert.deepEqual(lb.of('message'), []);
    await proxy.resume();
    const acks = await Promise.all(sends);
    assert.ok(acks.every((x) => x.ok === true && !x.duplicate), JSON.stringify(acks));
    assert.deepEqual(results, Array.from({ length: 10 }, (_, i) => i), 'promises resolve in order');
    await settle(bob, 'offline', [bob]);
    const texts = lb.of('message').map((m) => m.text).filter((t) => !t.startsWith('__'));
    assert.deepEqual(texts, Array.from({ length: 10 }, (_, i) => `q${i}`));
    assert.deepEqual(lb.of('message').filter((m) => !m.text.startsWith('__')).map((m) => m.id), acks.map((x) => x.id));
  });

  test('offline: join, send and leave issued while disconnected keep their order', async () => {
    const proxy = await startProxy(ref.srv.port);
    const a = await boardConnected(proxy.url, { user: 'alice', ...FAST });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(bob, 'later');
    const lb = record(bob);
    const gone = once(a.socket, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    const ops = [a.join('later'), a.send('later', 'one'), a.send('later', 'two'), a.leave('later'), a.send('later', 'three')];
    await sleep(200);
    await proxy.resume();
    const [j, s1, s2, l, s3] = await Promise.allSettled(ops);
    assert.equal(j.status, 'fulfilled');
    assert.equal(s1.value?.ok, true);
    assert.equal(s2.value?.ok, true);
    assert.deepEqual(l.value, { ok: true, room: 'later' });
    assert.equal(s3.status, 'rejected');
    assert.equal(s3.reason.code, 'not_in_room');
    await settle(bob, 'later', [bob]);
    assert.deepEqual(lb.map(([e, p]) => (e === 'message' ? p.text : `${e}:${p.userId}`)).filter((t) => !t.startsWith('__')), [
      'user-joined:alice', 'one', 'two', 'user-left:alice',
    ]);
  });

  test('lost ack: the server got the message, the ack never arrived, the retry after reconnect is a duplicate — delivered exactly once', async () => {
    const proxy = await startProxy(ref.srv.port);
    const a = await boardConnected(proxy.url, { user: 'alice', ...FAST, ackTimeout: 10000 });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await a.join('once');
    await joinOk(bob, 'once');
    await primed(a, bob, 'once');
    const lb = record(bob);
    const out = outgoing(a);
    proxy.dropDownstream(true); // replies from the server are lost from now on
    const p = a.send('once', 'exactly once');
    const [m] = await once(bob, 'message', 5000);
    assert.equal(m.text, 'exactly once');
    proxy.cut(); // the connection dies before the ack reached the client
    proxy.dropDownstream(false);
    const r = await p;
    assert.deepEqual(r, { ok: true, id: m.id, ts: m.ts, duplicate: true });
    const sentMsgs = out.filter(([e]) => e === 'message').map(([, x]) => x);
    assert.equal(sentMsgs.length, 2, 'sent once, retried once');
    assert.equal(sentMsgs[0].clientId, sentMsgs[1].clientId, 'the retry reuses the clientId');
    assert.equal(sentMsgs[0].clientId, m.clientId);
    assert.equal(a.socket.recovered, true);
    await settle(bob, 'once', [bob]);
    assert.equal(lb.of('message').filter((x) => x.text === 'exactly once').length, 1);
  });

  test('ack timeout without a disconnect: retried with the same clientId until acknowledged, delivered once', async () => {
    const proxy = await startProxy(ref.srv.port);
    const a = await boardConnected(proxy.url, { user: 'alice', ...FAST, ackTimeout: 300, retries: 10 });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await a.join('slow');
    await joinOk(bob, 'slow');
    await primed(a, bob, 'slow');
    const lb = record(bob);
    const out = outgoing(a);
    proxy.dropDownstream(true);
    const p = a.send('slow', 'patience');
    const [m] = await once(bob, 'message', 5000);
    assert.equal(m.text, 'patience');
    await waitFor(() => out.count('message') >= 3, 5000, { message: 'no retries after ack timeouts' });
    proxy.dropDownstream(false);
    const r = await p;
    assert.deepEqual(r, { ok: true, id: m.id, ts: m.ts, duplicate: true });
    assert.equal(a.socket.connected, true);
    assert.equal(new Set(out.filter(([e]) => e === 'message').map(([, x]) => x.clientId)).size, 1);
    await settle(bob, 'slow', [bob]);
    assert.equal(lb.of('message').filter((x) => x.text === 'patience').length, 1);
  });

  test('retries exhausted: rejects with code "timeout" after 1 + retries attempts', async () => {
    const proxy = await startProxy(ref.srv.port);
    const a = await boardConnected(proxy.url, { user: 'alice', ...FAST, ackTimeout: 150, retries: 2 });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await a.join('void');
    await joinOk(bob, 'void');
    await primed(a, bob, 'void');
    const lb = record(bob);
    const out = outgoing(a);
    proxy.dropDownstream(true);
    await assert.rejects(a.send('void', 'into the void'), (e) => e.code === 'timeout');
    assert.equal(out.count('message'), 3);
    assert.equal(a.pending, 0);
    await settle(bob, 'void', [bob]);
    assert.equal(lb.of('message').filter((x) => x.text === 'into the void').length, 1);
  });

  test('recovered reconnect: rooms are not re-joined, queued sends flush', async () => {
    const proxy = await startProxy(ref.srv.port);
    const a = await boardConnected(proxy.url, { user: 'alice', ...FAST });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await a.join('keep');
    await joinOk(bob, 'keep');
    await primed(a, bob, 'keep');
    const out = outgoing(a);
    const gone = once(a.socket, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    const s = a.send('keep', 'queued while recovering');
    const got = once(bob, 'message', 8000);
    await proxy.resume();
    await s;
    assert.equal(a.socket.recovered, true);
    assert.equal((await got)[0].text, 'queued while recovering');
    assert.equal(out.count('join-room'), 0, 'no re-join after a recovered reconnect');
  });

  test('close() rejects pending operations with code "closed"', async () => {
    const proxy = await startProxy(ref.srv.port);
    const a = await boardConnected(proxy.url, { user: 'alice', ...FAST });
    await proxy.pause();
    await waitFor(() => !a.socket.connected, 5000);
    const p1 = a.send('x', 'never');
    const p2 = a.join('y');
    a.close();
    await assert.rejects(p1, (e) => e.code === 'closed');
    await assert.rejects(p2, (e) => e.code === 'closed');
    await assert.rejects(a.send('x', 'after close'), (e) => e.code === 'closed');
    assert.equal(a.socket.connected, false);
  });

  test('a burst of 100 sends through the module arrives in order', async () => {
    const srv = await startServer({ env: { RATE_LIMIT: '10000' } });
    try {
      const a = await boardConnected(srv.url, { user: 'alice', ...FAST });
      const bob = await connect(srv.url, { user: 'bob', transports: ['websocket'] });
      await a.join('mburst');
      await joinOk(bob, 'mburst');
      const got = [];
      bob.on('message', (m) => got.push(m.text));
      const acks = await Promise.all(Array.from({ length: 100 }, (_, i) => a.send('mburst', `b${i}`)));
      assert.ok(acks.every((x) => x.ok));
      await waitFor(() => got.length >= 100, 10000);
      assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => `b${i}`));
    } finally {
      await srv.stop();
    }
  });
});

/**
 * A Node socket.io server on namespace "/" that answers each `message` with reply(msg, attempt) (attempt: how many
 * times this clientId was received, from 1) and logs what it received. It stands for a Switchboard node whose
 * cluster is unreachable, which answers `unavailable` and delivers nothing.
 */
async function fakeServer(reply) {
  const httpServer = http.createServer();
  const io = new Server(httpServer);
  const log = [];
  const seen = new Map();
  io.on('connection', (s) => {
    s.on('message', (m, cb) => {
      const attempt = (seen.get(m.clientId) ?? 0) + 1;
      seen.set(m.clientId, attempt);
      log.push({ at: Date.now(), text: m.text, clientId: m.clientId, attempt });
      cb(reply(m, attempt));
    });
  });
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${httpServer.address().port}`, log, close: () => new Promise((resolve) => io.close(() => resolve())) };
}

const UNAVAILABLE = { ok: false, error: { code: 'unavailable', message: 'the cluster is unreachable: not delivered, retry later' } };
const accepted = (m) => ({ ok: true, id: `id-${m.clientId}`, ts: 1 });

describe('client module: unavailable is retried', () => {
  const NOJITTER = { transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 400, randomizationFactor: 0 };

  test('retried with the same clientId after a doubling backoff until acknowledged', async () => {
    const srv = await fakeServer((m, attempt) => (attempt <= 3 ? UNAVAILABLE : accepted(m)));
    try {
      const a = await boardConnected(srv.url, { user: 'alice', ...NOJITTER });
      const r = await a.send('room', 'patience');
      assert.equal(r.ok, true);
      assert.equal(srv.log.length, 4, 'sent once, retried three times');
      assert.equal(new Set(srv.log.map((x) => x.clientId)).size, 1, 'every retry reuses the clientId');
      const gaps = srv.log.slice(1).map((x, i) => x.at - srv.log[i].at);
      // 100, 200, 400 ms (capped at reconnectionDelayMax), with a little slack for timers.
      for (const [i, want] of [100, 200, 400].entries()) assert.ok(gaps[i] >= want - 15, `gap ${i} ${gaps[i]} ms, want >= ${want} ms (${gaps})`);
      assert.equal(a.pending, 0);
    } finally {
      await srv.close();
    }
  });

  test('during the backoff nothing is emitted; the queue is re-sent in order', async () => {
    const srv = await fakeServer((m, attempt) => (attempt === 1 ? UNAVAILABLE : accepted(m)));
    try {
      const a = await boardConnected(srv.url, { user: 'alice', ...NOJITTER });
      const acks = await Promise.all(['m1', 'm2', 'm3'].map((t) => a.send('room', t)));
      assert.ok(acks.every((x) => x.ok === true), JSON.stringify(acks));
      assert.deepEqual(srv.log.map((x) => `${x.text}#${x.attempt}`), ['m1#1', 'm2#1', 'm3#1', 'm1#2', 'm2#2', 'm3#2']);
      const firstRound = srv.log[2].at;
      assert.ok(srv.log[3].at - firstRound >= 85, `retried ${srv.log[3].at - firstRound} ms after the refusals, want the 100 ms backoff`);
      // The backoff starts again from reconnectionDelay once an acknowledgement got through.
      const before = srv.log.length;
      const again = a.send('room', 'm4');
      await again;
      assert.equal(srv.log.length - before, 2);
      const gap = srv.log.at(-1).at - srv.log.at(-2).at;
      assert.ok(gap >= 85 && gap < 180, `backoff after a success ${gap} ms, want about 100 ms`);
    } finally {
      await srv.close();
    }
  });

  test('retries exhausted: rejects with code "unavailable" and the reply', async () => {
    const srv = await fakeServer(() => UNAVAILABLE);
    try {
      const a = await boardConnected(srv.url, { user: 'alice', ...NOJITTER, retries: 2 });
      await assert.rejects(a.send('room', 'never'), (e) => e.code === 'unavailable' && e.ack?.ok === false);
      assert.equal(srv.log.length, 3, '1 + retries attempts');
      assert.equal(a.pending, 0);
      // Other refusals are still not retried.
      const b = await fakeServer(() => ({ ok: false, error: { code: 'not_in_room', message: 'no' } }));
      try {
        const c = await boardConnected(b.url, { user: 'bob', ...NOJITTER });
        await assert.rejects(c.send('room', 'x'), (e) => e.code === 'not_in_room');
        assert.equal(b.log.length, 1);
      } finally {
        await b.close();
      }
    } finally {
      await srv.close();
    }
  });
});

describe('client module across a server restart (session lost)', () => {
  test('rooms are re-joined before queued messages are flushed; messages arrive in order', async () => {
    const srv = await startServer();
    try {
      const proxy = await startProxy(srv.port);
      const a = await boardConnected(proxy.url, { user: 'alice', ...FAST });
      const b = await boardConnected(srv.url, { user: 'bob', ...FAST });
      await a.join('persist');
      await a.join('persist2');
      await b.join('persist');
      const out = outgoing(a);
      const gone = once(a.socket, 'disconnect', 5000);
      await proxy.pause();
      await gone;
      await srv.kill('SIGKILL');
      const sends = [a.send('persist', 'p1'), a.send('persist', 'p2'), a.send('persist2', 'p3'), a.send('persist', 'p4')];
      await srv.restart();
      // bob reconnects directly and re-joins by itself (recovered === false)
      await waitFor(() => b.socket.connected && b.pending === 0, 10000, { message: 'bob did not come back' });
      assert.equal(b.socket.recovered, false);
      const got = [];
      b.on('message', (m) => got.push(m.text));
      await proxy.resume();
      const acks = await Promise.all(sends);
      assert.ok(acks.every((x) => x.ok === true && !x.duplicate), JSON.stringify(acks));
      assert.equal(a.socket.recovered, false);
      const order = out.map(([e, x]) => (e === 'join-room' ? `join:${x}` : `msg:${x.text}`));
      assert.deepEqual(order.slice(0, 2).sort(), ['join:persist', 'join:persist2']);
      assert.deepEqual(order.slice(2), ['msg:p1', 'msg:p2', 'msg:p3', 'msg:p4']);
      await waitFor(() => got.length >= 3, 5000);
      await sleep(100);
      assert.deepEqual(got, ['p1', 'p2', 'p4']);
      const p = await b.presence('persist');
      assert.deepEqual(p.members.map((m) => m.userId).sort(), ['alice', 'bob']);
    } finally {
      await srv.stop();
    }
  });

  test('the token function is called on every (re)connection (token refresh)', async () => {
    const srv = await startServer();
    try {
      let calls = 0;
      const sb = new Switchboard(srv.url, {
        token: async () => {
          calls++;
          return token('alice', { name: `Alice v${calls}` });
        },
        ...FAST,
      });
      try {
        await once(sb.socket, 'connect', 5000, { rejectOn: ['connect_error'] });
        const j1 = await sb.join('tok');
        assert.deepEqual(j1.members, [{ userId: 'alice', name: 'Alice v1' }]);
        await srv.restart();
        await waitFor(() => calls >= 2 && sb.socket.connected && sb.pending === 0, 10000);
        const p = await sb.presence('tok');
        assert.deepEqual(p.members, [{ userId: 'alice', name: `Alice v${calls}`, connections: 1 }]);
      } finally {
        sb.close();
      }
    } finally {
      await srv.stop();
    }
  });
});
