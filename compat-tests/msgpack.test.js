// PARSER=msgpack with the real socket.io-msgpack-parser 3.0.2 on socket.io-client: the wire really is msgpack, the
// core suite passes a second time that way, and nodes with different parsers share one cluster.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import msgpackParser from 'socket.io-msgpack-parser';
import { describe, test, standardHooks, startServer, connect, client, ack, once, sleep, withTimeout, ROOT } from './helpers/index.js';
import { joinOk, sendOk } from './helpers/room.js';
import { startRedis } from './cluster/harness.js';

standardHooks();

const MP = { parser: msgpackParser };
const CORE = ['auth', 'rooms', 'binary', 'recovery', 'reconnect'].map((f) => `compat-tests/${f}.test.js`);

describe('msgpack parser', () => {
  for (const transport of ['polling', 'websocket']) {
    test(`${transport}: every packet is one binary msgpack message, and a default-parser client is refused`, async () => {
      const srv = await startServer({ env: { PARSER: 'msgpack' } });
      const s = await connect(srv.url, { ...MP, transports: [transport], user: 'alice', ...(transport === 'polling' ? { upgrade: false } : {}) });
      const seen = [];
      s.io.engine.on('packet', (p) => { if (p.type === 'message') seen.push(p.data); });
      const r = `mp-${transport}`;
      await joinOk(s, r);
      const got = once(s, 'message', 5000);
      await sendOk(s, r, 'hé ✓');
      const [m] = await got;
      assert.equal(m.text, 'hé ✓');
      assert.ok(seen.length >= 2, `saw ${seen.length} messages`);
      for (const d of seen) assert.ok(typeof d !== 'string', `a text message ${JSON.stringify(d)} on a msgpack connection`);

      const plain = client(srv.url, { transports: [transport], user: 'bob' });
      let connected = false;
      plain.on('connect', () => { connected = true; });
      await sleep(1500);
      assert.equal(connected, false, 'a default-parser client connected to a PARSER=msgpack server');
    });
  }

  test('a cluster mixes parsers: a default node and a msgpack node share rooms over Redis', async () => {
    const redis = await startRedis();
    try {
      const env = { ADAPTER: 'redis', REDIS_URL: redis.url };
      const a = await startServer({ env: { ...env, NODE_ID: 'mp', PARSER: 'msgpack' } });
      const b = await startServer({ env: { ...env, NODE_ID: 'json', PARSER: 'default' } });
      const alice = await connect(a.url, { ...MP, transports: ['websocket'], user: 'alice' });
      const bob = await connect(b.url, { transports: ['websocket'], user: 'bob' });
      const r = 'mixed';
      await joinOk(alice, r);
      await joinOk(bob, r);
      for (const [from, to, text] of [[alice, bob, 'from msgpack'], [bob, alice, 'from json']]) {
        // The sender gets its own message too: each side waits for this text, not for the next message.
        const got = withTimeout(new Promise((resolve) => to.on('message', (m) => m.text === text && resolve(m))), 5000, text);
        await sendOk(from, r, text);
        const m = await got;
        assert.equal(m.text, text);
      }
      const p = await ack(bob, 'presence', r);
      assert.deepEqual(p.members.map((u) => u.userId).sort(), ['alice', 'bob']);
    } finally {
      await redis.stop();
    }
  });

  test('the core suite (connect, refusals, rooms, message and ack, binary, reconnection with recovery) passes with the msgpack parser', async () => {
    const env = { ...process.env, SB_PARSER: 'msgpack' };
    delete env.NODE_TEST_CONTEXT; // else node --test inside a test runs nothing
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=120000', '--test-reporter=tap', ...CORE], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const [code] = await once(child, 'exit', 600000);
    const pass = Number(/^# pass (\d+)/m.exec(out)?.[1] ?? 0);
    const fail = Number(/^# fail (\d+)/m.exec(out)?.[1] ?? -1);
    if (code !== 0 || fail !== 0 || pass < 30) process.stderr.write(out.slice(-20000));
    assert.equal(fail, 0, 'failures with the msgpack parser (output above)');
    assert.ok(pass >= 30, `only ${pass} tests ran`);
    assert.equal(code, 0);
  });
});
