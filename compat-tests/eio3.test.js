// ALLOW_EIO3=1 with the real socket.io-client 2.5.0 (Engine.IO 3, Socket.IO protocol 4), over long-polling,
// WebSocket and the upgrade: the token from ?token=, join-room, message with ack, broadcasts both ways with a v4
// client in the same room, binary through /tools, the client's own heartbeat, refusals, reconnection.
import assert from 'node:assert/strict';
import ioV2 from 'socket.io-client-v2';
import { describe, test, standardHooks, startServer, connect, ack, once, sleep, token, withTimeout } from './helpers/index.js';
import { joinOk, sendOk } from './helpers/room.js';

standardHooks();

const v2s = new Set();
/** A socket.io-client 2.x socket (not awaited); closed after each test. */
function v2(url, { transports, query, nsp = '', ...opts } = {}) {
  const s = ioV2(url + nsp, { forceNew: true, reconnection: false, timeout: 5000, transports, query, ...opts });
  v2s.add(s);
  return s;
}
async function v2connected(url, opts) {
  const s = v2(url, opts);
  await once(s, 'connect', 8000, { rejectOn: ['error', 'connect_error'] });
  return s;
}
/** A v2 emit with an ack, bounded. */
const v2ack = (s, event, ...args) => withTimeout(new Promise((resolve) => s.emit(event, ...args, resolve)), 5000, `v2 ack of ${event}`);

describe('socket.io-client 2.x (ALLOW_EIO3)', { concurrency: false }, () => {
  let srv;
  const env = { ALLOW_EIO3: '1', AUTH_QUERY_TOKEN: '1', PING_INTERVAL: '300ms', PING_TIMEOUT: '200ms', RATE_LIMIT: '1000' };

  test('start', async () => {
    srv = await startServer({ env });
  });

  const close = () => {
    for (const s of v2s) s.close();
    v2s.clear();
  };

  for (const [name, transports] of [['polling', ['polling']], ['websocket', ['websocket']], ['upgrade', undefined]]) {
    test(`${name}: ?token connects to "/", join-room, message with ack, broadcasts both ways with a v4 client`, async () => {
      try {
        const r = `v2-${name}`;
        const old = await v2connected(srv.url, { transports, query: { token: token('alice') } });
        assert.equal(old.id, old.io.engine.id, 'a v2 socket id on "/" is its Engine.IO id');
        const joined = await v2ack(old, 'join-room', r);
        assert.equal(joined.ok, true, JSON.stringify(joined));
        assert.deepEqual(joined.members, [{ userId: 'alice', name: 'Alice' }]);

        const modern = await connect(srv.url, { user: 'bob', transports: ['websocket'] });
        await joinOk(modern, r);
        const fromOld = once(modern, 'message', 5000);
        const sent = await v2ack(old, 'message', { roomId: r, text: 'from v2 ✓' });
        assert.equal(sent.ok, true, JSON.stringify(sent));
        assert.equal(typeof sent.id, 'string');
        const [m] = await fromOld;
        assert.equal(m.text, 'from v2 ✓');
        assert.equal(m.userId, 'alice');

        const toOld = once(old, 'message', 5000);
        await sendOk(modern, r, 'to v2 😀');
        const [m2] = await toOld;
        assert.equal(m2.text, 'to v2 😀');
        assert.equal(m2.userId, 'bob');

        if (transports === undefined) {
          await withTimeout((async () => {
            while (old.io.engine.transport.name !== 'websocket') await sleep(50);
          })(), 5000, 'the upgrade to WebSocket');
        }
        // Several heartbeats (the v2 client pings every 300 ms, the server answers) without a disconnect.
        let gone = null;
        old.on('disconnect', (why) => { gone = why; });
        await sleep(1200);
        assert.equal(gone, null, `disconnected: ${gone}`);
        assert.equal(old.connected, true);
      } finally {
        close();
      }
    });
  }

  test('binary both ways through /tools (auth from the namespace query), polling (base64) and websocket', async () => {
    const emb = await startServer({ bin: 'example-embed', env });
    try {
      for (const transports of [['polling'], ['websocket']]) {
        const s = await v2connected(emb.url, { transports, nsp: '/tools', query: { token: token('carol') } });
        const a = await v2ack(s, 'echo', Buffer.from([0, 1, 2, 255]));
        assert.equal(a.ok, true, JSON.stringify(a));
        assert.ok(Buffer.isBuffer(a.data) && a.data.equals(Buffer.from([0, 1, 2, 255])), `${transports}: ${JSON.stringify(a)}`);
        s.close();
      }
    } finally {
      close();
      await emb.stop();
    }
  });

  test('refusals: no token and a bad token get the error data, as Node sends it to v2 clients', async () => {
    try {
      for (const [query, code] of [[undefined, 'token_missing'], [{ token: 'x.y.z' }, 'token_invalid']]) {
        const s = v2(srv.url, { transports: ['websocket'], query });
        const [err] = await once(s, 'error', 5000, { rejectOn: ['connect'] });
        assert.deepEqual(err, { code });
      }
      const s = v2(srv.url, { transports: ['websocket'], nsp: '/nowhere', query: { token: token('alice') } });
      const [err] = await once(s, 'error', 5000, { rejectOn: ['connect'] });
      assert.deepEqual(err, { message: 'Invalid namespace' });
    } finally {
      close();
    }
  });

  test('reconnects when its connection drops, and is a fresh member of its rooms', async () => {
    try {
      const s = await v2connected(srv.url, { transports: ['websocket'], query: { token: token('dave') }, reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
      await v2ack(s, 'join-room', 'v2-re');
      const back = once(s, 'reconnect', 8000);
      const again = once(s, 'connect', 8000); // "/" again, implicitly, once the new transport is open
      s.io.engine.close(); // the transport drops: the manager reconnects
      await back;
      await again;
      assert.equal(s.connected, true);
      const j = await v2ack(s, 'join-room', 'v2-re');
      assert.equal(j.ok, true);
      const modern = await connect(srv.url, { user: 'erin', transports: ['websocket'] });
      await joinOk(modern, 'v2-re');
      const got = once(s, 'message', 5000);
      await sendOk(modern, 'v2-re', 'after the reconnect');
      assert.equal((await got)[0].text, 'after the reconnect');
    } finally {
      close();
    }
  });

  test('without ALLOW_EIO3 a v2 client is refused', async () => {
    const plain = await startServer({ env: { AUTH_QUERY_TOKEN: '1' } });
    try {
      const s = v2(plain.url, { transports: ['polling'], query: { token: token('alice') } });
      await once(s, 'connect_error', 5000, { rejectOn: ['connect'] });
      const res = await fetch(`${plain.url}/socket.io/?EIO=3&transport=polling`, { signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { code: 5, message: 'Unsupported protocol version' });
    } finally {
      close();
      await plain.stop();
    }
  });

  test('stop', async () => {
    await srv.stop();
  });
});
