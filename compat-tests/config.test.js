// Configuration: flags win over environment variables; Engine.IO handshake values follow PING_INTERVAL,
// PING_TIMEOUT and MAX_PAYLOAD; an unresponsive client is dropped after the heartbeat timeout.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, startServer, serverFor, connect, ack, once, token, waitFor } from './helpers/index.js';
import { joinOk, sendOk, assertRefused, record } from './helpers/room.js';
import { rawWs, httpRequest } from './helpers/raw.js';

standardHooks();

async function handshake(url) {
  const r = await httpRequest(`${url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(r.status, 200);
  const m = r.body.match(/^0(\{.*\})$/);
  assert.ok(m, `unexpected handshake body ${r.body}`);
  return JSON.parse(m[1]);
}

test('flags win over environment variables', async () => {
  const srv = await startServer({ env: { MESSAGE_MAX_BYTES: '10', MAX_ROOMS_PER_SOCKET: '1' }, args: ['--message-max-bytes=20', '--max-rooms-per-socket', '2'] });
  try {
    const s = await connect(srv.url, { user: 'alice', transports: ['websocket'] });
    await joinOk(s, 'f1');
    await joinOk(s, 'f2');
    assertRefused(await ack(s, 'join-room', 'f3'), 'too_many_rooms');
    await sendOk(s, 'f1', '0123456789abcde'); // 15 bytes: over the env value, under the flag
    assertRefused(await ack(s, 'message', { roomId: 'f1', text: 'x'.repeat(21) }), 'payload_too_large');
  } finally {
    await srv.stop();
  }
});

test('Engine.IO handshake advertises the defaults: pingInterval 25000, pingTimeout 20000, maxPayload 1000000', async () => {
  const srv = await startServer();
  try {
    const h = await handshake(srv.url);
    assert.equal(h.pingInterval, 25000);
    assert.equal(h.pingTimeout, 20000);
    assert.equal(h.maxPayload, 1000000);
    assert.deepEqual(h.upgrades, ['websocket']);
    assert.equal(typeof h.sid, 'string');
  } finally {
    await srv.stop();
  }
});

describe('PING_INTERVAL=1s, PING_TIMEOUT=1s, MAX_PAYLOAD=12345', () => {
  const ref = serverFor({ env: { PING_INTERVAL: '1s', PING_TIMEOUT: '1s', MAX_PAYLOAD: '12345' } });

  test('the handshake advertises the configured values', async () => {
    const h = await handshake(ref.srv.url);
    assert.equal(h.pingInterval, 1000);
    assert.equal(h.pingTimeout, 1000);
    assert.equal(h.maxPayload, 12345);
  });

  test('a client that stops answering pings is dropped after the timeout; the room is told', async () => {
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(bob, 'hb');
    const lb = record(bob);
    const raw = await rawWs(ref.srv.url, { token: token('mute'), pong: false });
    raw.send(`420${JSON.stringify(['join-room', 'hb'])}`);
    await raw.waitFrame((f) => f.startsWith('430'));
    const t0 = Date.now();
    await waitFor(() => raw.isClosed(), 8000, { message: 'an unresponsive client was not dropped' });
    const took = Date.now() - t0;
    assert.ok(took < 6000, `dropped after ${took} ms; expected about pingInterval + pingTimeout (2 s)`);
    await waitFor(() => lb.of('user-left').length > 0, 3000, { message: 'no user-left for the dropped client' });
    assert.deepEqual(lb.of('user-left'), [{ roomId: 'hb', userId: 'mute', name: 'Mute' }]);
  });

  test('a client that answers pings stays connected across several heartbeats', async () => {
    const s = await connect(ref.srv.url, { user: 'alive', transports: ['websocket'] });
    const t0 = Date.now();
    const pings = [];
    s.io.on('ping', () => pings.push(Date.now() - t0));
    const dropped = [];
    s.on('disconnect', (r) => dropped.push(`${r} after ${Date.now() - t0} ms`));
    await waitFor(() => pings.length >= 3 || dropped.length > 0, 8000, { message: () => `pings at ${pings}` });
    assert.deepEqual(dropped, [], `a client answering pings was disconnected (pings at ${pings} ms)`);
    assert.equal(s.connected, true);
    await joinOk(s, 'still');
  });

  test('polling clients also keep their session across heartbeats', async () => {
    const s = await connect(ref.srv.url, { user: 'poller', transports: ['polling'] });
    const t0 = Date.now();
    const pings = [];
    s.io.on('ping', () => pings.push(Date.now() - t0));
    const dropped = [];
    s.on('disconnect', (r) => dropped.push(`${r} after ${Date.now() - t0} ms`));
    await waitFor(() => pings.length >= 3 || dropped.length > 0, 8000, { message: () => `pings at ${pings}` });
    assert.deepEqual(dropped, [], `a polling client answering pings was disconnected (pings at ${pings} ms)`);
    await joinOk(s, 'still-polling');
  });
});
