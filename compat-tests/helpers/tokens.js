// JWT helpers on node:crypto only: HS256/384/512 with a shared secret, RS256/ES256/EdDSA with generated key pairs,
// plus deliberately broken tokens (alg none, HS-with-public-key confusion, bad signatures).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const TEST_SECRET = 'compat-test-secret-0123456789abcdef0123456789abcdef';

export const b64url = (buf) => Buffer.from(buf).toString('base64url');
const enc = (obj) => b64url(JSON.stringify(obj));
export const now = () => Math.floor(Date.now() / 1000);

/** Standard claims for a user: sub, name, iat, exp one hour ahead. `extra` overrides/adds (undefined removes). */
export function claims(sub, extra = {}) {
  const c = { sub, name: sub ? sub[0].toUpperCase() + sub.slice(1) : undefined, iat: now(), exp: now() + 3600, ...extra };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c;
}

function signingInput(header, payload) {
  return `${enc(header)}.${typeof payload === 'string' ? b64url(payload) : enc(payload)}`;
}

/** HMAC-signed token. alg: HS256 | HS384 | HS512. */
export function signHS(payload, { secret = TEST_SECRET, alg = 'HS256', header = {} } = {}) {
  const h = { alg, typ: 'JWT', ...header };
  const input = signingInput(h, payload);
  const digest = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  if (!digest) throw new Error(`signHS: unsupported alg ${alg}`);
  return `${input}.${b64url(crypto.createHmac(digest, secret).update(input).digest())}`;
}

/** Token for `sub` signed with the test secret (HS256). */
export function token(sub, extra = {}, opts = {}) {
  return signHS(claims(sub, extra), opts);
}

/** Generates a key pair: kind 'rsa' | 'ec' | 'ed25519'. */
export function keyPair(kind) {
  if (kind === 'rsa') return crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  if (kind === 'ec') return crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  if (kind === 'ed25519') return crypto.generateKeyPairSync('ed25519');
  throw new Error(`unknown key kind ${kind}`);
}

export const publicPem = (kp) => kp.publicKey.export({ type: 'spki', format: 'pem' });

/** Writes the public key of `kp` to a temp PEM file and returns its path (removed at process exit). */
export function writePublicKey(kp) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-keys-'));
  const file = path.join(dir, 'public.pem');
  fs.writeFileSync(file, publicPem(kp));
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return file;
}

/** Asymmetric token: alg RS256 (rsa), ES256 (ec P-256, raw r||s signature), EdDSA (ed25519). */
export function signAsym(payload, kp, alg, { header = {} } = {}) {
  const h = { alg, typ: 'JWT', ...header };
  const input = signingInput(h, payload);
  let sig;
  if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), kp.privateKey);
  else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key: kp.privateKey, dsaEncoding: 'ieee-p1363' });
  else if (alg === 'EdDSA') sig = crypto.sign(null, Buffer.from(input), kp.privateKey);
  else throw new Error(`signAsym: unsupported alg ${alg}`);
  return `${input}.${b64url(sig)}`;
}

/** Unsigned token with alg "none" (signature part empty), any capitalisation of none. */
export function signNone(payload, alg = 'none') {
  return `${signingInput({ alg, typ: 'JWT' }, payload)}.`;
}

/** Algorithm confusion: an HS256 token whose HMAC key is the server's public key PEM text. */
export function signConfusion(payload, kp, alg = 'HS256') {
  return signHS(payload, { secret: publicPem(kp), alg });
}

/** Flips one character of the signature. */
export function tamperSignature(tok) {
  const [h, p, s] = tok.split('.');
  const c = s[5] === 'A' ? 'B' : 'A';
  return `${h}.${p}.${s.slice(0, 5)}${c}${s.slice(6)}`;
}

/** Replaces the payload but keeps the original signature. */
export function swapPayload(tok, payload) {
  const [h, , s] = tok.split('.');
  return `${h}.${enc(payload)}.${s}`;
}
