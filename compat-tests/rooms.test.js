// Namespace "/": join-room, leave-room, message, presence — acks, error codes, and server → client events.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, ack, once, waitFor, sleep, token } from './helpers/index.js';
import { record, joinOk, sendOk, assertRefused, settle, assertMessageEvent } from './helpers/room.js';

standardHooks();

const WS = { transports: ['websocket'] };
let roomSeq = 0;
const room = (p = 'room') => `${p}-${++roomSeq}-${Math.random().toString(36).slice(2, 8)}`;
const sortMembers = (ms) => [...ms].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));

describe('rooms', () => {
  // some tests below send more than RATE_BURST (40) events at once: rate limiting is tested in limits.test.js
  const ref = serverFor({ env: { RATE_LIMIT: '1000' } });
  const user = (sub, extra = {}) => connect(ref.srv.url, { ...WS, user: sub, ...extra });

  test('join-room acks {ok, room, members:[{userId, name}]}', async () => {
    const r = room();
    const alice = await user('alice');
    const bob = await user('bob');
    assert.deepEqual(await ack(alice, 'join-room', r), { ok: true, room: r, members: [{ userId: 'alice', name: 'Alice' }] });
    const a = await ack(bob, 'join-room', r);
    assert.deepEqual(Object.keys(a).sort(), ['members', 'ok', 'room']);
    assert.equal(a.ok, true);
    assert.equal(a.room, r);
    assert.deepEqual(sortMembers(a.members), [{ userId: 'alice', name: 'Alice' }, { userId: 'bob', name: 'Bob' }]);
  });

  test('joining a room twice is harmless (ok, listed once)', async () => {
    const r = room();
    const alice = await user('alice');
    await joinOk(alice, r);
    const a = await ack(alice, 'join-room', r);
    assert.deepEqual(a, { ok: true, room: r, members: [{ userId: 'alice', name: 'Alice' }] });
    const p = await ack(alice, 'presence', r);
    assert.deepEqual(p.members, [{ userId: 'alice', name: 'Alice', connections: 1 }]);
  });

  test('leave-room acks {ok, room}; the socket no longer gets the room\'s messages', async () => {
    const r = room();
    const alice = await user('alice');
    const bob = await user('bob');
    await joinOk(alice, r);
    await joinOk(bob, r);
    const log = record(alice);
    assert.deepEqual(await ack(alice, 'leave-room', r), { ok: true, room: r });
    await sendOk(bob, r, 'after alice left');
    await sleep(200);
    assert.deepEqual(log.of('message'), []);
    assertRefused(await ack(alice, 'message', { roomId: r, text: 'x' }), 'not_in_room');
  });

  test('presence acks {ok, room, members:[{userId, name, connections}]} with per-user connection counts', async () => {
    const r = room();
    const alice = await user('alice');
    const bob1 = await user('bob');
    const bob2 = await user('bob');
    await joinOk(alice, r);
    await joinOk(bob1, r);
    await joinOk(bob2, r);
    const p = await ack(alice, 'presence', r);
    assert.deepEqual(Object.keys(p).sort(), ['members', 'ok', 'room']);
    assert.equal(p.ok, true);
    assert.equal(p.room, r);
    assert.deepEqual(sortMembers(p.members), [
      { userId: 'alice', name: 'Alice', connections: 1 },
      { userId: 'bob', name: 'Bob', connections: 2 },
    ]);
    bob2.disconnect();
    await waitFor(async () => {
      const q = await ack(alice, 'presence', r);
      return q.members.find((m) => m.userId === 'bob')?.connections === 1;
    }, 3000, { message: 'bob\'s connection count did not drop to 1' });
    await ack(bob1, 'leave-room', r);
    const q = await ack(alice, 'presence', r);
    assert.deepEqual(q.members, [{ userId: 'alice', name: 'Alice', connections: 1 }]);
  });

  test('message: ack {ok, id, ts}; event {id, roomId, userId, name, text, ts, clientId} to every member, sender included', async () => {
    const r = room();
    const alice = await user('alice');
    const bob = await user('bob');
    const carol = await user('carol');
    const outsider = await user('dave');
    await joinOk(alice, r);
    await joinOk(bob, r);
    await joinOk(carol, r);
    const logOut = record(outsider);
    const waits = [alice, bob, carol].map((s) => once(s, 'message'));
    const before = Date.now();
    const a = await ack(alice, 'message', { roomId: r, text: 'hello, room', clientId: 'c-1' });
    const after = Date.now();
    assert.equal(a.ok, true);
    assert.ok(!a.duplicate, `first send must not be a duplicate: ${JSON.stringify(a)}`);
    assert.deepEqual(Object.keys(a).filter((k) => k !== 'duplicate').sort(), ['id', 'ok', 'ts']);
    assert.ok(a.ts >= before - 2000 && a.ts <= after + 2000, `ts ${a.ts} is not server time in Unix ms (client saw ${before}..${after})`);
    for (const [ev] of await Promise.all(waits)) {
      assertMessageEvent(ev, { id: a.id, ts: a.ts, roomId: r, userId: 'alice', name: 'Alice', text: 'hello, room', clientId: 'c-1' });
    }
    await sleep(100);
    assert.deepEqual(logOut.of('message'), [], 'a non-member must not receive room messages');
  });

  test('message without clientId: event has no clientId', async () => {
    const r = room();
    const alice = await user('alice');
    const bob = await user('bob');
    await joinOk(alice, r);
    await joinOk(bob, r);
    const got = once(bob, 'message');
    const a = await sendOk(alice, r, 'no client id');
    const [ev] = await got;
    assertMessageEvent(ev, { id: a.id, ts: a.ts, roomId: r, userId: 'alice', name: 'Alice', text: 'no client id' });
    assert.equal('clientId' in ev, false);
  });

  test('message text is delivered verbatim (unicode, whitespace, JSON-looking text)', async () => {
    const r = room();
    const alice = await user('alice');
    await joinOk(alice, r);
    const texts = ['héllo wörld 👋', '  padded  \n\ttabs', '{"ok":false}', '<script>alert(1)</script>', '\u0000nul'];
    for (const t of texts) {
      const got = once(alice, 'message');
      await sendOk(alice, r, t);
      assert.equal((await got)[0].text, t);
    }
  });

  test('ids are unique and ts non-decreasing in acceptance order', async () => {
    const r = room();
    const alice = await user('alice');
    await joinOk(alice, r);
    const got = [];
    alice.on('message', (m) => got.push(m));
    const acks = [];
    for (let i = 0; i < 20; i++) acks.push(await sendOk(alice, r, `n${i}`));
    await waitFor(() => got.length >= 20, 5000);
    assert.equal(new Set(acks.map((a) => String(a.id))).size, 20);
    for (let i = 1; i < 20; i++) assert.ok(acks[i].ts >= acks[i - 1].ts, 'ts went backwards');
    assert.deepEqual(got.map((m) => m.text), acks.map((_, i) => `n${i}`));
    assert.deepEqual(got.map((m) => m.id), acks.map((a) => a.id));
  });

  test('all members see the same order when several users send concurrently', async () => {
    const r = room();
    const alice = await user('alice');
    const bob = await user('bob');
    const carol = await user('carol', { transports: ['polling'] });
    for (const s of [alice, bob, carol]) await joinOk(s, r);
    const logs = [alice, bob, carol].map((s) => {
      const l = [];
      s.on('message', (m) => l.push(m.text));
      return l;
    });
    const sends = [];
    for (let i = 0; i < 20; i++) {
      sends.push(sendOk(alice, r, `a${i}`));
      sends.push(sendOk(bob, r, `b${i}`));
    }
    await Promise.all(sends);
    await waitFor(() => logs.every((l) => l.length >= 40), 8000);
    assert.deepEqual(logs[1], logs[0]);
    assert.deepEqual(logs[2], logs[0]);
    assert.deepEqual(logs[0].filter((t) => t[0] === 'a'), Array.from({ length: 20 }, (_, i) => `a${i}`));
    assert.deepEqual(logs[0].filter((t) => t[0] === 'b'), Array.from({ length: 20 }, (_, i) => `b${i}`));
  });

  describe('user-joined / user-left', () => {
    test('user-joined goes to the others, never to the joining socket', async () => {
      const r = room();
      const alice = await user('alice');
      const bob = await user('bob');
      const la = record(alice);
      const lb = record(bob);
      await joinOk(alice, r);
      const joined = once(alice, 'user-joined');
      await joinOk(bob, r);
      assert.deepEqual((await joined)[0], { roomId: r, userId: 'bob', name: 'Bob' });
      await settle(alice, r, [alice, bob]);
      assert.deepEqual(la.of('user-joined'), [{ roomId: r, userId: 'bob', name: 'Bob' }]);
      assert.deepEqual(lb.of('user-joined'), [], 'the joining socket must not get user-joined');
    });

    test('multi-tab: user-joined only for the first connection, user-left only for the last', async () => {
      const r = room();
      const alice = await user('alice');
      const bob1 = await user('bob');
      const bob2 = await user('bob', { transports: ['polling'] });
      const la = record(alice);
      const lb1 = record(bob1);
      const lb2 = record(bob2);
      await joinOk(alice, r);
      await joinOk(bob1, r);
      await joinOk(bob2, r);
      await settle(alice, r, [alice, bob1, bob2]);
      assert.deepEqual(la.of('user-joined'), [{ roomId: r, userId: 'bob', name: 'Bob' }], 'exactly one user-joined for two tabs');
      assert.deepEqual(lb1.of('user-joined'), [], 'bob1 must not see bob join');
      assert.deepEqual(lb2.of('user-joined'), [], 'bob2 must not see bob join');

      // bob1 leaves: bob still has a connection in the room → no user-left
      assert.deepEqual(await ack(bob1, 'leave-room', r), { ok: true, room: r });
      await settle(alice, r, [alice, bob2]);
      assert.deepEqual(la.of('user-left'), [], 'user-left while bob2 is still in the room');

      // bob2 disconnects: last connection → user-left
      const left = once(alice, 'user-left');
      bob2.disconnect();
      assert.deepEqual((await left)[0], { roomId: r, userId: 'bob', name: 'Bob' });
      await settle(alice, r, [alice]);
      assert.deepEqual(la.of('user-left'), [{ roomId: r, userId: 'bob', name: 'Bob' }]);
    });

    test('user-left when the last connection leaves with leave-room', async () => {
      const r = room();
      const alice = await user('alice');
      const bob = await user('bob');
      await joinOk(alice, r);
      await joinOk(bob, r);
      const left = once(alice, 'user-left');
      await ack(bob, 'leave-room', r);
      assert.deepEqual((await left)[0], { roomId: r, userId: 'bob', name: 'Bob' });
    });

    test('a second tab connected but not in the room does not prevent user-left, nor trigger user-joined', async () => {
      const r = room();
      const alice = await user('alice');
      const bob1 = await user('bob');
      const bob2 = await user('bob'); // connected, never joins r
      const la = record(alice);
      await joinOk(alice, r);
      await joinOk(bob1, r);
      const left = once(alice, 'user-left');
      bob1.disconnect();
      assert.deepEqual((await left)[0], { roomId: r, userId: 'bob', name: 'Bob' });
      await settle(alice, r, [alice]);
      assert.deepEqual(la.of('user-joined'), [{ roomId: r, userId: 'bob', name: 'Bob' }]);
      assert.equal(bob2.connected, true);
    });

    test('user-joined again after the user left and came back', async () => {
      const r = room();
      const alice = await user('alice');
      const bob = await user('bob');
      const la = record(alice);
      await joinOk(alice, r);
      await joinOk(bob, r);
      await ack(bob, 'leave-room', r);
      await joinOk(bob, r);
      await settle(alice, r, [alice, bob]);
      assert.deepEqual(la.filter(([e]) => e === 'user-joined' || e === 'user-left').map(([e, p]) => [e, p.userId]), [
        ['user-joined', 'bob'],
        ['user-left', 'bob'],
        ['user-joined', 'bob'],
      ]);
    });
  });

  describe('error codes', () => {
    test('bad_request: wrong types and missing payloads', async () => {
      const r = room();
      const alice = await user('alice');
      await joinOk(alice, r);
      const cases = [
        ['join-room', []],
        ['join-room', [123]],
        ['join-room', [null]],
        ['join-room', [{ roomId: r }]],
        ['join-room', [[r]]],
        ['join-room', [true]],
        ['leave-room', []],
        ['leave-room', [42]],
        ['presence', []],
        ['presence', [{ roomId: r }]],
        ['message', []],
        ['message', ['just text']],
        ['message', [123]],
        ['message', [null]],
        ['message', [[r, 'x']]],
        ['message', [{ roomId: r }]],
        ['message', [{ text: 'no room' }]],
        ['message', [{ roomId: r, text: 5 }]],
        ['message', [{ roomId: r, text: null }]],
        ['message', [{ roomId: r, text: { nested: true } }]],
        ['message', [{ roomId: 7, text: 'x' }]],
        ['message', [{ roomId: r, text: '' }]],
        ['message', [{ roomId: r, text: 'x', clientId: 5 }]],
        ['message', [{ roomId: r, text: 'x', clientId: 'c'.repeat(65) }]],
      ];
      for (const [event, args] of cases) {
        const a = await ack(alice, event, ...args);
        assertRefused(a, 'bad_request', `${event} ${JSON.stringify(args)}`);
      }
      // clientId of exactly 64 chars is fine
      await sendOk(alice, r, 'x', 'c'.repeat(64));
      assert.equal(alice.connected, true);
    });

    test('invalid_room: bad room ids on every event; 128 chars of the allowed set is fine', async () => {
      const alice = await user('alice');
      const bad = ['', 'has space', 'slash/room', 'émoji', 'star*', 'x'.repeat(129), 'tab\t', 'a,b', 'q?x', '#hash'];
      for (const id of bad) {
        assertRefused(await ack(alice, 'join-room', id), 'invalid_room', `join-room ${JSON.stringify(id)}`);
        assertRefused(await ack(alice, 'leave-room', id), 'invalid_room', `leave-room ${JSON.stringify(id)}`);
        assertRefused(await ack(alice, 'presence', id), 'invalid_room', `presence ${JSON.stringify(id)}`);
        assertRefused(await ack(alice, 'message', { roomId: id, text: 'x' }), 'invalid_room', `message ${JSON.stringify(id)}`);
      }
      const okId = ('AZaz09_.:-' + 'x'.repeat(128)).slice(0, 128);
      const a = await ack(alice, 'join-room', okId);
      assert.equal(a.ok, true, JSON.stringify(a));
      assert.equal(a.room, okId);
      await sendOk(alice, okId, 'long room id');
    });

    test('forbidden_room: user:* rooms are reserved (own and others)', async () => {
      const alice = await user('alice');
      for (const id of ['user:alice', 'user:bob', 'user:x:y']) {
        assertRefused(await ack(alice, 'join-room', id), 'forbidden_room', `join-room ${id}`);
      }
    });

    test('user:<sub> rooms cannot be used to send messages or leave', async () => {
      const alice = await user('alice');
      const alice2 = await user('alice');
      const bob = await user('bob');
      const la2 = record(alice2);
      const lb = record(bob);
      for (const id of ['user:alice', 'user:bob']) {
        const a = await ack(alice, 'message', { roomId: id, text: 'sneaky' });
        assert.equal(a.ok, false, `message to ${id} must be refused: ${JSON.stringify(a)}`);
        assert.ok(['forbidden_room', 'not_in_room'].includes(a.error?.code), JSON.stringify(a));
      }
      const l = await ack(alice, 'leave-room', 'user:alice');
      assert.equal(l.ok, false, `leaving the reserved user room must be refused: ${JSON.stringify(l)}`);
      await sleep(200);
      assert.deepEqual(la2.of('message'), []);
      assert.deepEqual(lb.of('message'), []);
    });

    test('forbidden_room: the token rooms claim limits joins to matching patterns', async () => {
      const alice = await user('alice', { token: token('alice', { rooms: ['team-*', 'lobby', 'proj:*:chat'] }) });
      for (const id of ['team-a', 'team-blue.7', 'lobby', 'proj:x:chat']) {
        const a = await ack(alice, 'join-room', id);
        assert.equal(a.ok, true, `${id}: ${JSON.stringify(a)}`);
      }
      for (const id of ['lobby2', 'other', 'xteam-a', 'team', 'proj:x:chat2', 'user:alice']) {
        assertRefused(await ack(alice, 'join-room', id), 'forbidden_room', `join-room ${id}`);
      }
      // an invalid id is still invalid_room, not forbidden
      assertRefused(await ack(alice, 'join-room', 'team-bad room'), 'invalid_room');
    });

    test('forbidden_room: an empty rooms claim allows no room; a "*" claim still cannot join user:*', async () => {
      const none = await user('nobody', { token: token('nobody', { rooms: [] }) });
      assertRefused(await ack(none, 'join-room', 'anything'), 'forbidden_room');
      const star = await user('star', { token: token('star', { rooms: ['*'] }) });
      assert.equal((await ack(star, 'join-room', 'anything')).ok, true);
      assertRefused(await ack(star, 'join-room', 'user:bob'), 'forbidden_room');
    });

    test('not_in_room: message to a room the socket has not joined (even if another tab has)', async () => {
      const r = room();
      const alice1 = await user('alice');
      const alice2 = await user('alice');
      const bob = await user('bob');
      await joinOk(bob, r);
      await joinOk(alice1, r);
      const lb = record(bob);
      assertRefused(await ack(alice2, 'message', { roomId: r, text: 'x' }), 'not_in_room');
      assertRefused(await ack(alice2, 'message', { roomId: room('never'), text: 'x' }), 'not_in_room');
      await sleep(200);
      assert.deepEqual(lb.of('message'), []);
    });

    test('payload_too_large: text over MESSAGE_MAX_BYTES (4096) bytes, counted in UTF-8 bytes', async () => {
      const r = room();
      const alice = await user('alice');
      await joinOk(alice, r);
      const lb = record(alice);
      await sendOk(alice, r, 'a'.repeat(4096));
      await sendOk(alice, r, 'é'.repeat(2048)); // 4096 bytes
      await sendOk(alice, r, '😀'.repeat(1024)); // 4096 bytes
      assertRefused(await ack(alice, 'message', { roomId: r, text: 'a'.repeat(4097) }), 'payload_too_large');
      assertRefused(await ack(alice, 'message', { roomId: r, text: 'é'.repeat(2049) }), 'payload_too_large'); // 2049 chars, 4098 bytes
      assertRefused(await ack(alice, 'message', { roomId: r, text: '😀'.repeat(1025) }), 'payload_too_large');
      await settle(alice, r, [alice]);
      assert.equal(lb.of('message').length, 4, 'refused messages must not be broadcast');
    });
  });

  test('events without a callback are processed the same', async () => {
    const r = room();
    const alice = await user('alice');
    const bob = await user('bob');
    await joinOk(bob, r);
    const lb = record(bob);
    const joined = once(bob, 'user-joined');
    alice.emit('join-room', r);
    assert.deepEqual((await joined)[0], { roomId: r, userId: 'alice', name: 'Alice' });
    const msg = once(bob, 'message');
    alice.emit('message', { roomId: r, text: 'fire and forget', clientId: 'ff-1' });
    const [m] = await msg;
    assertMessageEvent(m, { roomId: r, userId: 'alice', name: 'Alice', text: 'fire and forget', clientId: 'ff-1' });
    alice.emit('presence', r);
    alice.emit('join-room', 'bad room'); // refused, silently
    alice.emit('message', { roomId: r }); // refused, silently
    const left = once(bob, 'user-left');
    alice.emit('leave-room', r);
    assert.deepEqual((await left)[0], { roomId: r, userId: 'alice', name: 'Alice' });
    assert.equal(alice.connected, true);
    assert.deepEqual(lb.of('message').map((x) => x.text), ['fire and forget']);
    // and a callback-less retry of the same clientId is de-duplicated too
    await joinOk(alice, r);
    alice.emit('message', { roomId: r, text: 'fire and forget', clientId: 'ff-1' });
    await settle(alice, r, [bob]);
    assert.deepEqual(lb.of('message').map((x) => x.text).filter((t) => !t.startsWith('__barrier')), ['fire and forget']);
  });

  test('unknown events and server-event names sent by a client are harmless', async () => {
    const r = room();
    const alice = await user('alice');
    const bob = await user('bob');
    await joinOk(alice, r);
    await joinOk(bob, r);
    const lb = record(bob);
    alice.emit('no-such-event', { x: 1 });
    alice.emit('user-joined', { roomId: r, userId: 'mallory', name: 'Mallory' });
    alice.emit('user-left', { roomId: r, userId: 'bob', name: 'Bob' });
    alice.emit('blob', { size: 10 });
    alice.timeout(500).emit('no-such-event-with-ack', 1, () => {});
    await sleep(300);
    assert.equal(alice.connected, true);
    await sendOk(alice, r, 'still fine');
    await settle(alice, r, [bob]);
    assert.deepEqual(lb.filter(([e]) => e !== 'message'), [], 'no events may be relayed from a client');
    assert.deepEqual(lb.of('message').map((m) => m.text).filter((t) => !t.startsWith('__barrier')), ['still fine']);
  });
});
