// Compression as Node's engine.io does it: permessage-deflate on WebSocket (PER_MESSAGE_DEFLATE=1, off by
// default) and gzip/deflate long-polling responses (HTTP_COMPRESSION, on by default, from 1024 bytes).
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { describe, test, standardHooks, serverFor, connect, ack, once, waitFor, token } from './helpers/index.js';

standardHooks();

const BIG = Array.from({ length: 400 }, (_, i) => `chat line ${i}: the quick brown fox jumps over the lazy dog.`).join(' ').slice(0, 12000);

/**
 * A TCP proxy that records the WebSocket frame headers going through it (after the HTTP upgrade):
 * frames: [{ dir: 'up' | 'down', rsv1, opcode, len }] (len: payload bytes on the wire).
 */
async function frameTap(targetPort) {
  const frames = [];
  const sockets = new Set();
  const parser = (dir) => {
    let buf = Buffer.alloc(0);
    let inHttp = true;
    return (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (inHttp) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        inHttp = false;
        buf = buf.subarray(i + 4);
      }
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf[1] & 0x80) off += 4; // mask
        if (buf.length < off + len) return;
        frames.push({ dir, rsv1: (buf[0] & 0x40) !== 0, opcode: buf[0] & 0x0f, len });
        buf = buf.subarray(off + len);
      }
    };
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const up = parser('up');
    const down = parser('down');
    client.on('data', (d) => { up(d); upstream.write(d); });
    upstream.on('data', (d) => { down(d); client.write(d); });
    const destroy = () => { client.destroy(); upstream.destroy(); };
    for (const s of [client, upstream]) {
      s.on('error', destroy);
      s.on('close', destroy);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    frames,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

/**
 * A raw ws client offering permessage-deflate; once the open packet is in, resolves the server's
 * Sec-WebSocket-Extensions answer ('' for none) and what ws negotiated.
 */
function rawExtensions(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: true, handshakeTimeout: 5000 });
    let header;
    ws.once('upgrade', (res) => { header = res.headers['sec-websocket-extensions'] ?? ''; });
    ws.once('message', () => {
      resolve({ header, negotiated: ws.extensions });
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** One HTTP request; resolves { status, headers, body: Buffer } without decoding the body. */
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, timeout: 5000 }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

function decode(res) {
  switch (res.headers['content-encoding']) {
    case 'gzip': return zlib.gunzipSync(res.body).toString();
    case 'deflate': return zlib.inflateSync(res.body).toString(); // HTTP deflate is zlib, as Node's createDeflate
    case undefined: return res.body.toString();
    default: throw new Error(`unexpected Content-Encoding ${res.headers['content-encoding']}`);
  }
}

describe('compression', () => {
  const env = { RATE_LIMIT: '1000', MESSAGE_MAX_BYTES: '20000' };
  const deflating = serverFor({ env: { ...env, PER_MESSAGE_DEFLATE: '1' } });
  const plain = serverFor({ env });

  test('permessage-deflate is negotiated only with PER_MESSAGE_DEFLATE=1, without context takeover', async () => {
    assert.deepEqual(await rawExtensions(plain.srv.url), { header: '', negotiated: '' });
    assert.deepEqual(await rawExtensions(deflating.srv.url), {
      header: 'permessage-deflate;server_no_context_takeover;client_no_context_takeover',
      negotiated: 'permessage-deflate',
    });
  });

  test('socket.io-client with perMessageDeflate: large messages travel compressed both ways', async () => {
    const tap = await frameTap(deflating.srv.port);
    try {
      const opts = { transports: ['websocket'], perMessageDeflate: { threshold: 0 } };
      const alice = await connect(tap.url, { user: 'alice', ...opts });
      const bob = await connect(tap.url, { user: 'bob', ...opts });
      assert.equal(alice.io.engine.transport.ws.extensions, 'permessage-deflate');
      assert.equal((await ack(alice, 'join-room', 'zroom')).ok, true);
      assert.equal((await ack(bob, 'join-room', 'zroom')).ok, true);

      const toBob = once(bob, 'message');
      assert.equal((await ack(alice, 'message', { roomId: 'zroom', text: `${BIG} a` })).ok, true);
      assert.equal((await toBob)[0].text, `${BIG} a`);
      const toAlice = once(alice, 'message');
      assert.equal((await ack(bob, 'message', { roomId: 'zroom', text: `${BIG} b` })).ok, true);
      assert.equal((await toAlice)[0].text, `${BIG} b`);

      const data = tap.frames.filter((f) => f.opcode === 1 || f.opcode === 2);
      const up = data.filter((f) => f.dir === 'up');
      const down = data.filter((f) => f.dir === 'down');
      // The clients compress everything (threshold 0), the two large messages included, and well.
      assert.ok(up.length >= 6 && up.every((f) => f.rsv1), JSON.stringify(up));
      assert.ok(up.every((f) => f.len < BIG.length / 4), JSON.stringify(up));
      // The server compresses the large broadcasts (received by both, sender included or not) and leaves
      // what is below its 1024-byte threshold (open packet, CONNECT, acks) uncompressed.
      const zDown = down.filter((f) => f.rsv1);
      assert.ok(zDown.length >= 2 && zDown.every((f) => f.len < BIG.length / 4), JSON.stringify(down));
      assert.ok(down.some((f) => !f.rsv1), JSON.stringify(down));
      assert.ok(down.every((f) => f.rsv1 || f.len < 1024), JSON.stringify(down));
    } finally {
      await tap.close();
    }
  });

  test('long-polling: gzip or deflate for a large response, as Accept-Encoding asks; none for a small one', async () => {
    const base = `${deflating.srv.url}/socket.io/?EIO=4&transport=polling`;
    const open = await request(base);
    assert.equal(open.status, 200);
    const { sid } = JSON.parse(open.body.toString().slice(1));
    const url = `${base}&sid=${sid}`;
    const post = async (payload) => {
      const res = await request(url, { method: 'POST', body: payload, headers: { 'Content-Type': 'text/plain;charset=UTF-8' } });
      assert.equal(res.status, 200);
    };
    // Polls until a payload contains what is wanted; returns that response.
    const pollFor = async (want, headers) => {
      for (let i = 0; i < 20; i++) {
        const res = await request(url, { headers });
        assert.equal(res.status, 200);
        if (decode(res).includes(want)) return res;
      }
      throw new Error(`${want.slice(0, 20)}... not received`);
    };
    await post(`40${JSON.stringify({ token: token('carol') })}`);
    const connected = await pollFor('40{', { 'Accept-Encoding': 'gzip' });
    assert.equal(connected.headers['content-encoding'], undefined, 'a small response is not compressed');
    await post('420["join-room","gzroom"]');
    await pollFor('430[', { 'Accept-Encoding': 'gzip' });

    const bob = await connect(deflating.srv.url, { user: 'bob', transports: ['websocket'] });
    assert.equal((await ack(bob, 'join-room', 'gzroom')).ok, true);
    for (const [encoding, headers] of [['gzip', { 'Accept-Encoding': 'gzip, deflate, br' }], ['deflate', { 'Accept-Encoding': 'deflate' }], [undefined, {}]]) {
      const text = `${BIG} ${encoding}`;
      assert.equal((await ack(bob, 'message', { roomId: 'gzroom', text })).ok, true);
      const res = await pollFor(text, headers);
      assert.equal(res.headers['content-encoding'], encoding);
      assert.equal(Number(res.headers['content-length']), res.body.length);
      if (encoding) assert.ok(res.body.length < text.length / 4, `${res.body.length} bytes for ${text.length}`);
    }
    await waitFor(() => bob.connected, 1000);
  });
});
