// A non-JavaScript client: Debian's python3-socketio (sync socketio.Client, with python3-requests for polling and
// python3-websocket for WebSocket) under /usr/bin/python3, run as a child process (compat-tests/python/client.py),
// against the real binary over long-polling only, WebSocket only, and the default polling → WebSocket upgrade:
// auth, join-room, message with ack, the message broadcast to a socket.io-client in the room and a message from that
// client received, user-joined/user-left, and refused connections with the contract's connect_error.
// The script prints one JSON object per step; the assertions are on those lines, not only on its exit code.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, test, standardHooks, serverFor, connect, token, tamperSignature, afterEach } from './helpers/index.js';
import { joinOk, sendOk, assertMessageEvent } from './helpers/room.js';

standardHooks();

const PYTHON = '/usr/bin/python3'; // Debian's, where apt put python3-socketio (not a python3 earlier on PATH)
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'python', 'client.py');
const STEP_TIMEOUT = 15000; // one step of the script (each of its own waits is bounded at 10 s)
const RUN_DEADLINE = 60; // seconds: the script's watchdog ends it after this

let roomSeq = 0;
const room = (p = 'py') => `${p}-${++roomSeq}-${Math.random().toString(36).slice(2, 8)}`;
const sortMembers = (ms) => [...ms].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));

const children = new Set();
afterEach(() => {
  for (const c of children) c.kill();
  children.clear();
});

/**
 * Runs client.py with `args` (the token in SWITCHBOARD_TOKEN unless undefined). Returns
 *   step(name) → the next line of that step (rejects on an "error" line, on exit, or after STEP_TIMEOUT),
 *   exited() → {code, signal} (bounded), lines, stderr, kill().
 */
function python(args, tok) {
  const env = { ...process.env, PYTHONUNBUFFERED: '1' };
  delete env.SWITCHBOARD_TOKEN;
  if (tok !== undefined) env.SWITCHBOARD_TOKEN = tok;
  const proc = spawn(PYTHON, [SCRIPT, '--deadline', String(RUN_DEADLINE), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { proc, lines: [], stderr: '', exit: null, stdoutClosed: false, waiters: new Set(), next: 0 };
  children.add(p);
  p.kill = () => {
    if (p.exit === null) proc.kill('SIGKILL');
  };
  const wake = () => {
    for (const w of [...p.waiters]) w();
  };
  const rl = readline.createInterface({ input: proc.stdout });
  rl.on('line', (line) => {
    let obj;
    try {
      obj = JSON.parse(line);
    } catch {
      obj = { step: 'unparsable', line };
    }
    p.lines.push(obj);
    wake();
  });
  rl.once('close', () => {
    p.stdoutClosed = true;
    wake();
  });
  proc.stderr.on('data', (d) => {
    p.stderr = (p.stderr + d.toString()).slice(-20000);
  });
  const exitPromise = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      p.exit = { code, signal };
      resolve(p.exit);
      wake();
    });
    proc.once('error', (err) => {
      p.exit = { code: null, signal: null, error: err.message };
      p.stdoutClosed = true;
      resolve(p.exit);
      wake();
    });
  });
  p.context = () => `\nscript output so far:\n${p.lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${p.stderr.slice(-4000)}`;
  /** Resolves with the first line of step `name` after the last one returned; lines of other steps are skipped. */
  p.step = (name, timeoutMs = STEP_TIMEOUT) => new Promise((resolve, reject) => {
    let timer;
    const done = (err, v) => {
      clearTimeout(timer);
      p.waiters.delete(check);
      if (err) reject(err);
      else resolve(v);
    };
    function check() {
      for (let i = p.next; i < p.lines.length; i++) {
        const l = p.lines[i];
        if (l.step === name) {
          p.next = i + 1;
          return done(null, l);
        }
        if (l.step === 'error' || l.step === 'unparsable') {
          return done(new Error(`python client failed before "${name}": ${JSON.stringify(l)}${p.context()}`));
        }
      }
      // every line it printed has been read once its stdout is closed
      if (p.exit !== null && p.stdoutClosed) return done(new Error(`python client exited (${JSON.stringify(p.exit)}) before "${name}"${p.context()}`));
      return undefined;
    }
    timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for python step "${name}"${p.context()}`)), timeoutMs);
    p.waiters.add(check);
    check();
  });
  p.exited = async (timeoutMs = STEP_TIMEOUT) => {
    let timer;
    const r = await Promise.race([exitPromise, new Promise((res) => (timer = setTimeout(() => res(null), timeoutMs)))]);
    clearTimeout(timer);
    if (r === null) throw new Error(`python client did not exit within ${timeoutMs} ms${p.context()}`);
    return r;
  };
  return p;
}

/**
 * Waits for the next `event` on `socket` whose first argument satisfies `pred`. Started before the step that causes
 * it; a wait still pending when the test ends (it failed earlier) is cancelled in afterEach.
 */
const pendingWaits = new Set();
afterEach(() => {
  for (const cancel of pendingWaits) cancel();
  pendingWaits.clear();
});
function next(socket, event, pred, timeoutMs = STEP_TIMEOUT) {
  let cancel;
  const promise = new Promise((resolve, reject) => {
    const fn = (arg) => {
      if (!pred(arg)) return;
      cancel();
      resolve(arg);
    };
    const timer = setTimeout(() => {
      cancel();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}" on the Node client`));
    }, timeoutMs);
    cancel = () => {
      clearTimeout(timer);
      socket.off(event, fn);
      pendingWaits.delete(cancel);
    };
    pendingWaits.add(cancel);
    socket.on(event, fn);
  });
  promise.catch(() => {}); // awaited later; a failure before that must not be an unhandled rejection
  return promise;
}

/** Every event after the first argument: nothing, or the connection state recovery offset (a string), as from Node. */
function assertExtra(line, what) {
  const ok = line.extra.length === 0 || (line.extra.length === 1 && typeof line.extra[0] === 'string');
  assert.ok(ok, `${what}: arguments after the payload: ${JSON.stringify(line.extra)}`);
}

describe('python-socketio (Debian python3-socketio) client', () => {
  // python-socketio speaks the default (JSON) parser: the server and the Node client keep it even in a run with
  // SB_PARSER=msgpack (see helpers/clients.js)
  const ref = serverFor({ env: { PARSER: null } });
  const url = () => ref.srv.url;

  test('/usr/bin/python3 has socketio, engineio, websocket-client and requests (make deps-apt installs them)', async () => {
    assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing: Debian's python3 (make deps-apt)`);
    const py = python(['--url', url(), '--transport', 'polling', '--mode', 'versions']);
    const start = await py.step('start');
    for (const dist of ['python-socketio', 'python-engineio', 'websocket-client', 'requests']) {
      assert.equal(typeof start.versions[dist], 'string', `${dist} is not installed for ${PYTHON} (make deps-apt)${py.context()}`);
    }
    assert.match(start.versions['python-socketio'], /^5\./, 'python-socketio 5.x speaks Socket.IO v5 / Engine.IO v4');
    assert.deepEqual(await py.exited(), { code: 0, signal: null }, py.context());
  });

  for (const transport of ['polling', 'websocket', 'default']) {
    const label = transport === 'default' ? 'polling → websocket upgrade' : `${transport} only`;

    test(`${label}: auth, join-room, message with ack, broadcast both ways, user-joined/user-left`, async () => {
      const r = room();
      const pyUser = `py-${transport}`;
      const pyName = `Python ${transport}`;
      const text = `hello from python over ${transport} ✓`;
      // the Node client in the room, on the same transport as the Python one
      const bob = await connect(url(), { user: 'bob', parser: undefined, transports: transport === 'default' ? ['polling', 'websocket'] : [transport] });
      await joinOk(bob, r);
      const bobJoined = next(bob, 'user-joined', (e) => e?.userId === pyUser);
      const bobGotPy = next(bob, 'message', (e) => e?.userId === pyUser);
      const bobLeft = next(bob, 'user-left', (e) => e?.userId === pyUser, STEP_TIMEOUT * 4);

      const py = python(['--url', url(), '--transport', transport, '--room', r, '--text', text], token(pyUser, { name: pyName }));
      const c = await py.step('connect');
      assert.equal(typeof c.sid, 'string', `namespace sid: ${JSON.stringify(c)}`);
      assert.ok(c.sid.length > 0);
      if (transport !== 'default') assert.equal(c.transport, transport, 'the transport the python client is on');

      const s = await py.step('session');
      assert.deepEqual(s.data, { userId: pyUser, name: pyName }, 'session event: the identity of the token');
      assertExtra(s, 'session');

      const j = await py.step('join');
      assert.deepEqual(Object.keys(j.ack).sort(), ['members', 'ok', 'room'], JSON.stringify(j.ack));
      assert.equal(j.ack.ok, true);
      assert.equal(j.ack.room, r);
      assert.deepEqual(sortMembers(j.ack.members), [{ userId: 'bob', name: 'Bob' }, { userId: pyUser, name: pyName }]);
      assert.deepEqual(await bobJoined, { roomId: r, userId: pyUser, name: pyName }, 'user-joined seen by the Node client');

      const m = await py.step('message');
      assert.equal(m.ack.ok, true, JSON.stringify(m.ack));
      assert.ok(!m.ack.duplicate, JSON.stringify(m.ack));
      assert.deepEqual(Object.keys(m.ack).filter((k) => k !== 'duplicate').sort(), ['id', 'ok', 'ts'], JSON.stringify(m.ack));
      assert.ok(Number.isInteger(m.ack.ts) && Math.abs(m.ack.ts - Date.now()) < 60000, `ts is server time in Unix ms: ${m.ack.ts}`);
      const expectPy = { id: m.ack.id, ts: m.ack.ts, roomId: r, userId: pyUser, name: pyName, text, clientId: m.clientId };
      const own = await py.step('own-message');
      assertMessageEvent(own.event, expectPy);
      assertExtra(own, 'own message');
      assertMessageEvent(await bobGotPy, expectPy);

      await py.step('ready');
      const sent = await sendOk(bob, r, `hello from node over ${transport}`);
      const b = await py.step('broadcast');
      assertMessageEvent(b.event, { id: sent.id, ts: sent.ts, roomId: r, userId: 'bob', name: 'Bob', text: `hello from node over ${transport}` });
      assertExtra(b, 'broadcast');

      // only one transport allowed: it stayed on it; the default: it upgraded from polling to WebSocket
      assert.equal((await py.step('transport')).transport, transport === 'polling' ? 'polling' : 'websocket', 'transport at the end');

      await py.step('disconnect');
      await py.step('done');
      assert.deepEqual(await py.exited(), { code: 0, signal: null }, py.context());
      assert.deepEqual(await bobLeft, { roomId: r, userId: pyUser, name: pyName }, 'user-left seen by the Node client');
    });

    test(`${label}: refused connections get connect_error {message, data: {code}}`, async () => {
      for (const [tok, message, code] of [
        [tamperSignature(token('py-bad')), 'Invalid token', 'token_invalid'],
        [undefined, 'Authentication required', 'token_missing'],
      ]) {
        const py = python(['--url', url(), '--transport', transport, '--mode', 'refused'], tok);
        const e = await py.step('connect_error');
        assert.deepEqual(e.data, { message, data: { code } }, `connect_error argument (${code})`);
        await py.step('done');
        assert.deepEqual(await py.exited(), { code: 0, signal: null }, py.context());
      }
    });
  }
});
