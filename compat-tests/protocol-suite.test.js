// The official Socket.IO protocol test suite (socketio/socket.io-protocol test-suite/, see protocol-suite/README.md)
// against cmd/protocol-server, run with mocha as the suite's own `npm test` does. Every one of its 32 tests must
// pass. Node's socket.io, set up as the suite's README says (protocol-suite/node-server.js), runs the same suite in the
// same harness as a control; its figures are reported, not asserted.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test, standardHooks, serverFor, freePort, waitFor } from './helpers/index.js';
import { ROOT } from './helpers/build.js';

standardHooks();

const MOCHA = path.join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');
const SUITE = path.join(ROOT, 'compat-tests', 'protocol-suite', 'test-suite.js');

function mocha(url) {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sb-suite-')), 'report.json');
  return new Promise((resolve) => {
    execFile(process.execPath, [MOCHA, '--reporter', 'json', '--reporter-option', `output=${out}`, '--timeout', '10000', SUITE], {
      cwd: ROOT, env: { ...process.env, SUITE_URL: url }, timeout: 110_000, maxBuffer: 16 << 20,
    }, (err, stdout, stderr) => {
      let report = null;
      try { report = JSON.parse(fs.readFileSync(out, 'utf8')); } catch { /* reported below */ }
      resolve({ err, stdout, stderr, report });
    });
  });
}

describe('official Socket.IO protocol test suite', () => {
  const ref = serverFor({
    bin: 'protocol-server',
    env: { PING_INTERVAL: '300ms', PING_TIMEOUT: '200ms', HANDSHAKE_TIMEOUT: '1s', CORS_ORIGINS: '*', MAX_PAYLOAD: 1000000 },
  });

  test('every test of the suite passes', async (t) => {
    const { err, stdout, stderr, report } = await mocha(ref.srv.url);
    assert.ok(report, `mocha wrote no report: ${err?.message}\n${stdout}\n${stderr}`);
    const { stats, failures } = report;
    t.diagnostic(`protocol suite: ${stats.passes} of ${stats.tests} passed, ${stats.failures} failed, ${stats.pending} pending`);
    for (const f of failures) t.diagnostic(`failed: ${f.fullTitle}: ${f.err?.message}`);
    assert.equal(stats.tests, 32, 'the suite has 32 tests');
    assert.deepEqual(failures.map((f) => `${f.fullTitle}: ${f.err?.message}`), []);
    assert.equal(stats.passes, stats.tests);
  });

  test('control: Node\'s socket.io in the same harness', async (t) => {
    const port = await freePort();
    const node = spawn(process.execPath, [path.join(ROOT, 'compat-tests', 'protocol-suite', 'node-server.js')], {
      cwd: ROOT, env: { ...process.env, PORT: String(port) }, stdio: 'ignore',
    });
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`).catch(() => null))?.ok, 10000, { interval: 50 });
      const { report } = await mocha(`http://127.0.0.1:${port}`);
      assert.ok(report, 'mocha wrote no report for the Node server');
      t.diagnostic(`Node socket.io: ${report.stats.passes} of ${report.stats.tests} passed${report.failures.length ? `; failed: ${report.failures.map((f) => f.fullTitle).join('; ')}` : ''}`);
    } finally {
      node.kill('SIGKILL');
    }
  });
});
