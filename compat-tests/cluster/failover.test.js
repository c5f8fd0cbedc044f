// SIGKILL of one of three nodes while 60 clients of web/switchboard-client.js (ordered queue, ack timeout + retries,
// a clientId per message) chat in one room through HAProxy and through nginx (default transports, sticky cookie).
//
// Measured and asserted:
//   - the killed node's clients are connected again (through the balancer, to a live node) within 5 s;
//   - clients of the other nodes never disconnect;
//   - every message is acknowledged; zero acknowledged messages lost: each one reaches every client that stayed
//     connected, and each reconnected client gets every message accepted after its rooms were re-joined (with
//     ADAPTER=redis a client that changes node is not recovered: what was sent while it was away is not replayed);
//     with ADAPTER=redis-streams every client of the killed node recovers its session on another node
//     (socket.recovered) and gets every acknowledged message, the missed ones replayed;
//   - zero duplicates at any receiver (same id twice, or one (userId, clientId) broadcast under two ids: a retry
//     that reached another node must be recognised through the shared de-duplication);
//   - presence cleaned within 30 s: users whose only connection was on the killed node get user-left (once) and
//     leave the presence list; users that came back are listed with exactly one connection.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, before, after, afterEach, closeClients, board, sleep, waitFor, withTimeout, ack } from '../helpers/index.js';
import { joinOk } from '../helpers/room.js';
import { startCluster, clusterClient, connected, nodeOf, upgraded, httpGet, setCookies, haproxyStates, STICKY_COOKIE, test } from './harness.js';

const N = 60;
const ROOM = 'chat';
const VICTIM = 'node2';
const SEND_EVERY_MS = 1000;
const CHAT_BEFORE_KILL_MS = 4000;
const CHAT_AFTER_KILL_MS = 8000;

const MATRIX = [
  ['haproxy', 'redis'],
  ['nginx', 'redis'],
  ['haproxy', 'redis-streams'],
  ['nginx', 'redis-streams'],
];

for (const [kind, adapter] of MATRIX) {
  const streams = adapter === 'redis-streams';
  describe(`SIGKILL of a node behind ${kind}, ADAPTER=${adapter}`, () => {
    let c;
    before(async () => {
      c = await startCluster({ balancer: kind, env: { ADAPTER: adapter } });
    });
    afterEach(() => closeClients());
    after(async () => {
      closeClients();
      await c?.stop();
    });

    test(`${kind}/${adapter}: 60 chatting clients: back within 5 s${streams ? ', recovered with every missed message' : ''}, nothing acknowledged lost, no duplicates, presence cleaned`, async (t) => {
      // --- 60 module clients, spread by the balancer.
      const clients = Array.from({ length: N }, (_, i) => {
        const user = `c${i}`;
        const sb = board(c.url, { user, ackTimeout: 3000, retries: 10, io: { withCredentials: true } });
        return { i, user, sb, received: [], userLeft: [], disconnects: 0, connects: 0, node: null, backAt: null, rejoinedAt: null, recovered: null };
      });
      await withTimeout(Promise.all(clients.map((cl) => connected(cl.sb.socket, 15000))), 20000, '60 clients connecting');
      for (const cl of clients) cl.node = nodeOf(cl.sb.socket);
      const perNode = {};
      for (const cl of clients) perNode[cl.node] = (perNode[cl.node] || 0) + 1;
      t.diagnostic(`${kind}/${adapter}: clients per node before the kill ${JSON.stringify(perNode)}`);
      for (const n of ['node1', 'node2', 'node3']) assert.ok((perNode[n] || 0) * 6 >= N, `spread: ${JSON.stringify(perNode)}`);

      await Promise.all(clients.map((cl) => cl.sb.join(ROOM)));
      const killedAtRef = { t: 0 };
      for (const cl of clients) {
        cl.sb.on('message', (m) => cl.received.push(m));
        cl.sb.on('user-left', (e) => cl.userLeft.push({ ...e, at: Date.now() }));
        const since = () => Date.now() - (killedAtRef.t || Date.now());
        cl.events = [];
        cl.sb.on('disconnect', (reason, details) => {
          cl.disconnects++;
          (cl.disconnectLog ||= []).push(`${reason}@${since()}ms`);
          cl.events.push(`disconnect ${reason} ${details?.description ?? ''} ${details?.context?.status ?? ''}@${since()}`);
        });
        cl.sb.on('connect', () => cl.events.push(`connect ${nodeOf(cl.sb.socket)} sid=${cl.sb.socket.io.engine?.id} socket=${cl.sb.socket.id} recovered=${cl.sb.socket.recovered}@${since()}`));
        cl.sb.on('connect_error', (e) => cl.events.push(`connect_error ${e.message} ${e.description ?? ''}@${since()}`));
        cl.sb.on('reconnect_attempt', (n) => cl.events.push(`reconnect_attempt ${n}@${since()}`));
        cl.sb.socket.io.on('open', () => {
          const eng = cl.sb.socket.io.engine;
          eng.on('upgrade', (tr) => cl.events.push(`upgrade ${tr.name}@${since()}`));
          eng.on('upgradeError', (e) => cl.events.push(`upgradeError ${e.message}@${since()}`));
        });
      }

      // --- Ghost users: plain sockets without reconnection, straight on a node. Those on the victim never come back,
      // so their presence must be reaped; those on another node stay.
      const victimNode = c.byId(VICTIM);
      const ghosts = [];
      for (let g = 0; g < 6; g++) {
        const node = g < 3 ? victimNode : c.byId('node1');
        const s = clusterClient(node.url, { user: `ghost${g}`, transports: ['websocket'] });
        await connected(s);
        await joinOk(s, ROOM);
        ghosts.push({ user: `ghost${g}`, s, onVictim: g < 3 });
      }

      // --- Chat: every client sends one message per second (random phase), each with its own clientId.
      const sent = [];
      let chatting = true;
      const loops = clients.map(async (cl) => {
        await sleep(Math.floor(Math.random() * SEND_EVERY_MS));
        let seq = 0;
        while (chatting) {
          const rec = { user: cl.user, text: `${cl.user}#${seq++}`, clientId: crypto.randomUUID(), at: Date.now(), ack: null, err: null };
          sent.push(rec);
          rec.done = cl.sb.send(ROOM, rec.text, rec.clientId).then((a) => { rec.ack = a; rec.ackedAt = Date.now(); }, (e) => { rec.err = e; });
          await sleep(SEND_EVERY_MS);
        }
      });

      await sleep(CHAT_BEFORE_KILL_MS);

      // --- Kill.
      const victims = clients.filter((cl) => cl.node === VICTIM);
      const survivors = clients.filter((cl) => cl.node !== VICTIM);
      for (const cl of victims) {
        cl.sb.on('connect', () => {
          cl.connects++;
          if (cl.backAt) return;
          cl.backAt = Date.now();
          cl.recovered = cl.sb.socket.recovered;
          cl.newNode = nodeOf(cl.sb.socket);
          // The module re-joins the room before anything else in its queue; this presence call is queued behind that
          // re-join, so its acknowledgement marks the moment the client is in the room again.
          cl.sb.presence(ROOM).then(() => { cl.rejoinedAt = Date.now(); }, () => {});
        });
      }
      const sentBeforeKill = sent.length;
      const killedAt = Date.now();
      killedAtRef.t = killedAt;
      await victimNode.kill('SIGKILL');
      t.diagnostic(`${kind}/${adapter}: killed ${VICTIM} (${victims.length} clients, 3 ghosts) after ${sentBeforeKill} messages`);

      // A browser keeps the sticky cookie across reconnects (socket.io-client in Node starts a new jar per
      // connection), so its reconnect handshake names the dead node: the balancer must hand it to a live node.
      const deadCookie = kind === 'haproxy' ? `SERVERID=${VICTIM}; ${STICKY_COOKIE}=${VICTIM}` : `${STICKY_COOKIE}=${VICTIM}`;
      const deadCookieProbe = () => httpGet(`${c.url}/socket.io/?EIO=4&transport=polling`, { headers: { cookie: deadCookie } });
      const probeNow = deadCookieProbe();
      // HAProxy's /readyz check takes the dead node out (fall 3 x inter 2s).
      const markedDown = kind === 'haproxy'
        ? waitFor(async () => (await haproxyStates(c.lb))?.[VICTIM]?.startsWith('DOWN'), 15000, { interval: 200 }).then(() => Date.now() - killedAt, () => null)
        : Promise.resolve(null);

      // --- Presence: watched from a survivor while the chat goes on.
      const watcher = survivors[0];
      const victimUsers = new Set(victims.map((cl) => cl.user));
      const expectUsers = new Set([...clients.map((cl) => cl.user), ...ghosts.filter((g) => !g.onVictim).map((g) => g.user)]);
      let presenceCleanAt = null;
      let lastPresence = null;
      const presenceWatch = (async () => {
        const deadline = killedAt + 30000;
        while (Date.now() < deadline) {
          const p = await ack(watcher.sb.socket, 'presence', ROOM).catch((e) => ({ error: e.message }));
          lastPresence = p;
          if (p && p.ok) {
            const users = new Set(p.members.map((m) => m.userId));
            const same = users.size === expectUsers.size && [...expectUsers].every((u) => users.has(u));
            if (same && p.members.every((m) => m.connections === 1) && clients.every((cl) => cl.rejoinedAt || cl.node !== VICTIM)) {
              presenceCleanAt = Date.now();
              return;
            }
          }
          await sleep(500);
        }
      })();

      await sleep(CHAT_AFTER_KILL_MS);
      chatting = false;
      await Promise.all(loops);
      await withTimeout(Promise.all(sent.map((r) => r.done)), 45000, 'every send settling');
      await presenceWatch;
      await Promise.all(victims.map((cl) => upgraded(cl.sb.socket, 10000)));
      const probes = [await probeNow, await deadCookieProbe()];
      const downAfter = await markedDown;

      // --- Delivery: wait (bounded) until the survivors have every acknowledged message.
      const acked = sent.filter((r) => r.ack && r.ack.ok);
      const failed = sent.filter((r) => !(r.ack && r.ack.ok));
      const ackedIds = new Set(acked.map((r) => r.ack.id));
      const mustHaveAll = streams ? clients : survivors;
      await waitFor(() => mustHaveAll.every((cl) => new Set(cl.received.map((m) => m.id)).size >= ackedIds.size), 10000, { interval: 100 }).catch(() => {});
      await sleep(300);

      // Lost: acknowledged messages missing at a receiver that was in the room when the message was accepted.
      let lostAtSurvivors = 0;
      const lostExamples = [];
      for (const cl of survivors) {
        const have = new Set(cl.received.map((m) => m.id));
        for (const r of acked) {
          if (!have.has(r.ack.id)) {
            lostAtSurvivors++;
            if (lostExamples.length < 5) lostExamples.push(`${r.text} (${r.ack.id}${r.ack.duplicate ? ', duplicate ack' : ''}) missing at ${cl.user}@${cl.node}`);
          }
        }
      }
      let lostAtReconnected = 0;
      for (const cl of victims) {
        if (!cl.rejoinedAt && !streams) continue;
        const have = new Set(cl.received.map((m) => m.id));
        for (const r of acked) {
          // With redis-streams the session is recovered on the new node: every message is due, missed ones replayed.
          if ((streams || r.ack.ts > cl.rejoinedAt) && !have.has(r.ack.id)) {
            lostAtReconnected++;
            if (lostExamples.length < 10) {
              const from = clients.find((x) => x.user === r.user);
              lostExamples.push(`${r.text} from ${from.user}@${from.node} (accepted ${r.ack.ts - killedAt} ms after the kill${r.ack.duplicate ? ', duplicate ack' : ''}) missing at ${cl.user}@${cl.node}→${cl.newNode} (back ${cl.backAt - killedAt} ms after the kill)`);
            }
          }
        }
      }
      // Duplicates: an id twice at one receiver, or one (userId, clientId) broadcast under two ids.
      let dupIds = 0;
      let dupClientIds = 0;
      const dupExamples = [];
      for (const cl of clients) {
        const ids = new Map();
        const byClientId = new Map();
        for (const m of cl.received) {
          ids.set(m.id, (ids.get(m.id) || 0) + 1);
          if (m.clientId) {
            const k = `${m.userId}/${m.clientId}`;
            if (!byClientId.has(k)) byClientId.set(k, new Set());
            byClientId.get(k).add(m.id);
          }
        }
        for (const [id, n] of ids) if (n > 1) { dupIds += n - 1; if (dupExamples.length < 5) dupExamples.push(`${id} x${n} at ${cl.user}`); }
        for (const [k, set] of byClientId) if (set.size > 1) { dupClientIds += set.size - 1; if (dupExamples.length < 5) dupExamples.push(`${k} under ids ${[...set].join(',')} at ${cl.user}`); }
      }
      const dupAcks = acked.filter((r) => r.ack.duplicate).length;

      const backTimes = victims.map((cl) => (cl.backAt ? cl.backAt - killedAt : Infinity));
      const maxBack = Math.max(...backTimes);
      // Users whose connection moved to a live node never left the room: no user-left for them.
      const leftButBack = watcher.userLeft.filter((e) => victimUsers.has(e.userId)).map((e) => `${e.userId}@${e.at - killedAt}ms`);
      const ghostLeft = ghosts.filter((g) => g.onVictim).map((g) => {
        const at = watcher.userLeft.filter((e) => e.userId === g.user).map((e) => e.at - killedAt);
        return { user: g.user, count: at.length, after: at[0] };
      });
      t.diagnostic(`${kind}/${adapter}: victims back after (ms) min ${Math.min(...backTimes)} median ${backTimes.sort((a, b) => a - b)[Math.floor(backTimes.length / 2)]} max ${maxBack}; recovered ${victims.filter((cl) => cl.recovered).length}/${victims.length}; new nodes ${JSON.stringify(victims.reduce((o, cl) => ({ ...o, [cl.newNode]: (o[cl.newNode] || 0) + 1 }), {}))}`);
      t.diagnostic(`${kind}/${adapter}: messages sent ${sent.length}, acked ${acked.length} (duplicate acks ${dupAcks}), failed ${failed.length}, lost at survivors ${lostAtSurvivors}, lost at reconnected ${lostAtReconnected}, duplicate ids ${dupIds}, duplicate clientIds ${dupClientIds}`);
      if (lostExamples.length) t.diagnostic(`${kind}/${adapter}: lost: ${lostExamples.join('; ')}`);
      if (dupExamples.length) t.diagnostic(`${kind}/${adapter}: duplicates: ${dupExamples.join('; ')}`);
      const reconnectedTwice = victims.filter((cl) => cl.connects > 1 || cl.disconnects > 1).map((cl) => `${cl.user}: ${cl.events.join(' | ')}`);
      if (reconnectedTwice.length) t.diagnostic(`${kind}/${adapter}: victims that reconnected more than once: ${reconnectedTwice.join('; ')}`);
      const survivorDisc = survivors.filter((cl) => cl.disconnects).map((cl) => `${cl.user}@${cl.node}: ${cl.disconnectLog.join(',')}`);
      if (survivorDisc.length) t.diagnostic(`${kind}/${adapter}: survivors disconnected: ${survivorDisc.join('; ')}`);
      if (!presenceCleanAt && lastPresence?.ok) {
        const users = new Map(lastPresence.members.map((m) => [m.userId, m.connections]));
        t.diagnostic(`${kind}/${adapter}: last presence: ${users.size} members; missing ${JSON.stringify([...expectUsers].filter((u) => !users.has(u)))}; extra ${JSON.stringify([...users.keys()].filter((u) => !expectUsers.has(u)))}; connections != 1: ${JSON.stringify([...users].filter(([, n]) => n !== 1))}`);
      }
      t.diagnostic(`${kind}/${adapter}: presence clean after ${presenceCleanAt ? presenceCleanAt - killedAt : 'never (30 s)'} ms; ghost user-left ${JSON.stringify(ghostLeft)}; user-left for users that came back: ${leftButBack.length}; survivor disconnects ${survivors.reduce((n, cl) => n + cl.disconnects, 0)}`);

      t.diagnostic(`${kind}/${adapter}: handshake with a cookie naming the dead node: ${probes.map((r) => `${r.status ?? r.error?.message} in ${r.ms} ms → ${JSON.stringify(setCookies(r))}`).join('; then ')}${kind === 'haproxy' ? `; HAProxy marked ${VICTIM} DOWN after ${downAfter} ms` : ''}`);

      assert.equal(victims.length > 0, true);
      if (streams) {
        assert.equal(victims.filter((cl) => cl.recovered).length, victims.length, 'ADAPTER=redis-streams: every client of the killed node recovers its session on another node');
      }
      for (const r of probes) {
        assert.equal(r.status, 200, `handshake with a cookie naming the dead node: ${r.status ?? r.error?.message} ${r.body ?? ''}`);
        assert.equal(typeof JSON.parse(r.body.slice(1)).sid, 'string', `handshake body: ${r.body}`);
        const live = setCookies(r)[STICKY_COOKIE];
        assert.ok(live && live !== VICTIM, `the new session is on a live node: ${JSON.stringify(setCookies(r))}`);
        if (kind === 'haproxy') assert.equal(setCookies(r).SERVERID, live, 'HAProxy re-pins the client to the live node');
      }
      assert.ok(probes[0].ms < 1000, `handshake naming the dead node right after the kill took ${probes[0].ms} ms`);
      if (kind === 'haproxy') assert.ok(downAfter !== null && downAfter < 10000, `HAProxy marks the dead node DOWN within 10 s (${downAfter} ms)`);
      assert.ok(maxBack <= 5000, `killed node's clients back within 5 s: slowest ${maxBack} ms`);
      assert.equal(survivors.reduce((n, cl) => n + cl.disconnects, 0), 0, 'clients of the surviving nodes stayed connected');
      assert.equal(failed.length, 0, `every message acknowledged: ${failed.slice(0, 5).map((r) => `${r.text}: ${r.err?.code} ${r.err?.message} ${JSON.stringify(r.ack)}`).join('; ')}`);
      assert.equal(lostAtSurvivors + lostAtReconnected, 0, `acknowledged messages lost: ${lostExamples.join('; ')}`);
      assert.equal(dupIds + dupClientIds, 0, `duplicates at receivers: ${dupExamples.join('; ')}`);
      for (const g of ghostLeft) {
        assert.equal(g.count, 1, `user-left for ${g.user} (only connection on the killed node) within 30 s, once: ${JSON.stringify(ghostLeft)}`);
      }
      assert.deepEqual(leftButBack, [], 'user-left sent for users of the killed node that were back in the room on another node');
      assert.ok(presenceCleanAt, `presence cleaned within 30 s; last presence: ${JSON.stringify(lastPresence)?.slice(0, 2000)}`);
    });
  });
}
