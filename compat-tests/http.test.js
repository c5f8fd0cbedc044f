// HTTP endpoints: /healthz, /readyz, /metrics, /, and the development-mode token endpoint.
import assert from 'node:assert/strict';
import {
  describe, test, standardHooks, serverFor, startServer, connect, connectError, ack, token, waitFor, keyPair, writePublicKey,
} from './helpers/index.js';

standardHooks();

async function get(url, opts = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000), ...opts });
  const body = await res.text();
  return { status: res.status, headers: res.headers, body };
}

/** Parses Prometheus text: Map of "name{labels}" → value, plus types. */
function parseMetrics(text) {
  const values = new Map();
  const types = new Map();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name, type);
    } else if (line && !line.startsWith('#')) {
      const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)/);
      if (m) values.set(m[1], Number(m[2]));
    }
  }
  return { values, types };
}

function sumOf(values, metricName, filter = () => true) {
  let sum = 0;
  for (const [k, v] of values) {
    const name = k.split('{')[0];
    if (name === metricName && filter(k)) sum += v;
  }
  return sum;
}

describe('production mode', () => {
  const ref = serverFor();

  test('GET /healthz answers 200', async () => {
    const r = await get(`${ref.srv.url}/healthz`);
    assert.equal(r.status, 200);
  });

  test('GET /readyz answers 200 when ready', async () => {
    const r = await get(`${ref.srv.url}/readyz`);
    assert.equal(r.status, 200);
  });

  test('GET / serves the demo page (HTML)', async () => {
    const r = await get(`${ref.srv.url}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /text\/html/);
    assert.match(r.body, /<html|<!doctype html/i);
  });

  test('GET /metrics is Prometheus text with switchboard_ metrics', async () => {
    const r = await get(`${ref.srv.url}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /text\/plain|openmetrics/);
    const { values, types } = parseMetrics(r.body);
    const ours = [...types.keys()].filter((n) => n.startsWith('switchboard_'));
    assert.ok(ours.length >= 3, `expected several switchboard_ metrics, got ${ours.join(', ')}`);
    assert.ok([...values.keys()].some((k) => k.startsWith('switchboard_')), 'no switchboard_ samples');
  });

  test('a handshake counter increases after a connection', async () => {
    // a labelled counter may be absent until its first increment: a missing series counts as 0
    const handshakeSum = async (filter = () => true) => {
      const { values, types } = parseMetrics((await get(`${ref.srv.url}/metrics`)).body);
      const names = [...types].filter(([n, t]) => n.startsWith('switchboard_') && /handshake/.test(n) && t === 'counter').map(([n]) => n);
      return { names, sum: names.reduce((acc, n) => acc + sumOf(values, n, filter), 0) };
    };
    const isOk = (k) => /result="ok"/.test(k);
    const before = await handshakeSum();
    const okBefore = (await handshakeSum(isOk)).sum;
    const s = await connect(ref.srv.url, { user: 'metrics-user', transports: ['websocket'] });
    const a1 = await ack(s, 'join-room', 'metrics-room');
    assert.equal(a1.ok, true);
    const after = await waitFor(async () => {
      const h = await handshakeSum();
      return h.sum >= before.sum + 1 ? h : null;
    }, 3000, { message: 'no switchboard_*handshake* counter increased after a connection' });
    assert.ok(after.names.length > 0);
    const okAfter = (await handshakeSum(isOk)).sum;
    // metric labels are not part of the contract: check the ok/refused split only when a result="ok" series exists
    const labelled = okAfter > 0;
    if (labelled) assert.ok(okAfter >= okBefore + 1, 'the successful handshake must be counted with result="ok"');
    // a refused handshake counts as well, but never as a success
    const err = await connectError(ref.srv.url, { token: 'garbage', transports: ['websocket'] });
    assert.equal(err.data?.code, 'token_invalid');
    await waitFor(async () => (await handshakeSum()).sum >= after.sum + 1, 3000, { message: 'the refused handshake was not counted' });
    if (labelled) assert.equal((await handshakeSum(isOk)).sum, okAfter, 'a refused handshake must not count as ok');
  });

  test('GET /auth/dev-token is 404 in production mode', async () => {
    const r = await get(`${ref.srv.url}/auth/dev-token?sub=alice&name=Alice`);
    assert.equal(r.status, 404);
    assert.doesNotMatch(r.body, /eyJ/); // no token in the body
  });
});

describe('development mode (no JWT_SECRET, no JWT_PUBLIC_KEY_FILE)', () => {
  const ref = serverFor({ env: { JWT_SECRET: null, JWT_PUBLIC_KEY_FILE: null } });

  test('GET /auth/dev-token returns a token that connects as that user', async () => {
    const r = await get(`${ref.srv.url}/auth/dev-token?sub=alice&name=Alice`);
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body);
    assert.equal(typeof body.token, 'string');
    const parts = body.token.split('.');
    assert.equal(parts.length, 3);
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.name, 'Alice');

    const bobTok = JSON.parse((await get(`${ref.srv.url}/auth/dev-token?sub=bob&name=Bob`)).body).token;
    const alice = await connect(ref.srv.url, { token: body.token, transports: ['websocket'] });
    const bob = await connect(ref.srv.url, { token: bobTok, transports: ['websocket'] });
    assert.equal((await ack(alice, 'join-room', 'dev')).ok, true);
    const joined = new Promise((resolve) => alice.once('user-joined', resolve));
    assert.equal((await ack(bob, 'join-room', 'dev')).ok, true);
    assert.deepEqual(await joined, { roomId: 'dev', userId: 'bob', name: 'Bob' });
    const got = new Promise((resolve) => bob.once('message', resolve));
    const a = await ack(alice, 'message', { roomId: 'dev', text: 'hi' });
    assert.equal(a.ok, true);
    const m = await got;
    assert.equal(m.userId, 'alice');
    assert.equal(m.name, 'Alice');
  });

  test('development mode logs a warning', async () => {
    assert.ok(ref.srv.logs.some((l) => /warn/i.test(l)), `no warning in the server output:\n${ref.srv.logs.slice(0, 10).join('\n')}`);
  });

  test('a token signed with another secret is refused in development mode', async () => {
    const err = await connectError(ref.srv.url, { token: token('alice'), transports: ['websocket'] });
    assert.equal(err.message, 'Invalid token');
    assert.equal(err.data?.code, 'token_invalid');
  });
});

test('GET /auth/dev-token is 404 with only JWT_PUBLIC_KEY_FILE configured (production mode)', async () => {
  const file = writePublicKey(keyPair('ed25519'));
  const srv = await startServer({ env: { JWT_SECRET: null, JWT_PUBLIC_KEY_FILE: file } });
  try {
    const r = await get(`${srv.url}/auth/dev-token?sub=alice&name=Alice`);
    assert.equal(r.status, 404);
  } finally {
    await srv.stop();
  }
});

test('GET /readyz answers 503 while draining (SIGTERM with clients connected)', async () => {
  const srv = await startServer({ env: { DRAIN_TIMEOUT: '3s' } });
  try {
    for (let i = 0; i < 3; i++) await connect(srv.url, { user: `d${i}`, transports: ['websocket'] });
    assert.equal((await get(`${srv.url}/readyz`)).status, 200);
    srv.proc.kill('SIGTERM');
    const status = await waitFor(async () => {
      try {
        const r = await get(`${srv.url}/readyz`);
        return r.status === 200 ? null : r.status;
      } catch {
        return 'unreachable';
      }
    }, 2000, { interval: 10, message: '/readyz kept answering 200 after SIGTERM' });
    assert.equal(status, 503);
    // /healthz still answers while the process serves
    assert.equal((await get(`${srv.url}/healthz`)).status, 200);
    const exited = await srv.waitExit(10000);
    assert.ok(exited, 'the server did not exit after draining');
  } finally {
    await srv.stop();
  }
});
