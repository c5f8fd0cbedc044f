// Authentication: token sources, algorithms, claims, and the refusal codes of the contract table.
import assert from 'node:assert/strict';
import {
  describe, test, standardHooks, serverFor, connect, connectError, ack, client, once,
  token, claims, signHS, signAsym, signNone, signConfusion, tamperSignature, swapPayload, keyPair, writePublicKey, now,
} from './helpers/index.js';

standardHooks();

const WS = { transports: ['websocket'] };
const REFUSALS = {
  token_missing: 'Authentication required',
  token_invalid: 'Invalid token',
  token_expired: 'Token expired',
  limit_connections: 'Too many connections',
};

async function refused(url, opts, code) {
  const err = await connectError(url, { ...WS, ...opts });
  assert.equal(err.data?.code, code, `data.code: got ${JSON.stringify(err.data)} (message ${err.message}), want ${code}`);
  assert.equal(err.message, REFUSALS[code]);
  return err;
}

/** Connects with the given options and checks the identity the server took from the token. */
async function accepted(url, opts, sub) {
  const s = await connect(url, { ...WS, ...opts });
  const room = `who-${Math.random().toString(36).slice(2, 10)}`;
  const a = await ack(s, 'join-room', room);
  assert.equal(a.ok, true, JSON.stringify(a));
  assert.deepEqual(a.members.map((m) => m.userId), [sub]);
  s.disconnect();
  return a;
}

describe('HS256 secret (default configuration)', () => {
  const ref = serverFor();
  const url = () => ref.srv.url;

  test('token in auth: { token } is accepted; name claim is used', async () => {
    const a = await accepted(url(), { token: token('alice', { name: 'Alice A.' }) }, 'alice');
    assert.deepEqual(a.members, [{ userId: 'alice', name: 'Alice A.' }]);
  });

  test('name is optional: a token without it is accepted and members still carry a name string', async () => {
    const a = await accepted(url(), { token: token('nameless', { name: undefined }) }, 'nameless');
    assert.deepEqual(Object.keys(a.members[0]).sort(), ['name', 'userId']);
    assert.equal(typeof a.members[0].name, 'string');
  });

  test('HS384 and HS512 are accepted', async () => {
    await accepted(url(), { token: signHS(claims('h384'), { alg: 'HS384' }) }, 'h384');
    await accepted(url(), { token: signHS(claims('h512'), { alg: 'HS512' }) }, 'h512');
  });

  test('no token at all → token_missing', async () => {
    await refused(url(), {}, 'token_missing');
    await refused(url(), { auth: {} }, 'token_missing');
  });

  test('Authorization: Bearer header over polling (extraHeaders) is accepted', async () => {
    await accepted(url(), { transports: ['polling'], extraHeaders: { Authorization: `Bearer ${token('hdr')}` } }, 'hdr');
  });

  test('Authorization header with a bad token → token_invalid', async () => {
    await refused(url(), { transports: ['polling'], extraHeaders: { Authorization: `Bearer ${tamperSignature(token('hdr'))}` } }, 'token_invalid');
  });

  test('?token= query is ignored by default → token_missing', async () => {
    await refused(url(), { query: { token: token('q') } }, 'token_missing');
    await refused(url(), { transports: ['polling'], query: { token: token('q') } }, 'token_missing');
  });

  test('malformed tokens → token_invalid', async () => {
    for (const bad of ['abc', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9..', `${token('x')}.extra`]) {
      await refused(url(), { token: bad }, 'token_invalid');
    }
  });

  test('bad signature → token_invalid', async () => {
    await refused(url(), { token: tamperSignature(token('alice')) }, 'token_invalid');
  });

  test('signed with another secret → token_invalid', async () => {
    await refused(url(), { token: token('alice', {}, { secret: 'not-the-secret' }) }, 'token_invalid');
  });

  test('payload swapped under a valid signature → token_invalid', async () => {
    await refused(url(), { token: swapPayload(token('alice'), claims('admin')) }, 'token_invalid');
  });

  test('alg none (any spelling) → token_invalid', async () => {
    for (const alg of ['none', 'None', 'NONE']) {
      await refused(url(), { token: signNone(claims('alice'), alg) }, 'token_invalid');
    }
    // "none" header but carrying a valid HMAC signature
    await refused(url(), { token: signHS(claims('alice'), { header: { alg: 'none' } }) }, 'token_invalid');
  });

  test('RS256 token against an HMAC-configured server → token_invalid', async () => {
    await refused(url(), { token: signAsym(claims('alice'), keyPair('rsa'), 'RS256') }, 'token_invalid');
  });

  test('missing, empty, too long or non-string sub → token_invalid; 128 chars is fine', async () => {
    await refused(url(), { token: signHS(claims(undefined)) }, 'token_invalid');
    await refused(url(), { token: signHS(claims('', { name: 'Empty' })) }, 'token_invalid');
    await refused(url(), { token: signHS(claims('x'.repeat(129))) }, 'token_invalid');
    await refused(url(), { token: signHS({ ...claims('n'), sub: 12345 }) }, 'token_invalid');
    await accepted(url(), { token: signHS(claims('y'.repeat(128))) }, 'y'.repeat(128));
  });

  test('missing exp → token_invalid (AUTH_REQUIRE_EXP defaults to 1)', async () => {
    await refused(url(), { token: signHS(claims('alice', { exp: undefined })) }, 'token_invalid');
  });

  test('expired token → token_expired', async () => {
    await refused(url(), { token: token('alice', { iat: now() - 7200, exp: now() - 120 }) }, 'token_expired');
  });

  test('exp just past but within JWT_LEEWAY (30s) is accepted', async () => {
    await accepted(url(), { token: token('lee', { iat: now() - 600, exp: now() - 5 }) }, 'lee');
  });

  test('nbf in the future → token_invalid; within leeway accepted', async () => {
    await refused(url(), { token: token('alice', { nbf: now() + 600 }) }, 'token_invalid');
    await accepted(url(), { token: token('nbf', { nbf: now() + 5 }) }, 'nbf');
  });

  test('iat in the future (beyond leeway) → token_invalid', async () => {
    await refused(url(), { token: token('alice', { iat: now() + 3600 }) }, 'token_invalid');
  });

  test('a refused client is not connected and another client is unaffected', async () => {
    const ok = await connect(url(), { ...WS, user: 'bystander' });
    const bad = client(url(), { ...WS, token: 'nope' });
    await once(bad, 'connect_error');
    assert.equal(bad.connected, false);
    assert.equal((await ack(ok, 'join-room', 'still-here')).ok, true);
  });
});

describe('AUTH_REQUIRE_EXP=0', () => {
  const ref = serverFor({ env: { AUTH_REQUIRE_EXP: '0' } });

  test('a token without exp is accepted', async () => {
    await accepted(ref.srv.url, { token: signHS(claims('noexp', { exp: undefined })) }, 'noexp');
  });

  test('an expired token is still token_expired', async () => {
    await refused(ref.srv.url, { token: token('alice', { iat: now() - 7200, exp: now() - 120 }) }, 'token_expired');
  });
});

describe('JWT_LEEWAY=0s', () => {
  const ref = serverFor({ env: { JWT_LEEWAY: '0s' } });

  test('exp a few seconds past → token_expired', async () => {
    await refused(ref.srv.url, { token: token('alice', { iat: now() - 600, exp: now() - 5 }) }, 'token_expired');
  });

  test('nbf a few seconds ahead → token_invalid', async () => {
    await refused(ref.srv.url, { token: token('alice', { nbf: now() + 10 }) }, 'token_invalid');
  });
});

describe('AUTH_QUERY_TOKEN=1', () => {
  const ref = serverFor({ env: { AUTH_QUERY_TOKEN: '1' } });

  test('?token= is accepted over websocket and polling', async () => {
    await accepted(ref.srv.url, { query: { token: token('qws') } }, 'qws');
    await accepted(ref.srv.url, { transports: ['polling'], query: { token: token('qpoll') } }, 'qpoll');
  });

  test('a bad ?token= → token_invalid', async () => {
    await refused(ref.srv.url, { query: { token: tamperSignature(token('q')) } }, 'token_invalid');
  });

  test('auth: { token } still works', async () => {
    await accepted(ref.srv.url, { token: token('authq') }, 'authq');
  });
});

describe('JWT_ISSUER and JWT_AUDIENCE configured', () => {
  const ref = serverFor({ env: { JWT_ISSUER: 'https://issuer.test', JWT_AUDIENCE: 'switchboard' } });
  const ok = { iss: 'https://issuer.test', aud: 'switchboard' };

  test('matching iss and aud (string or list) are accepted', async () => {
    await accepted(ref.srv.url, { token: token('ia', ok) }, 'ia');
    await accepted(ref.srv.url, { token: token('ib', { ...ok, aud: ['other', 'switchboard'] }) }, 'ib');
  });

  test('wrong or missing iss → token_invalid', async () => {
    await refused(ref.srv.url, { token: token('alice', { ...ok, iss: 'https://evil.test' }) }, 'token_invalid');
    await refused(ref.srv.url, { token: token('alice', { ...ok, iss: undefined }) }, 'token_invalid');
  });

  test('wrong or missing aud → token_invalid', async () => {
    await refused(ref.srv.url, { token: token('alice', { ...ok, aud: 'other' }) }, 'token_invalid');
    await refused(ref.srv.url, { token: token('alice', { ...ok, aud: ['a', 'b'] }) }, 'token_invalid');
    await refused(ref.srv.url, { token: token('alice', { ...ok, aud: undefined }) }, 'token_invalid');
  });
});

for (const [kind, alg, others] of [
  ['rsa', 'RS256', [['ec', 'ES256'], ['ed25519', 'EdDSA']]],
  ['ec', 'ES256', [['rsa', 'RS256'], ['ed25519', 'EdDSA']]],
  ['ed25519', 'EdDSA', [['rsa', 'RS256'], ['ec', 'ES256']]],
]) {
  describe(`JWT_PUBLIC_KEY_FILE with a ${kind} key (${alg})`, () => {
    const kp = keyPair(kind);
    const ref = serverFor({ env: { JWT_SECRET: null, JWT_PUBLIC_KEY_FILE: writePublicKey(kp) } });

    test(`${alg} signed with the private key is accepted`, async () => {
      await accepted(ref.srv.url, { token: signAsym(claims(`${kind}-user`), kp, alg) }, `${kind}-user`);
    });

    test(`${alg} signed with another ${kind} key → token_invalid`, async () => {
      await refused(ref.srv.url, { token: signAsym(claims('alice'), keyPair(kind), alg) }, 'token_invalid');
    });

    test(`${alg} expired → token_expired`, async () => {
      await refused(ref.srv.url, { token: signAsym(claims('alice', { iat: now() - 7200, exp: now() - 120 }), kp, alg) }, 'token_expired');
    });

    test('algorithm confusion: HS256/HS384/HS512 keyed with the public key PEM → token_invalid', async () => {
      for (const hs of ['HS256', 'HS384', 'HS512']) {
        await refused(ref.srv.url, { token: signConfusion(claims('alice'), kp, hs) }, 'token_invalid');
      }
    });

    test('HS256 with the test secret → token_invalid', async () => {
      await refused(ref.srv.url, { token: token('alice') }, 'token_invalid');
    });

    test('alg none → token_invalid', async () => {
      await refused(ref.srv.url, { token: signNone(claims('alice')) }, 'token_invalid');
    });

    test('an algorithm that does not match the key type → token_invalid', async () => {
      for (const [okind, oalg] of others) {
        await refused(ref.srv.url, { token: signAsym(claims('alice'), keyPair(okind), oalg) }, 'token_invalid');
        // the right key type's algorithm name on a signature made by another key type
        await refused(ref.srv.url, { token: signAsym(claims('alice'), keyPair(okind), oalg, { header: { alg } }) }, 'token_invalid');
      }
    });

    test('no token → token_missing', async () => {
      await refused(ref.srv.url, {}, 'token_missing');
    });
  });
}
