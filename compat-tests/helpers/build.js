// Builds the Go binaries once per `node --test` run (test files run in separate processes: the first one to get
// here builds, the others see the stamp left for the same runner process), unless SWITCHBOARD_BIN / EXAMPLE_BIN
// point at prebuilt binaries.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from './wait.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN_DIR = path.join(ROOT, '.tmp', 'bin');

const TARGETS = {
  switchboard: { env: 'SWITCHBOARD_BIN', pkg: './cmd/switchboard' },
  'example-embed': { env: 'EXAMPLE_BIN', pkg: './cmd/example-embed' },
  'example-chat': { env: 'EXAMPLE_CHAT_BIN', pkg: './cmd/example-chat' },
  'protocol-server': { env: 'PROTOCOL_SERVER_BIN', pkg: './cmd/protocol-server' },
};

function goBuild(out, pkg) {
  return new Promise((resolve, reject) => {
    execFile('go', ['build', '-o', out, pkg], { cwd: ROOT, timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        err.message = `go build -o ${path.relative(ROOT, out)} ${pkg} failed: ${err.message}\n${stdout}${stderr}`;
        reject(err);
      } else resolve();
    });
  });
}

async function withLock(fn) {
  fs.mkdirSync(BIN_DIR, { recursive: true });
  const lock = path.join(BIN_DIR, '.build-lock');
  const deadline = Date.now() + 320_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 330_000) fs.rmSync(lock, { recursive: true, force: true });
      } catch { /* raced with the owner */ }
      if (Date.now() > deadline) throw new Error('timed out waiting for the build lock');
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

const memo = new Map();

/** Returns the path of the named binary ('switchboard', 'example-embed', 'example-chat' or 'protocol-server'), building it if needed. */
export function binary(name = 'switchboard') {
  const t = TARGETS[name];
  if (!t) throw new Error(`unknown binary ${name}`);
  if (process.env[t.env]) return Promise.resolve(path.resolve(process.env[t.env]));
  if (!memo.has(name)) {
    const out = path.join(BIN_DIR, name);
    memo.set(
      name,
      withLock(async () => {
        const stamp = path.join(BIN_DIR, `.built-${name}-${process.ppid}`);
        if (fs.existsSync(stamp) && fs.existsSync(out)) return out;
        for (const f of fs.readdirSync(BIN_DIR)) if (f.startsWith(`.built-${name}-`)) fs.rmSync(path.join(BIN_DIR, f), { force: true });
        await goBuild(out, t.pkg);
        fs.writeFileSync(stamp, new Date().toISOString());
        return out;
      }),
    );
    memo.get(name).catch(() => memo.delete(name));
  }
  return memo.get(name);
}
