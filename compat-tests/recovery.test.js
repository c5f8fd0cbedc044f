// Connection state recovery: a transport that drops and comes back within RECOVERY_WINDOW gets
// socket.recovered === true, keeps its rooms and receives the events it missed, in order.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, ack, once, waitFor, sleep, startProxy } from './helpers/index.js';
import { joinOk, sendOk, record } from './helpers/room.js';

standardHooks();

const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300, randomizationFactor: 0 };

/** `from` sends a message to `room` and `to` waits for it: `to` has then received at least one room event. */
async function primed(to, from, room) {
  const got = once(to, 'message', 5000);
  await sendOk(from, room, `prime-${room}`);
  await got;
}

describe('recovery (default RECOVERY_WINDOW)', () => {
  const ref = serverFor();

  for (const transports of [['websocket'], ['polling']]) {
    test(`${transports[0]}: recovered after a network cut; rooms kept; missed events delivered in order`, async () => {
      const room = `rec-${transports[0]}`;
      const proxy = await startProxy(ref.srv.port);
      const alice = await connect(proxy.url, { user: 'alice', transports, ...RECONNECT });
      const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
      await joinOk(alice, room);
      await joinOk(bob, room);
      await primed(alice, bob, room);
      const outgoing = [];
      alice.onAnyOutgoing((ev) => outgoing.push(ev));
      const firstId = alice.id;
      const lb = record(bob);

      const gone = once(alice, 'disconnect', 5000);
      await proxy.pause();
      const [reason] = await gone;
      assert.match(reason, /transport (close|error)/);

      // missed while away: messages, a user joining, more messages (some before the server noticed the drop)
      for (let i = 1; i <= 3; i++) await sendOk(bob, room, `missed ${i}`);
      await sleep(300);
      const carol = await connect(ref.srv.url, { user: 'carol', transports: ['websocket'] });
      await joinOk(carol, room);
      for (let i = 4; i <= 6; i++) await sendOk(bob, room, `missed ${i}`);

      const log = record(alice);
      const back = once(alice, 'connect', 8000);
      await proxy.resume();
      await back;
      assert.equal(alice.recovered, true, 'socket.recovered must be true after a short drop');
      assert.equal(alice.id, firstId, 'a recovered socket keeps its id');

      const expected = [
        ['message', 'missed 1'], ['message', 'missed 2'], ['message', 'missed 3'],
        ['user-joined', 'carol'],
        ['message', 'missed 4'], ['message', 'missed 5'], ['message', 'missed 6'],
      ];
      await waitFor(() => log.length >= expected.length, 5000, { message: () => `got ${JSON.stringify(log)}` });
      await sleep(100);
      const seen = log.map(([e, p]) => [e, e === 'message' ? p.text : p.userId]);
      assert.deepEqual(seen, expected, `replayed after recovery: ${JSON.stringify(seen)}`);
      assert.deepEqual(log[3][1], { roomId: room, userId: 'carol', name: 'Carol' });
      // bob's view stays consistent: if he was told alice left, he must be told she is back
      const aliceEvents = lb.filter(([e, p]) => (e === 'user-left' || e === 'user-joined') && p.userId === 'alice').map(([e]) => e);
      assert.ok(aliceEvents.length === 0 || aliceEvents.at(-1) === 'user-joined', `bob saw ${JSON.stringify(aliceEvents)} for a recovered alice`);

      // still in the room without re-joining
      const got = once(alice, 'message');
      await sendOk(bob, room, 'after recovery');
      assert.equal((await got)[0].text, 'after recovery');
      const toBob = once(bob, 'message');
      await sendOk(alice, room, 'alice is back');
      assert.equal((await toBob)[0].text, 'alice is back');
      assert.equal(outgoing.includes('join-room'), false, 'the client did not need to re-join');
      const p = await ack(bob, 'presence', room);
      assert.deepEqual(p.members.find((m) => m.userId === 'alice'), { userId: 'alice', name: 'Alice', connections: 1 });
    });
  }

  test('recovered even when the client had not received any event before the drop (quiet room)', async () => {
    // The client has no offset yet (it sends only {pid}); the contract still promises recovery within the window.
    const proxy = await startProxy(ref.srv.port);
    const alice = await connect(proxy.url, { user: 'alice', transports: ['websocket'], ...RECONNECT });
    await joinOk(alice, 'quiet');
    const gone = once(alice, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(bob, 'quiet');
    await sendOk(bob, 'quiet', 'said while alice was away');
    const log = record(alice);
    const back = once(alice, 'connect', 8000);
    await proxy.resume();
    await back;
    assert.equal(alice.recovered, true, 'socket.recovered must be true after a short drop, even in a quiet room');
    await waitFor(() => log.length >= 2, 5000, { message: () => `missed events not replayed: ${JSON.stringify(log)}` });
    assert.deepEqual(log.map(([e, p]) => [e, e === 'message' ? p.text : p.userId]), [['user-joined', 'bob'], ['message', 'said while alice was away']]);
  });

  test('several rooms are kept and the events of each arrive in order', async () => {
    const proxy = await startProxy(ref.srv.port);
    const alice = await connect(proxy.url, { user: 'alice', transports: ['websocket'], ...RECONNECT });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    for (const r of ['ra', 'rb', 'rc']) {
      await joinOk(alice, r);
      await joinOk(bob, r);
    }
    await primed(alice, bob, 'ra');
    const gone = once(alice, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    await sleep(100);
    const sent = [];
    for (let i = 0; i < 9; i++) {
      const r = ['ra', 'rb', 'rc'][i % 3];
      await sendOk(bob, r, `${r}-${i}`);
      sent.push(`${r}-${i}`);
    }
    const got = [];
    alice.on('message', (m) => got.push(m.text));
    const back = once(alice, 'connect', 8000);
    await proxy.resume();
    await back;
    assert.equal(alice.recovered, true);
    await waitFor(() => got.length >= 9, 5000);
    assert.deepEqual(got, sent);
  });

  test('a server-side drop of the connection (network cut) is recovered even when cut twice in a row', async () => {
    const proxy = await startProxy(ref.srv.port);
    const alice = await connect(proxy.url, { user: 'alice', transports: ['websocket'], ...RECONNECT });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(alice, 'twice');
    await joinOk(bob, 'twice');
    await primed(alice, bob, 'twice');
    const got = [];
    alice.on('message', (m) => got.push(m.text));
    for (let round = 0; round < 2; round++) {
      const gone = once(alice, 'disconnect', 5000);
      await proxy.pause();
      await gone;
      await sendOk(bob, 'twice', `r${round}`);
      const back = once(alice, 'connect', 8000);
      await proxy.resume();
      await back;
      assert.equal(alice.recovered, true, `round ${round}`);
    }
    await waitFor(() => got.length >= 2, 5000);
    assert.deepEqual(got, ['r0', 'r1']);
  });
});

describe('RECOVERY_WINDOW=1s', () => {
  const ref = serverFor({ env: { RECOVERY_WINDOW: '1s' } });

  test('after the window the session is not recovered: rooms are gone and user-left was sent', async () => {
    const proxy = await startProxy(ref.srv.port);
    const alice = await connect(proxy.url, { user: 'alice', transports: ['websocket'], ...RECONNECT });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(alice, 'short');
    await joinOk(bob, 'short');
    const lb = record(bob);
    const gone = once(alice, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    await sleep(2500);
    await waitFor(() => lb.of('user-left').length > 0, 3000, { message: 'no user-left after the recovery window expired' });
    assert.deepEqual(lb.of('user-left'), [{ roomId: 'short', userId: 'alice', name: 'Alice' }]);
    await sendOk(bob, 'short', 'while away');
    const la = record(alice);
    const back = once(alice, 'connect', 8000);
    await proxy.resume();
    await back;
    assert.equal(alice.recovered, false);
    const a = await ack(alice, 'message', { roomId: 'short', text: 'x' });
    assert.equal(a.error?.code, 'not_in_room', `after an expired window the rooms must be gone: ${JSON.stringify(a)}`);
    await sleep(200);
    assert.deepEqual(la.of('message'), [], 'no replay for an unrecovered session');
  });

  test('within the window it is still recovered', async () => {
    const proxy = await startProxy(ref.srv.port);
    const alice = await connect(proxy.url, { user: 'alice', transports: ['websocket'], ...RECONNECT });
    await joinOk(alice, 'short2');
    await primed(alice, alice, 'short2');
    const gone = once(alice, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    await sleep(200);
    const back = once(alice, 'connect', 8000);
    await proxy.resume();
    await back;
    assert.equal(alice.recovered, true);
    await sendOk(alice, 'short2', 'still a member');
  });
});
