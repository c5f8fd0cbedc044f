// Transports: polling only, websocket only, polling → websocket upgrade, and a configured SOCKETIO_PATH.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, startServer, connect, client, ack, once, waitFor } from './helpers/index.js';

standardHooks();

/** alice (given transport options) and bob (websocket) chat in a room; checks both directions. */
async function chat(url, aliceOpts, room, extra = {}) {
  const alice = await connect(url, { user: 'alice', ...aliceOpts, ...extra });
  const bob = await connect(url, { user: 'bob', transports: ['websocket'], ...extra });
  assert.equal((await ack(alice, 'join-room', room)).ok, true);
  assert.equal((await ack(bob, 'join-room', room)).ok, true);

  const toBob = once(bob, 'message');
  const a1 = await ack(alice, 'message', { roomId: room, text: 'from alice' });
  assert.equal(a1.ok, true);
  const [m1] = await toBob;
  assert.equal(m1.text, 'from alice');
  assert.equal(m1.userId, 'alice');

  const toAlice = once(alice, 'message');
  const a2 = await ack(bob, 'message', { roomId: room, text: 'from bob' });
  assert.equal(a2.ok, true);
  const [m2] = await toAlice;
  assert.equal(m2.text, 'from bob');
  assert.equal(m2.userId, 'bob');
  return { alice, bob };
}

describe('transports', () => {
  // bursts below exceed the default RATE_BURST (40): raise the limit, this file is not about rate limiting
  const ref = serverFor({ env: { RATE_LIMIT: '1000' } });

  test('polling only', async () => {
    const { alice } = await chat(ref.srv.url, { transports: ['polling'] }, 'poll-room');
    assert.equal(alice.io.engine.transport.name, 'polling');
    // stays on polling across a few more round trips
    for (let i = 0; i < 5; i++) assert.equal((await ack(alice, 'presence', 'poll-room')).ok, true);
    assert.equal(alice.io.engine.transport.name, 'polling');
  });

  test('websocket only', async () => {
    const { alice } = await chat(ref.srv.url, { transports: ['websocket'] }, 'ws-room');
    assert.equal(alice.io.engine.transport.name, 'websocket');
  });

  test('polling → websocket upgrade (default transports)', async () => {
    const alice = await connect(ref.srv.url, { user: 'alice' });
    const upgraded = alice.io.engine.transport.name === 'websocket' ? Promise.resolve() : once(alice.io.engine, 'upgrade', 8000);
    await upgraded;
    assert.equal(alice.io.engine.transport.name, 'websocket');
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['polling'] });
    assert.equal((await ack(alice, 'join-room', 'up-room')).ok, true);
    assert.equal((await ack(bob, 'join-room', 'up-room')).ok, true);
    const got = once(alice, 'message');
    assert.equal((await ack(bob, 'message', { roomId: 'up-room', text: 'after upgrade' })).ok, true);
    assert.equal((await got)[0].text, 'after upgrade');
  });

  test('messages emitted around the upgrade are not lost or reordered', async () => {
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    assert.equal((await ack(bob, 'join-room', 'upgrade-burst')).ok, true);
    const got = [];
    bob.on('message', (m) => got.push(m.text));
    // emitted before the connection exists (buffered, flushed over polling), then more while the upgrade is under way
    const alice = client(ref.srv.url, { user: 'alice' });
    const pending = [ack(alice, 'join-room', 'upgrade-burst')];
    for (let i = 0; i < 30; i++) pending.push(ack(alice, 'message', { roomId: 'upgrade-burst', text: `m${i}` }));
    let upgrading = false;
    alice.io.on('open', () => {
      alice.io.engine.on('upgrading', () => {
        upgrading = true;
        for (let i = 30; i < 60; i++) pending.push(ack(alice, 'message', { roomId: 'upgrade-burst', text: `m${i}` }));
      });
    });
    await waitFor(() => alice.io.engine?.transport?.name === 'websocket', 8000, { message: 'no upgrade' });
    assert.equal(upgrading, true, 'the upgrade was observed');
    const acks = await Promise.all(pending);
    assert.ok(acks.every((a) => a.ok === true), JSON.stringify(acks.filter((a) => !a.ok)));
    await waitFor(() => got.length >= 60, 5000);
    assert.deepEqual(got, Array.from({ length: 60 }, (_, i) => `m${i}`));
  });
});

test('SOCKETIO_PATH changes the endpoint path', async () => {
  const srv = await startServer({ env: { SOCKETIO_PATH: '/rt/' } });
  try {
    for (const transports of [['polling'], ['websocket']]) {
      const s = await connect(srv.url, { user: 'alice', path: '/rt/', transports });
      assert.equal((await ack(s, 'join-room', 'p')).ok, true);
      s.disconnect();
    }
    const res = await fetch(`${srv.url}/rt/?EIO=4&transport=polling`, { signal: AbortSignal.timeout(5000) });
    const body = await res.text();
    assert.equal(res.status, 200);
    assert.match(body, /^0\{.*"sid"/);
    const old = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`, { signal: AbortSignal.timeout(5000) });
    const oldBody = await old.text();
    assert.doesNotMatch(oldBody, /^0\{.*"sid"/, 'the default path must not serve Socket.IO when SOCKETIO_PATH is changed');
  } finally {
    await srv.stop();
  }
});
