// Bad input hurts only the offender: oversize payloads (both transports, chunked and sized polling bodies), malformed
// packets, unknown namespaces, reserved/unknown event names. After each, a bystander pair keeps chatting and the
// server process is alive.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, connectError, ack, once, waitFor, sleep, token, assertAlive, client } from './helpers/index.js';
import { joinOk, sendOk } from './helpers/room.js';
import { rawWs, rawPolling, httpRequest } from './helpers/raw.js';
import fs from 'node:fs';
import net from 'node:net';
import crypto from 'node:crypto';
import { startServer } from './helpers/index.js';

standardHooks();

const MAX_PAYLOAD = 20000;

describe('bad input', () => {
  const ref = serverFor({ env: { MAX_PAYLOAD: String(MAX_PAYLOAD) } });
  let n = 0;

  /** Two bystanders (websocket + polling) in a room, checked to chat before and after `fn`. */
  async function withBystanders(fn) {
    const room = `calm-${++n}`;
    const b1 = await connect(ref.srv.url, { transports: ['websocket'], user: 'bystander1' });
    const b2 = await connect(ref.srv.url, { transports: ['polling'], user: 'bystander2' });
    await joinOk(b1, room);
    await joinOk(b2, room);
    let b1lost = false;
    let b2lost = false;
    b1.on('disconnect', () => (b1lost = true));
    b2.on('disconnect', () => (b2lost = true));
    await fn();
    await assertAlive(ref.srv);
    assert.equal(b1lost || b2lost, false, 'a bystander was disconnected');
    const got2 = once(b2, 'message');
    await sendOk(b1, room, 'still chatting 1');
    assert.equal((await got2)[0].text, 'still chatting 1');
    const got1 = once(b1, 'message');
    await sendOk(b2, room, 'still chatting 2');
    assert.equal((await got1)[0].text, 'still chatting 2');
  }

  test('a message over MAX_PAYLOAD over websocket closes that client only', async () => {
    await withBystanders(async () => {
      const bad = await connect(ref.srv.url, { transports: ['websocket'], user: 'mallory' });
      await joinOk(bad, 'calm-x');
      const gone = once(bad, 'disconnect', 5000);
      bad.emit('message', { roomId: 'calm-x', text: 'x'.repeat(MAX_PAYLOAD + 1000) });
      const [reason] = await gone;
      assert.match(reason, /transport (close|error)/);
    });
  });

  test('a message over MAX_PAYLOAD over polling closes that client only', async () => {
    await withBystanders(async () => {
      const bad = await connect(ref.srv.url, { transports: ['polling'], user: 'mallory' });
      await joinOk(bad, 'calm-x');
      const gone = once(bad, 'disconnect', 8000);
      bad.emit('message', { roomId: 'calm-x', text: 'x'.repeat(MAX_PAYLOAD + 1000) });
      const [reason] = await gone;
      assert.match(reason, /transport (close|error)|ping timeout/);
    });
  });

  test('a payload just under MAX_PAYLOAD is not a disconnect (it is payload_too_large)', async () => {
    const s = await connect(ref.srv.url, { transports: ['websocket'], user: 'big' });
    await joinOk(s, 'big');
    const a = await ack(s, 'message', { roomId: 'big', text: 'y'.repeat(MAX_PAYLOAD - 200) });
    assert.equal(a.error?.code, 'payload_too_large');
    assert.equal(s.connected, true);
  });

  test('a raw websocket frame over MAX_PAYLOAD closes that connection only', async () => {
    await withBystanders(async () => {
      const raw = await rawWs(ref.srv.url, { token: token('mallory') });
      raw.send(`42${JSON.stringify(['message', { roomId: 'x', text: 'z'.repeat(MAX_PAYLOAD * 2) }])}`);
      await waitFor(() => raw.isClosed(), 5000, { message: 'oversize frame did not close the connection' });
    });
  });

  test('a chunked polling POST above MAX_PAYLOAD is refused and closes that session only', async () => {
    await withBystanders(async () => {
      const p = await rawPolling(ref.srv.url, { token: token('mallory') });
      const chunk = `4${'a'.repeat(4095)}`;
      const res = await httpRequest(p.base, {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain;charset=UTF-8', 'Transfer-Encoding': 'chunked' },
        chunks: Array.from({ length: Math.ceil((MAX_PAYLOAD * 3) / 4096) }, () => chunk),
        chunkDelay: 2,
      });
      assert.ok(res.error || res.status >= 400, `oversize chunked POST was accepted: ${JSON.stringify({ status: res.status, body: res.body })}`);
      await assertSessionClosed(p);
    });
  });

  test('a polling POST with Content-Length above MAX_PAYLOAD is refused and closes that session only', async () => {
    await withBystanders(async () => {
      const p = await rawPolling(ref.srv.url, { token: token('mallory') });
      const res = await p.post(`42${JSON.stringify(['message', { roomId: 'x', text: 'q'.repeat(MAX_PAYLOAD) }])}`);
      assert.ok(res.error || res.status >= 400, `oversize POST was accepted: ${JSON.stringify({ status: res.status, body: res.body })}`);
      await assertSessionClosed(p);
    });
  });

  async function assertSessionClosed(p) {
    // the session must be gone: a poll answers 400 (unknown sid) or delivers a close packet, not a live session
    await waitFor(async () => {
      const g = await p.get(3000);
      if (g.timeout) return false;
      return g.status === 400 || g.status === 403 || g.error || /(^|\x1e)1($|\x1e)/.test(g.body || '');
    }, 8000, { interval: 200, message: 'the polling session stayed open' });
  }

  const MALFORMED = [
    ['garbage text', 'this is not a packet'],
    ['unknown engine.io type', '9hello'],
    ['unknown socket.io type', '49["message"]'],
    ['invalid JSON', '42["message", {"roomId": "x", "text": '],
    ['event payload not an array', '42{"a":1}'],
    ['empty event array', '42[]'],
    ['event name not a string', '42[{"x":1},"y"]'],
    ['attachment count not a number', '45x-["message",{"_placeholder":true,"num":0}]'],
    ['text while an attachment is expected', ['451-["message",{"_placeholder":true,"num":0}]', '42["message"]']],
    ['binary frame without a pending packet', Buffer.from([0xde, 0xad, 0xbe, 0xef])],
    ['invalid UTF-8 in a text frame', { text: Buffer.from([0x34, 0x32, 0xff, 0xfe, 0xfd]) }],
    ['CONNECT to an unknown namespace then garbage', ['40/nope,{}', '4}{']],
  ];

  for (const [name, frames] of MALFORMED) {
    test(`malformed packet over websocket (${name}) closes that connection only`, async () => {
      await withBystanders(async () => {
        const raw = await rawWs(ref.srv.url, { token: token('mallory') });
        for (const f of Array.isArray(frames) ? frames : [frames]) {
          if (Buffer.isBuffer(f)) raw.send(f, { binary: true });
          else if (f && f.text) raw.send(f.text, { binary: false });
          else raw.send(f);
        }
        await waitFor(() => raw.isClosed(), 5000, { message: () => `"${name}" did not close the connection` });
      });
    });
  }

  test('deeply nested JSON is harmless', async () => {
    await withBystanders(async () => {
      const raw = await rawWs(ref.srv.url, { token: token('mallory') });
      raw.send(`42["message",${'['.repeat(15000)}${']'.repeat(15000)}]`);
      raw.send(`420["join-room",${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}]`);
      await sleep(300);
    });
  });

  test('malformed packet over polling (garbage body) does not hurt others', async () => {
    await withBystanders(async () => {
      const p = await rawPolling(ref.srv.url, { token: token('mallory') });
      await p.post('42["message", {bad json');
      await p.post('\x1e\x1e\x1e');
      await p.post('bxyz=not base64');
      await sleep(200);
    });
  });

  test('reserved event names sent raw are harmless', async () => {
    await withBystanders(async () => {
      const raw = await rawWs(ref.srv.url, { token: token('mallory') });
      let id = 0;
      for (const ev of ['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener', 'error', 'ping']) {
        raw.send(`42${JSON.stringify([ev, { roomId: 'x' }])}`);
        raw.send(`42${id++}${JSON.stringify([ev])}`);
      }
      await sleep(300);
      // the offender is either closed (malformed) or still a working client
      if (!raw.isClosed()) {
        raw.send(`42${id}${JSON.stringify(['join-room', 'after-reserved'])}`);
        const reply = await raw.waitFrame((f) => f.startsWith(`43${id}[`), 3000).catch(() => null);
        if (!raw.isClosed()) assert.ok(reply, 'the offender is neither closed nor answering');
      }
    });
  });

  test('unknown namespace → connect_error "Invalid namespace"; the client\'s other namespace is unaffected', async () => {
    await withBystanders(async () => {
      for (const transports of [['websocket'], ['polling']]) {
        const err = await connectError(ref.srv.url, { nsp: '/nope', transports, user: 'alice' });
        assert.equal(err.message, 'Invalid namespace');
      }
      const err2 = await connectError(ref.srv.url, { nsp: '/admin', transports: ['websocket'] });
      assert.equal(err2.message, 'Invalid namespace');
      // multiplexed on one connection: "/" works while "/nope" is refused
      const main = await connect(ref.srv.url, { transports: ['websocket'], user: 'alice' });
      const other = main.io.socket('/nope', { auth: { token: token('alice') } });
      other.connect();
      const [e] = await once(other, 'connect_error', 5000);
      assert.equal(e.message, 'Invalid namespace');
      other.disconnect();
      assert.equal(main.connected, true);
      await joinOk(main, 'multiplexed');
      await sendOk(main, 'multiplexed', 'fine');
    });
  });

  test('a client that connects the transport but never joins a namespace does not hurt others', async () => {
    await withBystanders(async () => {
      const raw = await rawWs(ref.srv.url, { connect: false });
      await sleep(100);
      raw.close();
      const raw2 = await rawWs(ref.srv.url, { token: 'not-a-jwt' });
      assert.ok(raw2.frames.some((f) => typeof f === 'string' && f.startsWith('44')), 'expected a CONNECT_ERROR packet');
      raw2.close();
    });
  });
});

// ---- A client that never reads (issue 10: "sends max-size payloads as fast as it can while never reading") ----
// The attacker speaks WebSocket over a bare net.Socket: after CONNECT and join-room it pauses the socket and never
// reads again, while it writes 900 KB packets (a message of 4,000 text bytes padded to 900 KB with a field the
// server ignores) as fast as the socket drains. Every packet is accepted and broadcast back to the attacker's own
// room, so each also queues ~4 KB (the message and its ack) for a client that never takes it: the server's reader
// is throttled by MAX_INBOUND_BYTES and its writer fills the kernel buffers, then MAX_BUFFERED_BYTES / WRITE_TIMEOUT
// cut the client off. RATE_LIMIT is off so that the byte budget, not the flood kick, is what ends it.

/** A masked (zero key: the payload goes out unchanged) text frame header for n payload bytes. */
function frameHeader(n) {
  let h;
  if (n < 126) {
    h = Buffer.alloc(6);
    h[1] = 0x80 | n;
  } else if (n < 65536) {
    h = Buffer.alloc(8);
    h[1] = 0x80 | 126;
    h.writeUInt16BE(n, 2);
  } else {
    h = Buffer.alloc(14);
    h[1] = 0x80 | 127;
    h.writeBigUInt64BE(BigInt(n), 2);
  }
  h[0] = 0x81;
  return h;
}

/**
 * Opens a WebSocket session on a bare socket, CONNECTs with `tok`, joins `room`, then stops reading for good.
 * Returns { socket, closed (promise), closedAt(), error() }.
 */
async function nonReader(url, tok, room) {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  socket.setNoDelay(true);
  let closedAt = null;
  let error = null;
  socket.on('error', (e) => { error = e; });
  const closed = new Promise((resolve) => socket.once('close', () => { closedAt = Date.now(); resolve(); }));
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  const send = (s) => { const p = Buffer.from(s); socket.write(Buffer.concat([frameHeader(p.length), p])); };
  let buf = Buffer.alloc(0);
  let upgraded = false;
  let refused = null;
  const texts = [];
  const onData = (d) => {
    buf = Buffer.concat([buf, d]);
    if (!upgraded) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      if (!/^HTTP\/1\.1 101/.test(head)) {
        refused = `upgrade refused: ${head.split('\r\n')[0]}`;
        return;
      }
      upgraded = true;
      buf = buf.subarray(end + 4);
    }
    while (buf.length >= 2) { // the server's frames are small and unmasked here
      let n = buf[1] & 0x7f;
      let off = 2;
      if (n === 126) { if (buf.length < 4) return; n = buf.readUInt16BE(2); off = 4; }
      if (n === 127) { if (buf.length < 10) return; n = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + n) return;
      if ((buf[0] & 0x0f) === 1) texts.push(buf.subarray(off, off + n).toString());
      buf = buf.subarray(off + n);
    }
  };
  socket.on('data', onData);
  const key = crypto.randomBytes(16).toString('base64');
  socket.write(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n`
    + `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`);
  const frame = (pred, what) => waitFor(() => {
    if (refused) throw new Error(refused);
    return texts.find(pred);
  }, 5000, { message: what });
  await frame((f) => f.startsWith('0{'), 'engine.io open packet');
  send(`40${JSON.stringify({ token: tok })}`);
  await frame((f) => f.startsWith('40') || f.startsWith('44'), 'CONNECT reply');
  assert.ok(texts.some((f) => f.startsWith('40{')), `CONNECT refused: ${texts.join(' | ')}`);
  send(`420${JSON.stringify(['join-room', room])}`);
  const joined = await frame((f) => f.startsWith('430['), 'join-room ack');
  assert.match(joined, /^430\[\{"ok":true/);
  // From here on nothing is read: what the server sends piles up in the kernel buffers, then in the server.
  socket.off('data', onData);
  socket.pause();
  return { socket, closed, closedAt: () => closedAt, error: () => error };
}

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function metricValue(srv, name) {
  const res = await fetch(`${srv.url}/metrics`, { signal: AbortSignal.timeout(3000) });
  const text = await res.text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

describe('a client that never reads', () => {
  const PACKET_BYTES = 900_000; // under MAX_PAYLOAD (1,000,000): every packet is taken, none closes the client
  const MAX_PACKETS = 2000;
  const MAX_MS = 15_000;
  // RSS budget. What one connection may make the node hold: MAX_INBOUND_BYTES (2 MB) of input waiting for its
  // handler, MAX_BUFFERED_BYTES (1 MiB) queued for it, the frame being read (up to MAX_PAYLOAD, 1 MB) and its parse
  // (the decoded array and the message strings, ~2 x 1 MB), the recovery log's share (4 KB per accepted message,
  // ~8 MB for 2,000 packets). That is ~15 MB of live data; the Go heap is collected at twice the live heap
  // (GOGC=100) and freed pages go back to the OS lazily, so RSS may rise to about twice that: ~30 MB. The bound is
  // twice that again as margin for allocator and scheduling noise. Measured on a 2-core machine: a growth of 20-24 MB over 9 runs
  // (printed as a diagnostic). Without the budget (issue 10's 4,096-packet inbound queue, 16 MiB outbound with no write
  // deadline) the same client makes the node hold gigabytes.
  const RSS_BUDGET = 64 * 1024 * 1024;

  test('a client that sends max-size payloads as fast as it can and never reads is cut off, and the node\'s RSS stays within its budget', async (t) => {
    const srv = await startServer({ env: { MAX_PAYLOAD: '1000000', WRITE_TIMEOUT: '2s', RATE_LIMIT: '0' } });
    const pid = srv.proc.pid;
    let sampler;
    let attacker;
    try {
      const bystander = await connect(srv.url, { transports: ['websocket'], user: 'bystander' });
      await joinOk(bystander, 'calm-nonreader');
      attacker = await nonReader(srv.url, token('mallory'), 'nonreader');
      await sleep(300);
      const baseline = rssOf(pid);
      let peak = baseline;
      sampler = setInterval(() => {
        try { peak = Math.max(peak, rssOf(pid)); } catch { /* exited: the assertions below say so */ }
      }, 100);

      // The bystander asks presence every 100 ms; every ack must come within 2 s.
      const latencies = [];
      const failures = [];
      let stop = false;
      const bystanderLoop = (async () => {
        while (!stop) {
          const t0 = Date.now();
          try {
            const a = await bystander.timeout(2000).emitWithAck('presence', 'calm-nonreader');
            if (a?.ok === true) latencies.push(Date.now() - t0);
            else failures.push(JSON.stringify(a));
          } catch (e) {
            failures.push(e.message);
          }
          await sleep(100);
        }
      })();

      const body = Buffer.from(JSON.stringify(['message', { roomId: 'nonreader', text: 't'.repeat(4000), pad: 'p'.repeat(PACKET_BYTES - 4100) }]));
      const { socket } = attacker;
      const t0 = Date.now();
      let packets = 0;
      let bytes = 0;
      let drainedMs = 0; // when the socket last took everything written (after that the server stopped reading)
      while (attacker.closedAt() === null && packets < MAX_PACKETS && Date.now() - t0 < MAX_MS) {
        const prefix = Buffer.from(`42${packets + 1}`);
        const header = frameHeader(prefix.length + body.length);
        socket.cork();
        socket.write(header);
        socket.write(prefix);
        const more = socket.write(body);
        socket.uncork();
        packets++;
        bytes += header.length + prefix.length + body.length;
        if (!more) {
          await Promise.race([new Promise((r) => socket.once('drain', r)), attacker.closed, sleep(Math.max(0, MAX_MS - (Date.now() - t0)))]);
        }
        if (attacker.closedAt() === null && socket.writableLength === 0) drainedMs = Date.now() - t0;
      }
      // Out of packets before the cut: keep the connection written to (tiny WebSocket pings, never reading) so
      // that a close by the server is seen, until the time bound.
      while (attacker.closedAt() === null && Date.now() - t0 < MAX_MS) {
        socket.write(Buffer.from([0x89, 0x80, 0, 0, 0, 0]));
        await Promise.race([attacker.closed, sleep(100)]);
      }
      const cutMs = attacker.closedAt() === null ? null : attacker.closedAt() - t0;
      await sleep(500); // the bystander goes on a little after the cut
      stop = true;
      await bystanderLoop;
      clearInterval(sampler);
      sampler = null;
      peak = Math.max(peak, rssOf(pid));
      const growth = peak - baseline;
      const slow = await metricValue(srv, 'switchboard_slow_consumer_disconnects_total');
      const paused = await metricValue(srv, 'switchboard_inbound_paused_total');
      const mbs = (b) => (b / 1048576).toFixed(1);
      t.diagnostic(`attacker: ${packets} packets (${mbs(bytes)} MB) written, the last drained at ${drainedMs} ms, cut off after ${cutMs} ms (${attacker.error()?.code ?? 'close'}); `
        + `server RSS baseline ${mbs(baseline)} MB, peak ${mbs(peak)} MB, growth ${mbs(growth)} MB; `
        + `slow-consumer cuts ${slow}, inbound pauses ${paused}; bystander ${latencies.length} acks, max ${Math.max(0, ...latencies)} ms, ${failures.length} failures`);

      assert.notEqual(cutMs, null, `the non-reader was not cut off within ${MAX_MS} ms (${packets} packets, ${mbs(bytes)} MB written)`);
      assert.equal(slow, 1, 'the cut is counted as a slow consumer (MAX_BUFFERED_BYTES or WRITE_TIMEOUT), not something else');
      assert.ok(growth < RSS_BUDGET, `server RSS grew by ${mbs(growth)} MB (baseline ${mbs(baseline)}, peak ${mbs(peak)}), budget ${mbs(RSS_BUDGET)} MB`);
      assert.deepEqual(failures, [], 'every bystander presence is acknowledged within 2 s');
      assert.ok(latencies.length >= 5, `the bystander got only ${latencies.length} acks`);
      await assertAlive(srv);
      assert.equal(bystander.connected, true, 'the bystander stayed connected');
    } finally {
      if (sampler) clearInterval(sampler);
      attacker?.socket.destroy();
      await srv.stop();
    }
  });
});
