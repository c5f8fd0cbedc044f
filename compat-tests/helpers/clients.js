// socket.io-client helpers. Every socket made here is tracked and closed by closeClients() (call it in afterEach).
import { io } from 'socket.io-client';
import msgpackParser from 'socket.io-msgpack-parser';
import { Switchboard } from '../../web/switchboard-client.js';
import { token as makeToken } from './tokens.js';
import { once, withTimeout } from './wait.js';

// SB_PARSER=msgpack runs a suite with socket.io-msgpack-parser on every client (and PARSER=msgpack on every server,
// see server.js): compat-tests/msgpack.test.js runs the core suite that way.
export const PARSER = process.env.SB_PARSER === 'msgpack' ? msgpackParser : undefined;

const sockets = new Set();
const boards = new Set();

/**
 * Creates a socket.io-client socket (not awaited). opts:
 *   user: sub for a test-secret HS256 token (ignored if `token` or `auth` is given); name defaults to Sub
 *   token: explicit token; auth: explicit auth object; nsp: namespace (default '/')
 *   everything else goes to io() (forceNew: true, reconnection: false unless given).
 */
export function client(url, { user, token, nsp = '/', ...opts } = {}) {
  const o = { forceNew: true, reconnection: false, timeout: 5000, ...(PARSER ? { parser: PARSER } : {}), ...opts };
  if (!('auth' in o)) {
    const t = token ?? (user ? makeToken(user) : undefined);
    if (t !== undefined) o.auth = { token: t };
  }
  const socket = io(url + (nsp === '/' ? '' : nsp), o);
  sockets.add(socket);
  return socket;
}

/** Creates a socket and waits for `connect` (rejects on connect_error). */
export async function connect(url, opts = {}, timeoutMs = 8000) {
  const socket = client(url, opts);
  await once(socket, 'connect', timeoutMs, { rejectOn: ['connect_error'] });
  return socket;
}

/** Creates a socket and waits for `connect_error`; returns the error (fails if the socket connects). */
export async function connectError(url, opts = {}, timeoutMs = 8000) {
  const socket = client(url, opts);
  const [err] = await once(socket, 'connect_error', timeoutMs, { rejectOn: ['connect'] }).catch((e) => {
    throw new Error(`expected connect_error, got: ${e.message}`);
  });
  socket.disconnect();
  return err;
}

/** emitWithAck bounded by timeoutMs. */
export function ack(socket, event, ...args) {
  return socket.timeout(5000).emitWithAck(event, ...args);
}

/** A Switchboard (web/switchboard-client.js) instance, tracked for cleanup. */
export function board(url, opts = {}) {
  const { user, ...rest } = opts;
  const io = PARSER ? { parser: PARSER, ...rest.io } : rest.io;
  const sb = new Switchboard(url, { token: rest.token ?? (user ? makeToken(user) : undefined), ...rest, io });
  boards.add(sb);
  return sb;
}

export async function boardConnected(url, opts = {}, timeoutMs = 8000) {
  const sb = board(url, opts);
  if (!sb.socket.connected) await once(sb.socket, 'connect', timeoutMs, { rejectOn: ['connect_error'] });
  return sb;
}

/** Closes every socket/Switchboard created through these helpers. */
export function closeClients() {
  for (const sb of boards) {
    try { sb.close(); } catch { /* ignore */ }
  }
  boards.clear();
  for (const s of sockets) {
    try {
      s.io.opts.reconnection = false;
      s.io.reconnection(false);
      s.disconnect();
      s.io.engine?.close();
    } catch { /* ignore */ }
  }
  sockets.clear();
}

/** Waits until `socket` is disconnected; returns the reason. */
export async function disconnected(socket, timeoutMs = 5000) {
  if (!socket.connected) throw new Error('socket is not connected');
  const [reason] = await once(socket, 'disconnect', timeoutMs);
  return reason;
}

export { withTimeout };
