// Delivery: bursts arrive complete and in order; clientId de-duplication (exactly once) within DEDUPE_WINDOW.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, ack, once, waitFor, sleep, startProxy } from './helpers/index.js';
import { joinOk, sendOk, record, settle, assertMessageEvent } from './helpers/room.js';

standardHooks();

describe('bursts (RATE_LIMIT raised)', () => {
  const ref = serverFor({ env: { RATE_LIMIT: '100000', RATE_BURST: '100000' } });

  for (const [label, senderT, receiverT] of [
    ['websocket → websocket', ['websocket'], ['websocket']],
    ['polling → polling', ['polling'], ['polling']],
    ['default (upgrade during the burst) → websocket', undefined, ['websocket']],
  ]) {
    test(`500 messages from one client reach another member complete and in order (${label})`, async () => {
      const N = 500;
      const room = `burst-${label.replace(/\W+/g, '-')}`;
      const receiver = await connect(ref.srv.url, { user: 'receiver', ...(receiverT ? { transports: receiverT } : {}) });
      await joinOk(receiver, room);
      const sender = await connect(ref.srv.url, { user: 'sender', ...(senderT ? { transports: senderT } : {}) });
      await joinOk(sender, room);
      const got = [];
      receiver.on('message', (m) => got.push(m));
      const echoes = [];
      sender.on('message', (m) => echoes.push(m));
      const acks = await Promise.all(
        Array.from({ length: N }, (_, i) => sender.timeout(30000).emitWithAck('message', { roomId: room, text: `#${i}`, clientId: `${room}-${i}` })),
      );
      const bad = acks.filter((a) => a.ok !== true || a.duplicate);
      assert.deepEqual(bad, [], 'every message must be accepted');
      await waitFor(() => got.length >= N && echoes.length >= N, 30000, { message: () => `receiver got ${got.length}/${N}, sender echo ${echoes.length}/${N}` });
      await sleep(200);
      assert.equal(got.length, N, 'no duplicates');
      assert.deepEqual(got.map((m) => m.text), Array.from({ length: N }, (_, i) => `#${i}`));
      assert.deepEqual(echoes.map((m) => m.text), Array.from({ length: N }, (_, i) => `#${i}`));
      assert.deepEqual(got.map((m) => m.id), acks.map((a) => a.id));
      assert.equal(new Set(acks.map((a) => String(a.id))).size, N);
    });
  }
});

describe('de-duplication by clientId', () => {
  const ref = serverFor();

  test('the same clientId twice: second ack has duplicate:true and the first id/ts; the room sees one message', async () => {
    const alice = await connect(ref.srv.url, { transports: ['websocket'], user: 'alice' });
    const bob = await connect(ref.srv.url, { transports: ['websocket'], user: 'bob' });
    await joinOk(alice, 'dd');
    await joinOk(bob, 'dd');
    const lb = record(bob);
    const first = await ack(alice, 'message', { roomId: 'dd', text: 'once', clientId: 'dup-1' });
    assert.equal(first.ok, true);
    assert.ok(!first.duplicate);
    const second = await ack(alice, 'message', { roomId: 'dd', text: 'once', clientId: 'dup-1' });
    assert.deepEqual(second, { ok: true, id: first.id, ts: first.ts, duplicate: true });
    // a repeat with different text is still the same message (clientId identifies it)
    const third = await ack(alice, 'message', { roomId: 'dd', text: 'changed', clientId: 'dup-1' });
    assert.deepEqual(third, { ok: true, id: first.id, ts: first.ts, duplicate: true });
    await settle(alice, 'dd', [bob]);
    const msgs = lb.of('message').filter((m) => !m.text.startsWith('__barrier'));
    assert.equal(msgs.length, 1);
    assertMessageEvent(msgs[0], { id: first.id, ts: first.ts, roomId: 'dd', userId: 'alice', name: 'Alice', text: 'once', clientId: 'dup-1' });
  });

  test('concurrent repeats of one clientId are broadcast once', async () => {
    const alice = await connect(ref.srv.url, { transports: ['websocket'], user: 'alice' });
    const bob = await connect(ref.srv.url, { transports: ['websocket'], user: 'bob' });
    await joinOk(alice, 'dd-c');
    await joinOk(bob, 'dd-c');
    const lb = record(bob);
    const acks = await Promise.all(Array.from({ length: 5 }, () => ack(alice, 'message', { roomId: 'dd-c', text: 'race', clientId: 'dup-race' })));
    assert.ok(acks.every((a) => a.ok === true));
    assert.equal(acks.filter((a) => !a.duplicate).length, 1, JSON.stringify(acks));
    assert.equal(new Set(acks.map((a) => `${a.id}/${a.ts}`)).size, 1, JSON.stringify(acks));
    await settle(alice, 'dd-c', [bob]);
    assert.equal(lb.of('message').filter((m) => m.text === 'race').length, 1);
  });

  test('the same clientId from another tab of the same user is a duplicate; from another user it is not', async () => {
    const alice1 = await connect(ref.srv.url, { transports: ['websocket'], user: 'alice' });
    const alice2 = await connect(ref.srv.url, { transports: ['polling'], user: 'alice' });
    const bob = await connect(ref.srv.url, { transports: ['websocket'], user: 'bob' });
    for (const s of [alice1, alice2, bob]) await joinOk(s, 'dd2');
    const lb = record(bob);
    const a1 = await sendOk(alice1, 'dd2', 'tab one', 'shared-id');
    const a2 = await ack(alice2, 'message', { roomId: 'dd2', text: 'tab two', clientId: 'shared-id' });
    assert.deepEqual(a2, { ok: true, id: a1.id, ts: a1.ts, duplicate: true });
    const b = await sendOk(bob, 'dd2', 'bob same id', 'shared-id');
    assert.ok(!b.duplicate);
    assert.notEqual(b.id, a1.id);
    await settle(bob, 'dd2', [bob]);
    assert.deepEqual(lb.of('message').map((m) => m.text).filter((t) => !t.startsWith('__')), ['tab one', 'bob same id']);
  });

  test('a refused message does not consume its clientId', async () => {
    const alice = await connect(ref.srv.url, { transports: ['websocket'], user: 'alice' });
    const refused = await ack(alice, 'message', { roomId: 'dd3', text: 'early', clientId: 'early-1' });
    assert.equal(refused.error?.code, 'not_in_room');
    await joinOk(alice, 'dd3');
    const got = once(alice, 'message');
    const a = await sendOk(alice, 'dd3', 'early', 'early-1');
    assert.ok(!a.duplicate, 'the refused attempt must not count as the first delivery');
    assert.equal((await got)[0].id, a.id);
  });
});

describe('DEDUPE_WINDOW=1s', () => {
  const ref = serverFor({ env: { DEDUPE_WINDOW: '1s' } });

  test('after the window, the same clientId is a new message', async () => {
    const alice = await connect(ref.srv.url, { transports: ['websocket'], user: 'alice' });
    await joinOk(alice, 'dw');
    const lb = record(alice);
    const a1 = await sendOk(alice, 'dw', 'first', 'window-1');
    const a2 = await ack(alice, 'message', { roomId: 'dw', text: 'first', clientId: 'window-1' });
    assert.equal(a2.duplicate, true);
    await sleep(2500);
    const a3 = await sendOk(alice, 'dw', 'again', 'window-1');
    assert.ok(!a3.duplicate, `after DEDUPE_WINDOW the clientId must be forgotten: ${JSON.stringify(a3)}`);
    assert.notEqual(a3.id, a1.id);
    await settle(alice, 'dw', [alice]);
    assert.deepEqual(lb.of('message').map((m) => m.text).filter((t) => !t.startsWith('__')), ['first', 'again']);
  });
});

describe('the official client alone (no client module)', () => {
  const ref = serverFor();

  test('emits buffered while disconnected are sent on reconnect, in order', async () => {
    const proxy = await startProxy(ref.srv.port);
    const alice = await connect(proxy.url, { user: 'alice', transports: ['websocket'], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300 });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(alice, 'buf');
    await joinOk(bob, 'buf');
    const primed = once(alice, 'message', 5000);
    await sendOk(bob, 'buf', 'prime'); // alice now holds a recovery offset
    await primed;
    const got = [];
    bob.on('message', (m) => got.push(m.text));
    const gone = once(alice, 'disconnect', 5000);
    await proxy.pause();
    await gone;
    const acks = [];
    for (let i = 0; i < 5; i++) alice.emit('message', { roomId: 'buf', text: `buffered ${i}`, clientId: `buf-${i}` }, (a) => acks.push(a));
    await sleep(300);
    assert.deepEqual(got, []);
    await proxy.resume();
    await waitFor(() => acks.length === 5 && got.length >= 5, 8000, { message: () => `acks ${acks.length}, delivered ${got.length}` });
    await sleep(100);
    assert.deepEqual(got, Array.from({ length: 5 }, (_, i) => `buffered ${i}`));
    assert.ok(acks.every((a) => a.ok === true), JSON.stringify(acks));
  });

  test('retries + ackTimeout + clientId: an ack lost on the way back still means exactly one delivery', async () => {
    const proxy = await startProxy(ref.srv.port);
    const alice = await connect(proxy.url, { user: 'alice', transports: ['websocket'], retries: 5, ackTimeout: 300 });
    const bob = await connect(ref.srv.url, { user: 'bob', transports: ['websocket'] });
    await joinOk(alice, 'official');
    await joinOk(bob, 'official');
    const lb = record(bob);
    const sent = [];
    alice.onAnyOutgoing((ev, p) => ev === 'message' && sent.push(p.clientId));
    proxy.dropDownstream(true);
    const result = new Promise((resolve) => alice.emit('message', { roomId: 'official', text: 'once only', clientId: 'official-1' }, (err, a) => resolve([err, a])));
    const [m] = await once(bob, 'message', 5000);
    await waitFor(() => sent.length >= 2, 5000, { message: 'socket.io-client did not retry' });
    proxy.dropDownstream(false);
    const [err, a] = await result;
    assert.equal(err, null);
    assert.deepEqual(a, { ok: true, id: m.id, ts: m.ts, duplicate: true });
    assert.ok(sent.every((c) => c === 'official-1'));
    await settle(bob, 'official', [bob]);
    assert.equal(lb.of('message').filter((x) => x.text === 'once only').length, 1);
  });
});
