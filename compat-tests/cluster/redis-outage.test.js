// Redis stopped for 5 s, then started again on the same port, under three nodes behind HAProxy and nginx:
// /readyz goes 503 on every node and back to 200, clients stay connected, a room message sent meanwhile is refused
// `unavailable` and delivered to nobody (honest acks: not even on the sender's node), its retry with the same
// clientId once Redis is back is delivered to every member exactly once, and delivery across nodes resumes without
// restarting any node. (The zero-loss / zero-duplicate check under outages with chatting clients is in
// redis-faults.test.js.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, before, after, afterEach, closeClients, collect, sleep, waitFor, ack } from '../helpers/index.js';
import { joinOk, assertRefused } from '../helpers/room.js';
import { startCluster, connectOnNode, nodeOf, readyStatus, upgraded, test } from './harness.js';

const NODES = ['node1', 'node2', 'node3'];

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

for (const kind of ['haproxy', 'nginx']) {
  describe(`Redis outage under a cluster behind ${kind}`, () => {
    let c;
    before(async () => {
      c = await startCluster({ balancer: kind });
    });
    afterEach(() => closeClients());
    after(async () => {
      closeClients();
      await c?.stop();
    });

    test(`${kind}: Redis down 5 s: /readyz 503 then 200, messages refused unavailable and delivered nowhere, cross-node delivery resumes`, async (t) => {
      const room = `outage-${kind}`;
      const members = [];
      for (const n of NODES) for (let k = 0; k < 2; k++) members.push(await connectOnNode(c.url, n, { user: `r${n}${k}` }));
      await Promise.all(members.map((s) => upgraded(s)));
      for (const s of members) await joinOk(s, room);
      const got = members.map((s) => collect(s, 'message'));
      const disconnects = members.map((s) => collect(s, 'disconnect'));

      /** Every member sends one message tagged `tag`; resolves when every member got all of them (or times out). */
      async function roundTrip(tag, timeoutMs = 5000) {
        const acks = await Promise.all(members.map((s, i) => ack(s, 'message', { roomId: room, text: `${tag}-${i}` })));
        for (const a of acks) assert.equal(a.ok, true, `${tag}: ${JSON.stringify(a)}`);
        await waitFor(() => got.every((g) => g.filter((m) => m.text.startsWith(`${tag}-`)).length >= members.length), timeoutMs, {
          message: `${tag}: ${got.map((g) => g.filter((m) => m.text.startsWith(`${tag}-`)).length).join('/')} of ${members.length} each`,
        });
      }
      await roundTrip('before');

      // --- Redis down.
      const cpuBefore = c.nodes.map((n) => cpuSeconds(n.proc.pid));
      const stoppedAt = Date.now();
      await c.redis.stop();
      await waitFor(async () => (await Promise.all(c.nodes.map((n) => readyStatus(n.url)))).every((s) => s === 503), 5000, {
        interval: 100, message: 'every node /readyz 503 while Redis is down',
      });
      const notReadyAfter = Date.now() - stoppedAt;

      // Honest acks: a room message sent while Redis is down is refused `unavailable` (with and without a clientId)
      // and delivered to nobody, not even to the member on the sender's node (checked after Redis is back, behind
      // the 'after' round, which every member receives in room order).
      const s0 = members[0];
      const s1 = members[1];
      assert.equal(nodeOf(s0), nodeOf(s1));
      const refusedAckStart = Date.now();
      const la = await ack(s0, 'message', { roomId: room, text: 'during-outage-1', clientId: `retry-${kind}` });
      const refusedAckMs = Date.now() - refusedAckStart;
      assertRefused(la, 'unavailable', 'message with a clientId while Redis is down');
      assertRefused(await ack(members[2], 'message', { roomId: room, text: 'during-outage-2' }), 'unavailable', 'message without a clientId while Redis is down');
      await sleep(300);
      assert.deepEqual(got.map((g) => g.filter((m) => m.text.startsWith('during-outage')).length), members.map(() => 0), 'a refused message was delivered');

      await sleep(Math.max(0, 5000 - (Date.now() - stoppedAt)));
      // No hot loop while Redis is unreachable: CPU time each node used during the outage.
      const outageCpu = c.nodes.map((n, i) => cpuSeconds(n.proc.pid) - cpuBefore[i]);
      // --- Redis back, same port, empty.
      const restartedAt = Date.now();
      await c.redis.start();
      await waitFor(async () => (await Promise.all(c.nodes.map((n) => readyStatus(n.url)))).every((s) => s === 200), 15000, {
        interval: 100, message: 'every node /readyz 200 after Redis is back',
      });
      const readyAfter = Date.now() - restartedAt;

      // Cross-node delivery resumes: probe until one message from node1 reaches node2 and node3, then a full round.
      let probe = 0;
      await waitFor(async () => {
        const text = `probe-${probe++}`;
        await ack(s0, 'message', { roomId: room, text });
        await sleep(200);
        return got[2].some((m) => m.text === text) && got[4].some((m) => m.text === text);
      }, 15000, { interval: 0, message: 'cross-node delivery after Redis came back' });
      const resumedAfter = Date.now() - restartedAt;
      // The refused message retried with the same clientId: a new message now, delivered to every member once
      // (the claim of the refused attempt must not make it a "duplicate" that nobody ever received).
      const retry = await ack(s0, 'message', { roomId: room, text: 'retried-after-outage', clientId: `retry-${kind}` });
      assert.equal(retry.ok, true, `retry after the outage: ${JSON.stringify(retry)}`);
      await roundTrip('after', 5000);
      assert.deepEqual(got.map((g) => g.filter((m) => m.text.startsWith('during-outage')).length), members.map(() => 0), 'a refused message was delivered after Redis came back');
      assert.deepEqual(got.map((g) => g.filter((m) => m.text === 'retried-after-outage').length), members.map(() => 1),
        `the retry of a refused message reaches every member exactly once (ack ${JSON.stringify(retry)})`);

      t.diagnostic(`${kind}: /readyz 503 ${notReadyAfter} ms after Redis stopped; refusal during outage in ${refusedAckMs} ms; /readyz 200 ${readyAfter} ms and cross-node delivery ${resumedAfter} ms after Redis restarted (${probe} probes); node CPU during the 5 s outage ${outageCpu.map((x) => x.toFixed(2)).join('/')} s`);
      for (const cpu of outageCpu) assert.ok(cpu < 1, `a node used ${cpu.toFixed(2)} CPU-seconds in a 5 s Redis outage (reconnect hot loop?)`);
      assert.equal(disconnects.reduce((n, d) => n + d.length, 0), 0, 'no client was disconnected by the Redis outage');
      const byNode = Object.fromEntries(members.map((s, i) => [i, nodeOf(s)]));
      assert.deepEqual(Object.values(byNode), ['node1', 'node1', 'node2', 'node2', 'node3', 'node3']);
    });
  });
}
