// Binary payloads both ways, through the example-embed binary's /tools namespace (echo, blob).
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, connectError, ack, once, collect, assertAlive } from './helpers/index.js';
import { joinOk, sendOk } from './helpers/room.js';

standardHooks();

const pattern = (n) => Buffer.from(Array.from({ length: n }, (_, i) => i % 256));
const random = (n) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7919 + 13) & 0xff;
  return b;
};

describe('example-embed /tools namespace', () => {
  const ref = serverFor({ bin: 'example-embed' });

  test('the embedding program serves its own routes and the rooms namespace', async () => {
    const res = await fetch(`${ref.srv.url}/hello`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /hello/);
    const a = await connect(ref.srv.url, { user: 'alice', transports: ['websocket'] });
    await joinOk(a, 'embedded');
    const got = once(a, 'message');
    await sendOk(a, 'embedded', 'works');
    assert.equal((await got)[0].text, 'works');
  });

  test('/tools requires a token like "/"', async () => {
    const err = await connectError(ref.srv.url, { nsp: '/tools', transports: ['websocket'] });
    assert.equal(err.message, 'Authentication required');
    assert.equal(err.data?.code, 'token_missing');
  });

  for (const transports of [['websocket'], ['polling']]) {
    const t = transports[0];

    test(`${t}: echo returns a Buffer as a Buffer`, async () => {
      const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports });
      for (const buf of [Buffer.from([1, 2, 3]), Buffer.alloc(0), random(1000), pattern(256)]) {
        const a = await ack(s, 'echo', buf);
        assert.deepEqual(Object.keys(a).sort(), ['data', 'ok']);
        assert.equal(a.ok, true);
        assert.ok(Buffer.isBuffer(a.data), `data is not a Buffer: ${typeof a.data} ${JSON.stringify(a.data)?.slice(0, 80)}`);
        assert.ok(a.data.equals(buf), `bytes differ for a ${buf.length}-byte buffer`);
      }
    });

    test(`${t}: echo keeps binary inside objects and arrays, and plain JSON as JSON`, async () => {
      const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports });
      const payload = { name: 'file.bin', size: 3, bin: Buffer.from([9, 8, 7]), list: [Buffer.from('abc'), 'x', 1, { deep: Buffer.from([0, 255]) }] };
      const a = await ack(s, 'echo', payload);
      assert.equal(a.ok, true);
      assert.deepEqual(a.data, payload);
      assert.ok(Buffer.isBuffer(a.data.bin) && Buffer.isBuffer(a.data.list[0]) && Buffer.isBuffer(a.data.list[3].deep));
      assert.deepEqual(await ack(s, 'echo', { x: 1, y: [true, null, 'z'] }), { ok: true, data: { x: 1, y: [true, null, 'z'] } });
      assert.deepEqual(await ack(s, 'echo', 'text'), { ok: true, data: 'text' });
      assert.deepEqual(await ack(s, 'echo', 42.5), { ok: true, data: 42.5 });
    });

    test(`${t}: Uint8Array and ArrayBuffer arrive as binary`, async () => {
      const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports });
      const u8 = new Uint8Array([10, 20, 30, 40]);
      const a1 = await ack(s, 'echo', u8);
      assert.ok(Buffer.isBuffer(a1.data) && a1.data.equals(Buffer.from(u8)));
      const a2 = await ack(s, 'echo', u8.buffer);
      assert.ok(Buffer.isBuffer(a2.data) && a2.data.equals(Buffer.from(u8)));
    });

    test(`${t}: a 600 KB binary round trip (under MAX_PAYLOAD)`, async () => {
      const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports });
      const big = random(600 * 1024);
      const a = await s.timeout(15000).emitWithAck('echo', big);
      assert.equal(a.ok, true);
      assert.ok(Buffer.isBuffer(a.data) && a.data.equals(big));
    });

    test(`${t}: blob {size:n} → binary "blob" event {bytes} with byte i = i % 256, ack {ok:true}`, async () => {
      const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports });
      const blobs = collect(s, 'blob');
      const sizes = [0, 1, 1000, 65536];
      for (const n of sizes) {
        const a = await ack(s, 'blob', { size: n });
        assert.deepEqual(a, { ok: true });
      }
      await blobs.waitCount(sizes.length, 5000);
      blobs.forEach((b, i) => {
        assert.deepEqual(Object.keys(b), ['bytes']);
        assert.ok(Buffer.isBuffer(b.bytes), `blob ${i}: bytes is not a Buffer`);
        assert.equal(b.bytes.length, sizes[i]);
        assert.ok(b.bytes.equals(pattern(sizes[i])), `blob ${i}: wrong bytes`);
      });
    });
  }

  test('blob beyond 65536 bytes is refused with bad_request; wrong shapes too', async () => {
    const s = await connect(ref.srv.url, { nsp: '/tools', user: 'alice', transports: ['websocket'] });
    const blobs = collect(s, 'blob');
    for (const arg of [{ size: 65537 }, { size: -1 }, { size: 'ten' }, 'x']) {
      const a = await ack(s, 'blob', arg);
      assert.equal(a.ok, false, JSON.stringify(arg));
      assert.equal(a.error?.code, 'bad_request', `${JSON.stringify(arg)}: ${JSON.stringify(a)}`);
    }
    assert.equal(blobs.length, 0);
  });

  test('a binary payload over MAX_PAYLOAD closes only that client', async () => {
    const bystander = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(bystander, 'bin-calm');
    const tools = await connect(ref.srv.url, { nsp: '/tools', user: 'bob', transports: ['websocket'] });
    const bad = await connect(ref.srv.url, { nsp: '/tools', user: 'mallory', transports: ['websocket'] });
    const gone = once(bad, 'disconnect', 8000);
    bad.emit('echo', random(1_200_000));
    const [reason] = await gone;
    assert.match(reason, /transport (close|error)/);
    await assertAlive(ref.srv);
    const got = once(bystander, 'message');
    await sendOk(bystander, 'bin-calm', 'fine');
    assert.equal((await got)[0].text, 'fine');
    const a = await ack(tools, 'echo', Buffer.from([1]));
    assert.ok(a.ok && a.data.equals(Buffer.from([1])));
  });
});
