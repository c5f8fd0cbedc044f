// Configured limits: RATE_LIMIT/RATE_BURST (rate_limited, flood disconnect), MESSAGE_MAX_BYTES, MAX_ROOMS_PER_SOCKET,
// MAX_CONNECTIONS, MAX_CONNECTIONS_PER_USER.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, connectError, ack, once, waitFor, sleep, client } from './helpers/index.js';
import { joinOk, sendOk, assertRefused, record, settle } from './helpers/room.js';

standardHooks();

const WS = { transports: ['websocket'] };

describe('RATE_LIMIT=1, RATE_BURST=3', () => {
  const ref = serverFor({ env: { RATE_LIMIT: '1', RATE_BURST: '3' } });

  test('events beyond the burst get rate_limited; tokens refill at RATE_LIMIT per second', async () => {
    const alice = await connect(ref.srv.url, { ...WS, user: 'alice' });
    const acks = await Promise.all(Array.from({ length: 6 }, () => ack(alice, 'presence', 'rl-room')));
    // presence on a room nobody joined: whatever the answer, the first 3 are not rate limited
    for (let i = 0; i < 3; i++) assert.notEqual(acks[i].error?.code, 'rate_limited', `event ${i}: ${JSON.stringify(acks[i])}`);
    for (let i = 3; i < 6; i++) assertRefused(acks[i], 'rate_limited', `event ${i}`);
    await sleep(1300);
    const again = await ack(alice, 'join-room', 'rl-room');
    assert.equal(again.ok, true, `after a refill: ${JSON.stringify(again)}`);
    assert.equal(alice.connected, true);
  });

  test('rate_limited events have no effect (a refused message is not broadcast)', async () => {
    const alice = await connect(ref.srv.url, { ...WS, user: 'alice' });
    const bob = await connect(ref.srv.url, { ...WS, user: 'bob' });
    await joinOk(alice, 'rl2'); // 1 token
    await joinOk(bob, 'rl2');
    const lb = record(bob);
    const acks = await Promise.all(Array.from({ length: 5 }, (_, i) => ack(alice, 'message', { roomId: 'rl2', text: `m${i}` })));
    const accepted = acks.filter((a) => a.ok).length;
    const limited = acks.filter((a) => a.error?.code === 'rate_limited').length;
    assert.equal(accepted + limited, 5, JSON.stringify(acks));
    assert.ok(accepted >= 2 && accepted <= 3, `accepted ${accepted} of 5 with 2-3 tokens left`);
    await sleep(1200);
    await settle(alice, 'rl2', [bob]);
    assert.deepEqual(lb.of('message').map((m) => m.text).filter((t) => !t.startsWith('__')), acks.map((a, i) => (a.ok ? `m${i}` : null)).filter(Boolean));
  });
});

describe('flooding (RATE_LIMIT=5, RATE_BURST=5)', () => {
  // Kicked flooders all come from 127.0.0.1: the cool-down (kicks.test.js) would refuse the next round.
  const ref = serverFor({ env: { RATE_LIMIT: '5', RATE_BURST: '5', RATE_KICK_COOLDOWN: '0' } });

  test('a socket that keeps flooding after 10 rate_limited refusals in a row is disconnected (io server disconnect)', async () => {
    const bystander = await connect(ref.srv.url, { ...WS, user: 'bystander' });
    const watcher = await connect(ref.srv.url, { ...WS, user: 'watcher' });
    await joinOk(bystander, 'calm');
    await joinOk(watcher, 'calm');
    // several flooders in turn (websocket and polling): each must get its refusals and then a clean server disconnect
    for (let round = 0; round < 6; round++) {
      const transports = round % 2 ? ['polling'] : ['websocket'];
      const flooder = await connect(ref.srv.url, { transports, user: `flooder${round}`, reconnection: true, reconnectionDelay: 50 });
      const acks = [];
      const reason = once(flooder, 'disconnect', 8000);
      for (let i = 0; i < 200; i++) flooder.emit('presence', 'calm', (a) => acks.push(a));
      const [why] = await reason;
      const limited = acks.filter((a) => a?.error?.code === 'rate_limited').length;
      assert.equal(why, 'io server disconnect', `round ${round} (${transports}): disconnect reason "${why}" after ${acks.length} acks (${limited} rate_limited)`);
      assert.ok(limited >= 10, `round ${round}: expected at least 10 rate_limited refusals before the disconnect, got ${limited}`);
      assert.ok(acks.length < 200, 'the flooder was disconnected but every event was still answered');
      await sleep(300);
      assert.equal(flooder.connected, false, 'io server disconnect must not auto-reconnect');
    }
    // the bystanders keep chatting
    const got = once(watcher, 'message');
    await sendOk(bystander, 'calm', 'unaffected');
    assert.equal((await got)[0].text, 'unaffected');
  });

  test('refusals that are not in a row do not disconnect', async () => {
    const s = await connect(ref.srv.url, { ...WS, user: 'bursty' });
    for (let round = 0; round < 3; round++) {
      const acks = await Promise.all(Array.from({ length: 10 }, () => ack(s, 'presence', 'calm')));
      const limited = acks.filter((a) => a.error?.code === 'rate_limited').length;
      assert.ok(limited >= 1 && limited <= 9, `round ${round}: ${limited} refusals`);
      await sleep(1100); // refill: the next event succeeds and ends the run of refusals
      assert.notEqual((await ack(s, 'presence', 'calm')).error?.code, 'rate_limited');
    }
    assert.equal(s.connected, true);
  });
});

describe('MESSAGE_MAX_BYTES=10, MAX_ROOMS_PER_SOCKET=3', () => {
  const ref = serverFor({ env: { MESSAGE_MAX_BYTES: '10', MAX_ROOMS_PER_SOCKET: '3' } });

  test('payload_too_large beyond MESSAGE_MAX_BYTES', async () => {
    const a = await connect(ref.srv.url, { ...WS, user: 'alice' });
    await joinOk(a, 'small');
    await sendOk(a, 'small', '0123456789');
    await sendOk(a, 'small', 'ééééé'); // 10 bytes
    assertRefused(await ack(a, 'message', { roomId: 'small', text: '0123456789x' }), 'payload_too_large');
    assertRefused(await ack(a, 'message', { roomId: 'small', text: 'éééééé' }), 'payload_too_large'); // 6 chars, 12 bytes
  });

  test('too_many_rooms beyond MAX_ROOMS_PER_SOCKET (per socket; the user:<sub> room does not count)', async () => {
    const a = await connect(ref.srv.url, { ...WS, user: 'alice' });
    await joinOk(a, 'r1');
    await joinOk(a, 'r2');
    await joinOk(a, 'r3');
    assertRefused(await ack(a, 'join-room', 'r4'), 'too_many_rooms');
    // re-joining a room already joined is not a new room
    assert.equal((await ack(a, 'join-room', 'r2')).ok, true);
    // another socket of the same user has its own budget
    const a2 = await connect(ref.srv.url, { ...WS, user: 'alice' });
    await joinOk(a2, 'r4');
    await joinOk(a2, 'r5');
    await joinOk(a2, 'r6');
    // leaving frees a slot
    assert.deepEqual(await ack(a, 'leave-room', 'r1'), { ok: true, room: 'r1' });
    await joinOk(a, 'r4');
    assertRefused(await ack(a, 'join-room', 'r7'), 'too_many_rooms');
    // the refused room was not joined
    assertRefused(await ack(a, 'message', { roomId: 'r7', text: 'x' }), 'not_in_room');
  });
});

describe('MAX_CONNECTIONS=3', () => {
  const ref = serverFor({ env: { MAX_CONNECTIONS: '3' } });

  test('the connection beyond the node limit is refused with limit_connections; a slot frees on disconnect', async () => {
    const s1 = await connect(ref.srv.url, { ...WS, user: 'u1' });
    const s2 = await connect(ref.srv.url, { ...WS, user: 'u2' });
    const s3 = await connect(ref.srv.url, { transports: ['polling'], user: 'u3' });
    const err = await connectError(ref.srv.url, { ...WS, user: 'u4' });
    assert.equal(err.message, 'Too many connections');
    assert.equal(err.data?.code, 'limit_connections');
    const err2 = await connectError(ref.srv.url, { transports: ['polling'], user: 'u5' });
    assert.equal(err2.data?.code, 'limit_connections');
    // the three connected clients are unaffected
    await joinOk(s1, 'lim');
    await joinOk(s2, 'lim');
    await joinOk(s3, 'lim');
    const got = once(s3, 'message');
    await sendOk(s1, 'lim', 'still here');
    assert.equal((await got)[0].text, 'still here');
    s2.disconnect();
    await waitFor(async () => {
      const s = client(ref.srv.url, { ...WS, user: 'u4' });
      try {
        await once(s, 'connect', 3000, { rejectOn: ['connect_error'] });
        return true;
      } catch {
        s.disconnect();
        return false;
      }
    }, 5000, { interval: 200, message: 'a freed slot was not reusable' });
  });
});

describe('MAX_CONNECTIONS_PER_USER=2', () => {
  const ref = serverFor({ env: { MAX_CONNECTIONS_PER_USER: '2' } });

  test('the third connection of one user is refused; other users are not', async () => {
    const a1 = await connect(ref.srv.url, { ...WS, user: 'alice' });
    const a2 = await connect(ref.srv.url, { transports: ['polling'], user: 'alice' });
    const err = await connectError(ref.srv.url, { ...WS, user: 'alice' });
    assert.equal(err.message, 'Too many connections');
    assert.equal(err.data?.code, 'limit_connections');
    const b1 = await connect(ref.srv.url, { ...WS, user: 'bob' });
    const b2 = await connect(ref.srv.url, { ...WS, user: 'bob' });
    await joinOk(b1, 'pu');
    await joinOk(a1, 'pu');
    await joinOk(a2, 'pu');
    const p = await ack(b2, 'presence', 'pu');
    assert.deepEqual([...p.members].sort((x, y) => x.userId.localeCompare(y.userId)), [
      { userId: 'alice', name: 'Alice', connections: 2 },
      { userId: 'bob', name: 'Bob', connections: 1 },
    ]);
    a1.disconnect();
    await waitFor(async () => {
      const s = client(ref.srv.url, { ...WS, user: 'alice' });
      try {
        await once(s, 'connect', 3000, { rejectOn: ['connect_error'] });
        return true;
      } catch {
        s.disconnect();
        return false;
      }
    }, 5000, { interval: 200, message: 'alice could not reconnect after closing a tab' });
  });
});
