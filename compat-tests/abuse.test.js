// Bad input hurts only the offender: oversize payloads (both transports, chunked and sized polling bodies), malformed
// packets, unknown namespaces, reserved/unknown event names. After each, a bystander pair keeps chatting and the
// server process is alive.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, connectError, ack, once, waitFor, sleep, token, assertAlive, client } from './helpers/index.js';
import { joinOk, sendOk } from './helpers/room.js';
import { rawWs, rawPolling, httpRequest } from './helpers/raw.js';

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
