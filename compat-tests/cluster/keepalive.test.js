// Idle keep-alive connections between the balancer and the nodes. A node closes an idle connection after
// HTTP_IDLE_TIMEOUT (default 5s); a balancer that sends a request on it at that moment gets no answer. With the
// deploy/ configs the balancer never does: nginx closes idle upstream connections first (keepalive_timeout 4s in
// each upstream), HAProxy closes the node side after each response (option http-server-close).
//
// Before those two lines, on this machine: behind nginx one such failure (max_fails) marked a live node down for
// fail_timeout and half of the cookie-sticky requests went to another node, where a polling session is unknown
// (the CI failure of the redis-streams failover test: a reconnecting client's first session answered 400);
// behind HAProxy 2-6 of ~530 requests (8 clients, 20 s) were cut ("other side closed").
//
// The race is made frequent by scaling time down: nodes close idle connections after 300ms, and every client
// waits 298-304 ms between requests. For nginx the shipped 4s-below-5s is scaled the same way (200ms below 300ms);
// HAProxy's config runs unchanged.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, before, after, sleep } from '../helpers/index.js';
import { startCluster, STICKY_COOKIE, test } from './harness.js';

const NODE_IDLE = '300ms';
const LOOPS = 8;
const RUN_MS = 20000;

for (const kind of ['nginx', 'haproxy']) {
  describe(`${kind}: idle keep-alive connections to the nodes`, () => {
    let c;
    before(async () => {
      c = await startCluster({
        balancer: kind,
        env: { HTTP_IDLE_TIMEOUT: NODE_IDLE },
        balancerEdit: kind === 'nginx'
          ? (cfg) => {
            const re = /keepalive_timeout 4s;/g;
            assert.equal(cfg.match(re)?.length, 4, 'nginx.conf: keepalive_timeout 4s in each of the 4 upstreams');
            return cfg.replace(re, 'keepalive_timeout 200ms;');
          }
          : undefined,
      });
    });
    after(async () => { await c?.stop(); });

    test(`${kind}: requests spaced at the nodes' idle timeout all reach the sticky node, none fails`, async (t) => {
      let total = 0;
      let misrouted = 0;
      const failures = [];
      const loops = Array.from({ length: LOOPS }, async (_, k) => {
        const node = `node${(k % 3) + 1}`;
        const cookie = kind === 'haproxy' ? `SERVERID=${node}` : `${STICKY_COOKIE}=${node}`;
        const end = Date.now() + RUN_MS;
        await sleep(Math.random() * 300);
        while (Date.now() < end) {
          total++;
          try {
            const res = await fetch(`${c.url}/healthz`, { headers: { cookie }, signal: AbortSignal.timeout(5000) });
            const body = await res.json().catch(() => null);
            if (res.status !== 200) failures.push(`HTTP ${res.status}`);
            else if (body?.node !== node) misrouted++;
          } catch (e) {
            failures.push(`${e.cause?.code ?? ''} ${e.cause?.message ?? e.message}`);
          }
          await sleep(298 + Math.random() * 6);
        }
      });
      await Promise.all(loops);
      let upstreamErrors = [];
      if (kind === 'nginx') {
        upstreamErrors = fs.readFileSync(path.join(c.lb.dir, 'error.log'), 'utf8').split('\n')
          .filter((l) => /prematurely closed|temporarily disabled|Connection reset/.test(l));
      }
      t.diagnostic(`${kind}: ${total} requests, misrouted ${misrouted}, failed ${failures.length}${failures.length ? ` (${[...new Set(failures)].slice(0, 3).join('; ')})` : ''}${kind === 'nginx' ? `, nginx upstream errors ${upstreamErrors.length}` : ''}`);
      assert.ok(total >= LOOPS * 20, `the load ran: ${total} requests`);
      assert.equal(failures.length, 0, `requests failed: ${failures.slice(0, 5).join('; ')}`);
      assert.equal(misrouted, 0, 'requests answered by another node than their sticky cookie names');
      assert.deepEqual(upstreamErrors.slice(0, 3), [], 'nginx sent requests on connections the node had closed');
    });
  });
}
