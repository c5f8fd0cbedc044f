// Three Switchboard nodes on one Redis behind the deploy/ configs of HAProxy and nginx (cookie stickiness), with
// socket.io-client's default transports (polling, then upgrade to WebSocket): connection and spread, messages
// across nodes, presence and multi-tab semantics across nodes, the per-user connection limit across nodes.
import assert from 'node:assert/strict';
import { describe, before, after, afterEach, closeClients, collect, sleep, waitFor, ack } from '../helpers/index.js';
import { joinOk, settle, assertMessageEvent } from '../helpers/room.js';
import {
  startCluster, clusterClient, connected, upgraded, nodeOf, cookiesOf, nodeConnections, connectOnNode, test,
} from './harness.js';

const NODES = ['node1', 'node2', 'node3'];

for (const kind of ['haproxy', 'nginx']) {
  describe(`cluster behind ${kind} (cookie stickiness)`, () => {
    let c;
    before(async () => {
      c = await startCluster({ balancer: kind, env: { MAX_CONNECTIONS_PER_USER: 3 } });
    });
    afterEach(() => closeClients());
    after(async () => {
      closeClients();
      await c?.stop();
    });

    test(`${kind}: 45 clients connect, upgrade to websocket and spread over the three nodes`, async (t) => {
      const N = 45;
      const sockets = Array.from({ length: N }, (_, i) => clusterClient(c.url, { user: `spread${i}` }));
      await Promise.all(sockets.map((s) => connected(s, 15000)));
      await Promise.all(sockets.map((s) => upgraded(s, 15000)));
      for (const s of sockets) assert.equal(s.io.engine.transport.name, 'websocket');

      const perNode = Object.fromEntries(NODES.map((n) => [n, 0]));
      for (const s of sockets) {
        const node = nodeOf(s);
        assert.ok(NODES.includes(node), `sticky cookie names a node: ${JSON.stringify(cookiesOf(s))}`);
        if (kind === 'haproxy') assert.equal(cookiesOf(s).SERVERID, node, 'HAProxy SERVERID cookie names the node that served the handshake');
        perNode[node]++;
      }
      t.diagnostic(`${kind}: clients per node ${JSON.stringify(perNode)}`);
      for (const n of NODES) assert.ok(perNode[n] * 6 >= N, `${n} has ${perNode[n]} of ${N} clients (fewer than 1/6): ${JSON.stringify(perNode)}`);

      // The nodes agree: each one counts exactly the websocket connections the cookies attribute to it.
      await waitFor(async () => {
        for (const n of c.nodes) {
          const m = await nodeConnections(n.url);
          if (m.websocket !== perNode[n.id] || m.polling !== 0) return false;
        }
        return true;
      }, 5000, { message: `metrics vs cookies ${JSON.stringify(perNode)}` });
    });

    test(`${kind}: room messages cross nodes: every member gets every message exactly once, in each sender's order`, async (t) => {
      const room = `xnode-${kind}`;
      const members = [];
      for (const n of NODES) {
        for (let k = 0; k < 2; k++) members.push(await connectOnNode(c.url, n, { user: `x${n}${k}` }));
      }
      assert.deepEqual(members.map(nodeOf), ['node1', 'node1', 'node2', 'node2', 'node3', 'node3']);
      for (const s of members) await joinOk(s, room);
      const got = members.map((s) => collect(s, 'message'));

      // Every member sends 15 messages without waiting for acks in between (pipelined), all members at once.
      const PER = 15;
      const acks = await Promise.all(members.map(async (s, i) => {
        const ps = [];
        for (let k = 0; k < PER; k++) ps.push(ack(s, 'message', { roomId: room, text: `m${i}-${k}` }));
        return Promise.all(ps);
      }));
      const all = acks.flat();
      for (const a of all) assert.equal(a.ok, true, JSON.stringify(a));
      const ids = new Set(all.map((a) => a.id));
      assert.equal(ids.size, members.length * PER, 'message ids are unique across the cluster');

      await Promise.all(got.map((g) => g.waitCount(members.length * PER, 10000)));
      await sleep(200);
      const orders = [];
      got.forEach((g, r) => {
        const seen = g.map((m) => m.id);
        assert.equal(seen.length, members.length * PER, `member ${r} got ${seen.length} messages (duplicates?)`);
        assert.deepEqual(new Set(seen), ids, `member ${r} got exactly the acknowledged messages`);
        for (let i = 0; i < members.length; i++) {
          const texts = g.filter((m) => m.text.startsWith(`m${i}-`)).map((m) => m.text);
          assert.deepEqual(texts, Array.from({ length: PER }, (_, k) => `m${i}-${k}`), `member ${r}: order of sender ${i}'s messages`);
        }
        const first = g[0];
        const sender = Number(first.text.split('-')[0].slice(1));
        assertMessageEvent(first, { roomId: room, userId: `x${nodeOf(members[sender])}${sender % 2}`, text: first.text });
        orders.push(seen.join(','));
      });
      // Informational: whether members on different nodes saw concurrent senders interleaved the same way.
      t.diagnostic(`${kind}: distinct interleavings of concurrent senders across the 6 members: ${new Set(orders).size}`);
    });

    // The contract: messages reach each member "in the order the server accepted them". In a cluster the accepting
    // order is Redis's: every node (the sender's included) delivers a room message when it comes back from Redis,
    // so members on different nodes see concurrent senders interleaved one way.
    test(`${kind}: members on different nodes see concurrent senders in one order`, async () => {
      const room = `order-${kind}`;
      const members = [];
      for (const n of NODES) members.push(await connectOnNode(c.url, n, { user: `o${n}` }));
      for (const s of members) await joinOk(s, room);
      const got = members.map((s) => collect(s, 'message'));
      const PER = 15;
      await Promise.all(members.map((s, i) => Promise.all(Array.from({ length: PER }, (_, k) => ack(s, 'message', { roomId: room, text: `o${i}-${k}` })))));
      await Promise.all(got.map((g) => g.waitCount(members.length * PER, 10000)));
      const orders = got.map((g) => g.map((m) => m.text).join(','));
      assert.equal(new Set(orders).size, 1, `${new Set(orders).size} different orders at ${members.length} members on 3 nodes`);
    });

    test(`${kind}: presence and multi-tab join/leave across nodes (one user-joined, user-left only after the last tab)`, async () => {
      const room = `tabs-${kind}`;
      const bob = await connectOnNode(c.url, 'node3', { user: 'bob' });
      await joinOk(bob, room);
      const bobJoined = collect(bob, 'user-joined');
      const bobLeft = collect(bob, 'user-left');

      // Tab A of alice on node1.
      const tabA = await connectOnNode(c.url, 'node1', { user: 'alice' });
      const aJoined = collect(tabA, 'user-joined');
      const aLeft = collect(tabA, 'user-left');
      const ja = await joinOk(tabA, room);
      assert.deepEqual(ja.members.map((m) => m.userId).sort(), ['alice', 'bob'], `join ack members: ${JSON.stringify(ja)}`);
      await bobJoined.waitCount(1, 5000);
      assert.deepEqual(bobJoined[0], { roomId: room, userId: 'alice', name: 'Alice' });

      // Tab B of alice on node2: not her first connection in the room, so no user-joined anywhere.
      const tabB = await connectOnNode(c.url, 'node2', { user: 'alice' });
      const jb = await joinOk(tabB, room);
      assert.deepEqual(jb.members.map((m) => m.userId).sort(), ['alice', 'bob'], `join ack members (second tab): ${JSON.stringify(jb)}`);
      await settle(tabB, room, [bob, tabA], 300);
      assert.equal(bobJoined.length, 1, `user-joined sent again for alice's second tab: ${JSON.stringify(bobJoined)}`);
      assert.equal(aJoined.filter((e) => e.userId === 'alice').length, 0, `alice's first tab was told alice joined: ${JSON.stringify(aJoined)}`);

      // presence from every node lists the whole room with alice's two connections.
      for (const s of [bob, tabA, tabB]) {
        const p = await ack(s, 'presence', room);
        assert.equal(p.ok, true, JSON.stringify(p));
        const byUser = Object.fromEntries(p.members.map((m) => [m.userId, m]));
        assert.deepEqual(Object.keys(byUser).sort(), ['alice', 'bob'], `presence (${nodeOf(s)}): ${JSON.stringify(p)}`);
        assert.deepEqual(byUser.alice, { userId: 'alice', name: 'Alice', connections: 2 }, `presence (${nodeOf(s)}): ${JSON.stringify(p)}`);
        assert.deepEqual(byUser.bob, { userId: 'bob', name: 'Bob', connections: 1 }, `presence (${nodeOf(s)}): ${JSON.stringify(p)}`);
      }

      // Tab A leaves: alice is still in the room through tab B: no user-left.
      const la = await ack(tabA, 'leave-room', room);
      assert.equal(la.ok, true, JSON.stringify(la));
      await settle(tabB, room, [bob], 300);
      assert.equal(bobLeft.length, 0, `user-left sent while alice still has a tab in the room: ${JSON.stringify(bobLeft)}`);
      const p1 = await ack(bob, 'presence', room);
      assert.deepEqual(p1.members.find((m) => m.userId === 'alice'), { userId: 'alice', name: 'Alice', connections: 1 }, JSON.stringify(p1));

      // Tab B disconnects: that was alice's last connection in the room: one user-left.
      tabB.disconnect();
      await bobLeft.waitCount(1, 5000);
      assert.deepEqual(bobLeft[0], { roomId: room, userId: 'alice', name: 'Alice' });
      await sleep(500);
      assert.equal(bobLeft.length, 1, `user-left sent more than once: ${JSON.stringify(bobLeft)}`);
      assert.equal(aLeft.length, 0, 'tab A left the room and must not get room events');
      const p2 = await ack(bob, 'presence', room);
      assert.deepEqual(p2.members.map((m) => m.userId), ['bob'], `presence after alice left: ${JSON.stringify(p2)}`);

      // Two tabs of carol on different nodes join at the same moment, then both disconnect at the same moment:
      // exactly one user-joined and one user-left.
      const tabC = await connectOnNode(c.url, 'node1', { user: 'carol' });
      const tabD = await connectOnNode(c.url, 'node2', { user: 'carol' });
      const [jc, jd] = await Promise.all([ack(tabC, 'join-room', room), ack(tabD, 'join-room', room)]);
      assert.equal(jc.ok && jd.ok, true, `${JSON.stringify(jc)} ${JSON.stringify(jd)}`);
      await settle(tabC, room, [bob], 100);
      await settle(tabD, room, [bob], 300);
      assert.equal(bobJoined.filter((e) => e.userId === 'carol').length, 1, `user-joined for carol's concurrent tabs: ${JSON.stringify(bobJoined)}`);
      tabC.disconnect();
      tabD.disconnect();
      await waitFor(() => bobLeft.some((e) => e.userId === 'carol'), 5000, { message: 'user-left for carol' });
      await sleep(700);
      assert.equal(bobLeft.filter((e) => e.userId === 'carol').length, 1, `user-left for carol's concurrent disconnects: ${JSON.stringify(bobLeft)}`);
      const p3 = await ack(bob, 'presence', room);
      assert.deepEqual(p3.members.map((m) => m.userId), ['bob'], `presence after carol left: ${JSON.stringify(p3)}`);
    });

    // What failover relies on: a message whose ack was lost with its node is retried (same clientId) on another node.
    test(`${kind}: clientId de-duplication is shared: a retry on another node is acknowledged as a duplicate, broadcast once`, async () => {
      const room = `dedupe-${kind}`;
      const watcher = await connectOnNode(c.url, 'node3', { user: 'walt' });
      await joinOk(watcher, room);
      const got = collect(watcher, 'message');
      const first = await connectOnNode(c.url, 'node1', { user: 'erin' });
      await joinOk(first, room);
      const clientId = 'retry-0001';
      const a1 = await ack(first, 'message', { roomId: room, text: 'once', clientId });
      assert.equal(a1.ok, true, JSON.stringify(a1));
      first.disconnect();
      const retry = await connectOnNode(c.url, 'node2', { user: 'erin' });
      await joinOk(retry, room);
      const a2 = await ack(retry, 'message', { roomId: room, text: 'once', clientId });
      assert.deepEqual(a2, { ok: true, id: a1.id, ts: a1.ts, duplicate: true }, `retry on node2 of a message accepted on node1: ${JSON.stringify(a2)} (first ${JSON.stringify(a1)})`);
      await settle(retry, room, [watcher], 200);
      const copies = got.filter((m) => m.clientId === clientId);
      assert.equal(copies.length, 1, `broadcasts of one clientId: ${JSON.stringify(copies)}`);
      assert.equal(copies[0].id, a1.id);
    });

    test(`${kind}: MAX_CONNECTIONS_PER_USER (3 here) counts the user's connections on every node`, async () => {
      const tabs = [];
      for (const n of NODES) tabs.push(await connectOnNode(c.url, n, { user: 'dave' }));
      assert.deepEqual(tabs.map(nodeOf), NODES);
      // A fourth connection, wherever the balancer puts it, is refused.
      for (let i = 0; i < 3; i++) {
        const s = clusterClient(c.url, { user: 'dave' });
        const err = await connected(s).then(() => null, (e) => e);
        assert.ok(err, `fourth connection of dave accepted on ${nodeOf(s)}`);
        assert.equal(err.message, 'Too many connections', `refusal on ${nodeOf(s)}`);
        assert.equal(err.data?.code, 'limit_connections');
        s.disconnect();
      }
      // Closing one tab frees a slot (on another node than the one it was on).
      tabs[0].disconnect();
      await waitFor(async () => {
        const s = clusterClient(c.url, { user: 'dave' });
        const ok = await connected(s).then(() => true, () => false);
        if (!ok) s.disconnect();
        return ok;
      }, 8000, { interval: 200, message: 'a slot frees up after a tab closes' });
    });
  });
}
