// Reconnection: after the server goes away (killed, restarted on the same port, or the network cut), the official
// client reconnects with exponential backoff; sessions lost with the process are not "recovered".
import assert from 'node:assert/strict';
import { describe, test, standardHooks, startServer, connect, ack, once, waitFor, sleep, startProxy, boardConnected } from './helpers/index.js';
import { joinOk, sendOk } from './helpers/room.js';

standardHooks();

/** Records the times of reconnect_attempt events; returns intervals between consecutive attempts. */
function attemptTimes(socket) {
  const times = [];
  let closedAt = null;
  socket.io.on('close', () => { if (closedAt === null) closedAt = Date.now(); });
  socket.io.on('reconnect_attempt', () => times.push(Date.now()));
  return {
    times,
    get firstDelay() { return times[0] - closedAt; },
    intervals: () => times.slice(1).map((t, i) => t - times[i]),
  };
}

describe('reconnection backoff', () => {
  test('server killed: reconnect_attempt intervals grow exponentially (factor 2, no jitter); reconnects after a restart on the same port', async () => {
    const srv = await startServer();
    try {
      const s = await connect(srv.url, { user: 'alice', transports: ['websocket'], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 2000, randomizationFactor: 0 });
      await joinOk(s, 'k');
      const at = attemptTimes(s);
      const gone = once(s, 'disconnect', 5000);
      await srv.kill('SIGKILL');
      assert.equal((await gone)[0], 'transport close');
      await waitFor(() => at.times.length >= 5, 15000, { message: () => `only ${at.times.length} attempts` });
      const iv = at.intervals();
      // expected delays between attempts: 200, 400, 800, 1600 (100 * 2^n); the first one came 100 ms after the close
      const expected = [200, 400, 800, 1600];
      assert.ok(at.firstDelay >= 80 && at.firstDelay < 1100, `first attempt after ${at.firstDelay} ms, expected ~100`);
      for (let i = 0; i < 4; i++) {
        assert.ok(iv[i] >= expected[i] * 0.8 && iv[i] <= expected[i] + 1000, `interval ${i}: ${iv[i]} ms, expected ~${expected[i]} (all: ${iv})`);
      }
      for (let i = 1; i < 4; i++) assert.ok(iv[i] > iv[i - 1] * 1.4, `intervals must grow: ${iv}`);

      const reconnected = once(s.io, 'reconnect', 10000);
      const back = once(s, 'connect', 10000);
      await srv.restart();
      await reconnected;
      await back;
      assert.equal(s.connected, true);
      assert.equal(s.recovered, false, 'a new process cannot recover the old session');
      // the old rooms are gone; joining again works
      assert.equal((await ack(s, 'message', { roomId: 'k', text: 'x' })).error?.code, 'not_in_room');
      await joinOk(s, 'k');
      await sendOk(s, 'k', 'back');
    } finally {
      await srv.stop();
    }
  });

  test('jitter: randomizationFactor 0.5 keeps each delay within ±50 % of the exponential value, capped by reconnectionDelayMax', async () => {
    const srv = await startServer();
    try {
      const s = await connect(srv.url, { user: 'alice', transports: ['websocket'], reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 800, randomizationFactor: 0.5 });
      const at = attemptTimes(s);
      await srv.kill('SIGKILL');
      await waitFor(() => at.times.length >= 6, 15000, { message: () => `only ${at.times.length} attempts` });
      const iv = at.intervals();
      // nominal delays 400, 800, 800 (cap), 800, 800 ; with jitter in [0.5x, 1.5x] — capped at 800 after jitter
      const nominal = [400, 800, 800, 800, 800];
      for (let i = 0; i < 5; i++) {
        assert.ok(iv[i] >= nominal[i] * 0.5 * 0.8 && iv[i] <= Math.min(nominal[i] * 1.5, 800) + 1000, `interval ${i}: ${iv[i]} (all: ${iv})`);
      }
      assert.ok(iv.slice(2).every((x) => x < 1800), `delays must be capped near reconnectionDelayMax: ${iv}`);
    } finally {
      await srv.stop();
    }
  });
});

describe('server restarts', () => {
  test('SIGTERM (graceful) then restart: clients reconnect by themselves and the client module re-joins its rooms', async () => {
    const srv = await startServer({ env: { DRAIN_TIMEOUT: '1s' } });
    try {
      const opts = { transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 500 };
      const a = await boardConnected(srv.url, { user: 'alice', ...opts });
      const b = await boardConnected(srv.url, { user: 'bob', ...opts });
      await a.join('graceful');
      await b.join('graceful');
      const reasons = [];
      a.on('disconnect', (r) => reasons.push(r));
      await srv.stop(8000);
      await waitFor(() => !a.socket.connected, 5000);
      await srv.restart();
      await waitFor(() => a.socket.connected && b.socket.connected && a.pending === 0 && b.pending === 0, 10000, {
        message: () => `clients did not come back by themselves (alice disconnect reasons: ${reasons})`,
      });
      assert.notEqual(reasons[0], 'io client disconnect');
      const got = once(b.socket, 'message', 5000);
      const sent = await a.send('graceful', 'after restart');
      assert.equal(sent.ok, true);
      assert.equal((await got)[0].text, 'after restart');
    } finally {
      await srv.stop();
    }
  });

  test('network cut (proxy) while the server stays up: reconnects and recovers', async () => {
    const srv = await startServer();
    try {
      const proxy = await startProxy(srv.port);
      const s = await connect(proxy.url, { user: 'alice', transports: ['websocket'], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 400, randomizationFactor: 0 });
      await joinOk(s, 'cut');
      const got = once(s, 'message', 5000);
      await sendOk(s, 'cut', 'before the cut'); // the client now holds a recovery offset
      await got;
      const at = attemptTimes(s);
      const gone = once(s, 'disconnect', 5000);
      proxy.cut();
      assert.match((await gone)[0], /transport (close|error)/);
      await once(s, 'connect', 5000);
      assert.equal(s.recovered, true);
      assert.ok(at.times.length >= 1);
      await sendOk(s, 'cut', 'after cut');
      assert.equal(srv.alive, true);
    } finally {
      await srv.stop();
    }
  });
});
