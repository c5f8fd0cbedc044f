// Room helpers shared by the test files.
import assert from 'node:assert/strict';
import { ack } from './clients.js';
import { once, sleep } from './wait.js';

/** Records every server→client event of a socket as [event, firstArg]. */
export function record(socket) {
  const log = [];
  socket.onAny((event, ...args) => log.push([event, args[0]]));
  log.of = (event) => log.filter(([e]) => e === event).map(([, a]) => a);
  return log;
}

export async function joinOk(socket, roomId) {
  const a = await ack(socket, 'join-room', roomId);
  assert.equal(a.ok, true, `join-room ${roomId}: ${JSON.stringify(a)}`);
  return a;
}

export async function sendOk(socket, roomId, text, clientId) {
  const payload = clientId === undefined ? { roomId, text } : { roomId, text, clientId };
  const a = await ack(socket, 'message', payload);
  assert.equal(a.ok, true, `message to ${roomId}: ${JSON.stringify(a)}`);
  return a;
}

/** Asserts an ack is {ok:false, error:{code, message}} with the given code (message: a non-empty string). */
export function assertRefused(a, code, what = '') {
  assert.equal(typeof a, 'object', `${what}: ack is not an object: ${JSON.stringify(a)}`);
  assert.equal(a.ok, false, `${what}: expected ok:false/${code}, got ${JSON.stringify(a)}`);
  assert.equal(a.error?.code, code, `${what}: expected ${code}, got ${JSON.stringify(a)}`);
  assert.equal(typeof a.error.message, 'string', `${what}: error.message must be a string: ${JSON.stringify(a)}`);
  assert.deepEqual(Object.keys(a).sort(), ['error', 'ok'], `${what}: refusal has extra keys: ${JSON.stringify(a)}`);
  assert.deepEqual(Object.keys(a.error).sort(), ['code', 'message'], `${what}: error has extra keys: ${JSON.stringify(a)}`);
}

/**
 * Barrier: `sender` (a room member) sends a message to the room and every socket in `observers` waits for it.
 * Since a room's events reach each member in order, anything emitted to the room before it has arrived after this.
 */
export async function settle(sender, roomId, observers, settleMs = 100) {
  const text = `__barrier_${Math.random().toString(36).slice(2)}`;
  const waits = observers.map((s) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('barrier message not received')), 5000);
    const fn = (m) => {
      if (m && m.text === text) {
        clearTimeout(timer);
        s.off('message', fn);
        resolve();
      }
    };
    s.on('message', fn);
  }));
  await sendOk(sender, roomId, text);
  await Promise.all(waits);
  await sleep(settleMs);
}

/** Asserts a message event has exactly the contract keys and the given values. */
export function assertMessageEvent(ev, expected) {
  const keys = ['id', 'roomId', 'userId', 'name', 'text', 'ts'];
  if (expected.clientId !== undefined) keys.push('clientId');
  assert.deepEqual(Object.keys(ev).sort(), keys.sort(), `message event keys: ${JSON.stringify(ev)}`);
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(ev[k], v, `message.${k}`);
  assert.ok(typeof ev.id === 'string' ? ev.id.length > 0 : Number.isFinite(ev.id), `message.id: ${JSON.stringify(ev.id)}`);
  assert.ok(Number.isInteger(ev.ts), `message.ts must be integer Unix ms: ${ev.ts}`);
}

export { once };
