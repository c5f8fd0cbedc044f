// The Admin UI's protocol in a mixed cluster: a Switchboard node with ADMIN_UI_PASSWORD_HASH and a Node socket.io 4.8
// server instrumented with @socket.io/admin-ui 0.5.1's instrument(), on one Redis (@socket.io/redis-adapter). An admin
// client (socket.io-client, as the UI connects) on either sees both servers' server_stats, the sockets of both
// in all_sockets, and its disconnect command reaches a socket of the other language.
import assert from 'node:assert/strict';
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { instrument } from '@socket.io/admin-ui';
import bcrypt from 'bcryptjs';
import { io as ioc } from 'socket.io-client';
import { describe, before, after, closeClients, connect, client, freePort, once, withTimeout } from '../helpers/index.js';
import { startCluster, redisAdapterClients, test } from './harness.js';

const PASSWORD = 'mixed-cluster-admin';

async function startInstrumentedNode(redisUrl) {
  const [pub, sub] = await redisAdapterClients(redisUrl);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  instrument(io, { auth: false, serverId: 'node-js', mode: 'development' });
  io.on('connection', () => {});
  const port = await freePort();
  await new Promise((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      io.disconnectSockets(true);
      await new Promise((resolve) => io.close(() => resolve()));
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

const admins = new Set();
function admin(url, auth) {
  const s = ioc(url + '/admin', { forceNew: true, reconnection: false, transports: ['websocket'], auth });
  admins.add(s);
  return s;
}

/** Resolves with the serverIds seen in server_stats, once every one of want has been seen. */
function statsFrom(socket, want) {
  const seen = new Set();
  return withTimeout(new Promise((resolve) => {
    socket.on('server_stats', (s) => {
      seen.add(s.serverId);
      if (want.every((id) => seen.has(id))) resolve([...seen]);
    });
  }), 10000, `server_stats from ${want}`);
}

describe('Admin UI protocol in a mixed Switchboard + Node cluster', () => {
  let c;
  let nodeSrv;
  before(async () => {
    c = await startCluster({
      balancer: null, nodes: 1,
      env: { ADMIN_UI_PASSWORD_HASH: bcrypt.hashSync(PASSWORD, 4), NODE_ID: 'sb-1' },
    });
    nodeSrv = await startInstrumentedNode(c.redis.url);
  });
  after(async () => {
    for (const s of admins) s.close();
    closeClients();
    await nodeSrv?.close();
    await c?.stop();
  });

  test('an admin socket on Switchboard sees both servers and the sockets of both; disconnect reaches the Node server', async () => {
    const sb = c.nodes[0];
    const userOnSb = await connect(sb.url, { user: 'alice', transports: ['websocket'] });
    const userOnNode = client(nodeSrv.url, { transports: ['websocket'] });
    await once(userOnNode, 'connect', 5000);

    const a = admin(sb.url, { username: 'admin', password: PASSWORD });
    const stats = statsFrom(a, ['sb-1', 'node-js']);
    const [all] = await once(a, 'all_sockets', 10000, { rejectOn: ['connect_error'] });
    const ids = all.map((s) => s.id);
    assert.ok(ids.includes(userOnSb.id), `all_sockets lacks the Switchboard socket: ${ids}`);
    assert.ok(ids.includes(userOnNode.id), `all_sockets lacks the Node server's socket: ${ids}`);
    const fromNode = all.find((s) => s.id === userOnNode.id);
    assert.equal(fromNode.transport, 'websocket', 'clientId and transport come from the Node socket\'s data._admin');
    await stats;

    const gone = once(userOnNode, 'disconnect', 10000);
    a.emit('_disconnect', '/', false, userOnNode.id);
    assert.equal((await gone)[0], 'io server disconnect');
  });

  test('an admin socket on the instrumented Node server sees the Switchboard node and its sockets too', async () => {
    const userOnSb = await connect(c.nodes[0].url, { user: 'bob', transports: ['websocket'] });
    const a = admin(nodeSrv.url, {});
    const stats = statsFrom(a, ['node-js', 'sb-1']);
    const [all] = await once(a, 'all_sockets', 10000, { rejectOn: ['connect_error'] });
    const ours = all.find((s) => s.id === userOnSb.id);
    assert.ok(ours, `the Node server's all_sockets lacks the Switchboard socket: ${all.map((s) => s.id)}`);
    assert.equal(ours.transport, 'websocket', 'transport from data._admin, as Node\'s instrument keeps it');
    assert.equal(ours.clientId, userOnSb.io.engine.id.slice(0, 12));
    assert.equal(ours.data.userId, 'bob', '_admin is not part of the data shown');
    assert.equal(ours.data._admin, undefined);
    assert.ok((await stats).includes('sb-1'));
  });

  test('wrong credentials are refused with the message the UI knows', async () => {
    const a = admin(c.nodes[0].url, { username: 'admin', password: 'nope' });
    const [err] = await once(a, 'connect_error', 5000, { rejectOn: ['connect'] });
    assert.equal(err.message, 'invalid credentials');
  });
});

