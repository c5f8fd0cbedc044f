/**
 * switchboard-client.js — a small ES module over the official socket.io-client for Switchboard
 * (see the client contract: rooms, messages, presence on namespace "/").
 *
 * Works in Node (resolves `socket.io-client` from node_modules) and in the browser (map the bare
 * specifier with an import map, e.g.
 *   <script type="importmap">{"imports":{"socket.io-client":"/socket.io/socket.io.esm.min.js"}}</script>).
 *
 * Usage:
 *   import { Switchboard } from './switchboard-client.js';
 *   const sb = new Switchboard('http://localhost:3000', {
 *     token,                       // string, or a function returning a string (or a Promise of one), called on
 *                                  // every (re)connection so a refreshed token is used; sent as auth: { token }
 *     transports,                  // optional, e.g. ['websocket'] (default: polling then upgrade to websocket)
 *     path,                        // optional, default '/socket.io/'
 *     ackTimeout: 5000,            // ms to wait for each acknowledgement before retrying
 *     retries: 5,                  // retries after an ack timeout or an 'unavailable' refusal (so up to
 *                                  //   1 + retries attempts per operation)
 *     reconnectionDelay: 1000,     // socket.io-client reconnection backoff (also the wait before retrying an
 *                                  //   'unavailable' refusal): exponential, starting here,
 *     reconnectionDelayMax: 30000, //   capped here,
 *     randomizationFactor: 0.5,    //   with this much jitter
 *     maxInFlight: 16,             // operations emitted but not yet acknowledged (emitted in queue order)
 *     io: { ... },                 // extra socket.io-client options (merged last; can override anything above)
 *   });
 *
 *   sb.socket                // the underlying socket.io-client Socket (sb.socket.io is its Manager)
 *   await sb.join(roomId)    // → { ok: true, room, members: [{ userId, name }] }
 *   await sb.leave(roomId)   // → { ok: true, room }
 *   await sb.presence(roomId)// → { ok: true, room, members: [{ userId, name, connections }] }
 *   await sb.send(roomId, text[, clientId]) // → { ok: true, id, ts, duplicate? } ; a clientId (crypto.randomUUID) is
 *                                //   generated per message (unless given) and reused on every retry, so the server
 *                                //   broadcasts it once
 *   sb.on(event, fn) / sb.off(event, fn)
 *       socket events: 'message', 'user-joined', 'user-left', 'connect', 'disconnect', 'connect_error'
 *       manager events: 'reconnect', 'reconnect_attempt', 'reconnect_error', 'reconnect_failed'
 *       module events: 'rejoin_error' (err, roomId) when a room could not be re-joined after a reconnect
 *   sb.rooms                 // Set of room ids this client has joined (and will re-join after a lost session)
 *   sb.pending               // number of operations not acknowledged yet
 *   sb.connect()             // reconnects by hand after a server-side disconnect (see below)
 *   sb.close()               // disconnects for good; pending operations reject with code 'closed'
 *
 * Semantics:
 *   - Every operation (join/leave/presence/send) goes through one ordered queue kept by this module (not
 *     socket.io-client's offline buffer). While disconnected, operations wait; on (re)connect they are emitted in
 *     order. An operation leaves the queue only when it is acknowledged (or fails for good).
 *   - Each emission uses socket.timeout(ackTimeout).emitWithAck. An ack timeout is retried up to `retries` times
 *     (then the call rejects with code 'timeout'). An attempt interrupted by a disconnect is re-sent after the
 *     reconnect and does not count against `retries`. Messages keep their clientId across retries.
 *   - A server refusal `{ ok: false, error: { code, message } }` rejects with an Error whose `.code` is the code
 *     (and `.ack` the whole reply); refusals are never retried — including `rate_limited`: the server allows
 *     RATE_LIMIT events/s with a burst of RATE_BURST per socket, so do not queue more than that while offline.
 *   - Except `unavailable`: the server could not deliver the message now (its cluster's Redis is unreachable) and
 *     delivered it to nobody. It is retried like an ack timeout (same clientId, counted against `retries`; then the
 *     call rejects with code 'unavailable'), after a backoff: reconnectionDelay doubling with each refusal in a row
 *     up to reconnectionDelayMax, with randomizationFactor jitter. Nothing else is emitted during the backoff, so
 *     queued operations keep their order; the first acknowledgement that is not 'unavailable' resets it.
 *   - socket.io-client does not reconnect by itself after a server-side disconnect ('io server disconnect', e.g. a
 *     flooding socket) nor after an authentication refusal (connect_error with err.data.code); queued operations
 *     then wait until sb.connect() (the token function is called again) or sb.close().
 *   - After a reconnect where the server lost the session (socket.recovered === false) the module re-joins the rooms
 *     it had joined before emitting anything else from the queue. When the session was recovered the server kept the
 *     rooms, so nothing is re-joined.
 */
import { io } from 'socket.io-client';

const MANAGER_EVENTS = new Set(['reconnect', 'reconnect_attempt', 'reconnect_error', 'reconnect_failed', 'open', 'close', 'ping']);

function uuid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  // Fallback for non-secure browser contexts: RFC 4122 v4 from getRandomValues (or Math.random as last resort).
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function codedError(code, message, ack) {
  const err = new Error(message || code);
  err.code = code;
  if (ack !== undefined) err.ack = ack;
  return err;
}

export class Switchboard {
  constructor(url, options = {}) {
    const {
      token,
      transports,
      path,
      ackTimeout = 5000,
      retries = 5,
      reconnectionDelay = 1000,
      reconnectionDelayMax = 30000,
      randomizationFactor = 0.5,
      maxInFlight = 16,
      io: extra = {},
    } = options;
    this.ackTimeout = ackTimeout;
    this.retries = retries;
    this.maxInFlight = Math.max(1, maxInFlight);
    this.rooms = new Set();
    this._queue = [];
    this._closed = false;
    this._holdTimer = null; // backoff after an 'unavailable' refusal: nothing is emitted until it fires
    this._unavailableInARow = 0;

    const auth = (cb) => {
      let t;
      try {
        t = typeof token === 'function' ? token() : token;
      } catch {
        t = undefined;
      }
      Promise.resolve(t).then(
        (v) => cb(v == null ? {} : { token: String(v) }),
        () => cb({}),
      );
    };

    const opts = {
      forceNew: true,
      reconnection: true,
      reconnectionDelay,
      reconnectionDelayMax,
      randomizationFactor,
      auth,
      ...(transports ? { transports } : {}),
      ...(path ? { path } : {}),
      ...extra,
    };
    this.socket = io(url, opts);
    this.socket.on('connect', () => this._onConnect());
    this.socket.on('disconnect', () => this._onDisconnect());
  }

  /** Number of operations not acknowledged yet. */
  get pending() {
    return this._queue.length;
  }

  get connected() {
    return this.socket.connected;
  }

  join(roomId) {
    return this._enqueue({ event: 'join-room', args: [roomId], kind: 'join', roomId });
  }

  leave(roomId) {
    return this._enqueue({ event: 'leave-room', args: [roomId], kind: 'leave', roomId });
  }

  presence(roomId) {
    return this._enqueue({ event: 'presence', args: [roomId], kind: 'presence', roomId });
  }

  send(roomId, text, clientId = uuid()) {
    return this._enqueue({ event: 'message', args: [{ roomId, text, clientId }], kind: 'send', roomId, clientId });
  }

  on(event, fn) {
    if (event === 'rejoin_error') this._rejoinListeners().add(fn);
    else (MANAGER_EVENTS.has(event) ? this.socket.io : this.socket).on(event, fn);
    return this;
  }

  off(event, fn) {
    if (event === 'rejoin_error') this._rejoinListeners().delete(fn);
    else (MANAGER_EVENTS.has(event) ? this.socket.io : this.socket).off(event, fn);
    return this;
  }

  connect() {
    if (!this._closed && !this.socket.connected) this.socket.connect();
    return this;
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._holdTimer) clearTimeout(this._holdTimer);
    this._holdTimer = null;
    const q = this._queue;
    this._queue = [];
    for (const op of q) if (op.reject) op.reject(codedError('closed', 'client closed'));
    this.socket.disconnect();
  }

  // ---------------------------------------------------------------------------------------------------------------

  _rejoinListeners() {
    if (!this._rejoin) this._rejoin = new Set();
    return this._rejoin;
  }

  _enqueue(spec) {
    if (this._closed) return Promise.reject(codedError('closed', 'client closed'));
    return new Promise((resolve, reject) => {
      this._queue.push({ ...spec, resolve, reject, attempts: 0, inFlight: false, seq: 0 });
      this._pump();
    });
  }

  _onConnect() {
    if (this._closed) return;
    // Attempts interrupted by the disconnect are already back to "waiting" (see _onDisconnect / _emit).
    for (const op of this._queue) op.inFlight = false;
    if (!this.socket.recovered && this.rooms.size > 0) {
      // The server lost our session: re-join before anything else is emitted. Drop stale re-join ops first.
      this._queue = this._queue.filter((op) => !op.internal);
      const rejoins = [...this.rooms].map((roomId) => ({
        event: 'join-room',
        args: [roomId],
        kind: 'rejoin',
        roomId,
        internal: true,
        barrier: true,
        attempts: 0,
        inFlight: false,
        seq: 0,
        resolve: () => {},
        reject: (err) => {
          this.rooms.delete(roomId);
          for (const fn of this._rejoin || []) {
            try { fn(err, roomId); } catch { /* listener errors are not ours */ }
          }
        },
      }));
      this._queue.unshift(...rejoins);
    }
    this._pump();
  }

  _onDisconnect() {
    // socket.io-client rejects in-flight emitWithAck calls with "socket has been disconnected"; mark them waiting
    // so they are re-sent in order after the reconnect.
    for (const op of this._queue) op.inFlight = false;
  }

  _pump() {
    if (this._closed || !this.socket.connected || this._holdTimer) return;
    let inFlight = 0;
    for (const op of this._queue) {
      if (op.inFlight) {
        if (op.barrier) return; // wait for the re-join before emitting what follows
        inFlight++;
      }
    }
    for (const op of this._queue) {
      if (inFlight >= this.maxInFlight) return;
      if (!this.socket.connected) return;
      if (op.inFlight) continue;
      this._emit(op);
      inFlight++;
      if (op.barrier) return;
    }
  }

  _emit(op) {
    op.inFlight = true;
    op.attempts++;
    const seq = ++op.seq;
    this.socket
      .timeout(this.ackTimeout)
      .emitWithAck(op.event, ...op.args)
      .then(
        (ack) => this._settle(op, seq, ack),
        (err) => this._failAttempt(op, seq, err),
      );
  }

  _remove(op) {
    const i = this._queue.indexOf(op);
    if (i >= 0) this._queue.splice(i, 1);
    return i >= 0;
  }

  _settle(op, seq, ack) {
    if (!this._queue.includes(op)) return; // already settled by an earlier attempt (or closed)
    const refused = !(ack && typeof ack === 'object' && ack.ok === true);
    const code = refused && ack && typeof ack === 'object' && ack.error && typeof ack.error === 'object' ? ack.error.code : undefined;
    if (code === 'unavailable' && op.attempts <= this.retries) {
      // Delivered to nobody: send it again (same clientId) after the backoff.
      if (seq !== op.seq) return; // a stale attempt; the current one answers for itself
      op.inFlight = false;
      this._backOff();
      return;
    }
    this._remove(op);
    if (code !== 'unavailable') this._unavailableInARow = 0;
    if (!refused) {
      if (op.kind === 'join' || op.kind === 'rejoin') this.rooms.add(op.roomId);
      if (op.kind === 'leave') this.rooms.delete(op.roomId);
      op.resolve(ack);
    } else {
      const e = ack && typeof ack === 'object' && ack.error && typeof ack.error === 'object' ? ack.error : {};
      op.reject(codedError(e.code || 'bad_response', e.message || 'request refused', ack));
    }
    this._pump();
  }

  /** Holds every emission for the module's backoff (see 'unavailable' above); a hold already running stands. */
  _backOff() {
    if (this._holdTimer) return;
    const m = this.socket.io;
    const n = Math.min(this._unavailableInARow++, 30);
    let ms = Math.min(m.reconnectionDelay() * 2 ** n, m.reconnectionDelayMax());
    const jitter = m.randomizationFactor();
    if (jitter > 0) {
      const dev = Math.random() * jitter * ms;
      ms = Math.random() < 0.5 ? ms - dev : ms + dev;
    }
    this._holdTimer = setTimeout(() => {
      this._holdTimer = null;
      this._pump();
    }, Math.max(0, Math.round(ms)));
  }

  _failAttempt(op, seq, err) {
    if (!this._queue.includes(op) || seq !== op.seq) return; // stale attempt
    op.inFlight = false;
    const disconnected = err && /disconnected/.test(err.message);
    if (disconnected) {
      op.attempts--; // the network went away: this attempt does not count
      this._pump();
      return;
    }
    if (op.attempts > this.retries) {
      this._remove(op);
      op.reject(codedError('timeout', `no acknowledgement for ${op.event} after ${op.attempts} attempts`));
    }
    this._pump();
  }
}

export default Switchboard;
