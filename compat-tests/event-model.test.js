// Node's event model in the Go API, with the real socket.io-client: handlers that get every argument and answer the
// client's callback with any arguments, binary included (example-embed's /tools, registered with Namespace.On), no
// ack for an event nobody handles, the client's `retries` option, the server's emitWithAck; and socket.io's own chat
// example ported handler for handler (cmd/example-chat) with clients that speak its events unchanged.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, client, once, collect, sleep } from './helpers/index.js';

standardHooks();

const cbArgs = (socket, event, ...args) => new Promise((resolve, reject) => {
  socket.timeout(5000).emit(event, ...args, (err, ...res) => (err ? reject(err) : resolve(res)));
});

describe('Node-style handlers (Namespace.On) with socket.io-client', () => {
  const ref = serverFor({ bin: 'example-embed' });

  for (const transports of [['websocket'], ['polling']]) {
    const t = transports[0];
    test(`${t}: every argument in, every argument back (binary included, none included)`, async () => {
      const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports });
      const bin = Buffer.from([0, 1, 2, 255]);
      const sent = [1, 'two', { three: 3, raw: Buffer.from('abc') }, null, [true, bin], bin];
      const got = await cbArgs(s, 'echo-args', ...sent);
      assert.deepEqual(got, sent);
      assert.ok(Buffer.isBuffer(got[5]) && Buffer.isBuffer(got[2].raw) && Buffer.isBuffer(got[4][1]), 'binary comes back as Buffers');
      assert.deepEqual(await cbArgs(s, 'echo-args'), [], 'an ack with no arguments');
    });
  }

  test('an event nobody handles gets no ack: the client\'s timeout fires', async () => {
    const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports: ['websocket'] });
    const err = await new Promise((resolve) => s.timeout(500).emit('nobody-handles-this', 1, (e) => resolve(e)));
    assert.ok(err instanceof Error, `the callback got ${err}`);
    assert.match(err.message, /timed out/);
    // The connection is fine and the next event is answered.
    assert.deepEqual(await cbArgs(s, 'echo-args', 'still here'), ['still here']);
  });

  test('retries: acknowledged emits resolve once and are not resent', async () => {
    // Without ackTimeout, socket.io-client reads the first ack argument as the error: Node handlers answer cb(null, value).
    const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports: ['websocket'], retries: 3 });
    assert.equal(await s.emitWithAck('echo-error-first', 'hello'), 'hello');
    assert.equal(await s.emitWithAck('echo-error-first', 'again'), 'again');
    const [calls] = await cbArgs(s, 'calls');
    assert.equal(calls, 2, 'each emit reached the handler once');
    // With ackTimeout the client adds the error argument itself: a plain cb(value) resolves.
    const t = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports: ['websocket'], retries: 3, ackTimeout: 2000 });
    assert.equal(await t.emitWithAck('echo-args', 'plain'), 'plain');
  });

  test('server emits with any arguments, and waits for the client\'s answer (emitWithAck)', async () => {
    const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports: ['websocket'] });
    const echoed = once(s, 'echoed');
    s.emit('emit-back', 'a', 2, Buffer.from([7]));
    const args = await echoed;
    // With connection state recovery on, a Node server's socket.emit carries the offset as one more argument too.
    assert.deepEqual(args.slice(0, 3), ['a', 2, Buffer.from([7])]);
    assert.ok(args.length === 3 || (args.length === 4 && typeof args[3] === 'string'), `echoed ${JSON.stringify(args)}`);

    s.on('question', (a, b, cb) => cb(`${a}+${b}`, Buffer.from([a, b])));
    const answer = await cbArgs(s, 'ask-me', 3, 4);
    assert.deepEqual(answer, [null, '3+4', Buffer.from([3, 4])]);
  });
});

describe('socket.io\'s chat example ported to Go (cmd/example-chat)', () => {
  const ref = serverFor({ bin: 'example-chat', env: { JWT_SECRET: null } });

  test('login, user joined, typing, new message, user left: as the Node example sends them', async () => {
    // Clients as the example's public/main.js: io() on "/", no auth, default transports.
    const alice = await connect(ref.srv.url, { auth: undefined });
    const bob = await connect(ref.srv.url, { auth: undefined });

    const aliceLogin = once(alice, 'login');
    alice.emit('add user', 'alice');
    assert.deepEqual((await aliceLogin)[0], { numUsers: 1 });

    const joined = once(alice, 'user joined');
    const bobLogin = once(bob, 'login');
    bob.emit('add user', 'bob');
    assert.deepEqual((await bobLogin)[0], { numUsers: 2 });
    assert.deepEqual((await joined)[0], { username: 'bob', numUsers: 2 });

    const aliceTyping = collect(alice, 'typing');
    const bobTyping = collect(bob, 'typing');
    const typing = once(alice, 'typing');
    bob.emit('typing');
    assert.deepEqual((await typing)[0], { username: 'bob' });

    const msg = once(bob, 'new message');
    alice.emit('new message', 'hi bob');
    assert.deepEqual((await msg)[0], { username: 'alice', message: 'hi bob' });
    const stop = once(alice, 'stop typing');
    bob.emit('stop typing');
    assert.deepEqual((await stop)[0], { username: 'bob' });
    assert.equal(bobTyping.length, 0, 'socket.broadcast does not reach the sender');
    assert.equal(aliceTyping.length, 1);

    // A second 'add user' from the same socket is ignored (addedUser), as in Node.
    const again = collect(alice, 'user joined');
    bob.emit('add user', 'bob2');

    const left = once(alice, 'user left');
    bob.disconnect();
    assert.deepEqual((await left)[0], { username: 'bob', numUsers: 1 });
    assert.equal(again.length, 0, 'a second add user is ignored');

    const carol = client(ref.srv.url, { auth: undefined });
    await once(carol, 'connect');
    const carolLogin = once(carol, 'login');
    carol.emit('add user', 'carol');
    assert.deepEqual((await carolLogin)[0], { numUsers: 2 });
    await sleep(0);
  });
});

describe('the contract\'s {ok, ...} acks and socket.io-client\'s retries option', () => {
  const ref = serverFor();

  test('with ackTimeout, emitWithAck resolves with the {ok, ...} ack; without it the client reads {ok} as an error', async () => {
    const s = await connect(ref.srv.url, { user: 'alice', transports: ['websocket'], retries: 2, ackTimeout: 2000 });
    const joined = await s.emitWithAck('join-room', 'retries-room');
    assert.equal(joined.ok, true);
    const refused = await s.emitWithAck('join-room', '');
    assert.equal(refused.ok, false, 'a refusal is a value, not a rejection');

    const u = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'], retries: 2 });
    const err = await u.emitWithAck('presence', 'retries-room').then(() => null, (e) => e);
    assert.equal(err?.ok, true, `without ackTimeout the ack {ok:true} is taken for an error: ${JSON.stringify(err)}`);
  });
});
