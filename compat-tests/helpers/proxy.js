// A TCP proxy (node:net) between a client and the server, so tests can cut the network without touching the server.
//   proxy.url / proxy.port       where clients connect
//   proxy.cut()                  destroys every current connection (clients see a transport close)
//   proxy.pause()                refuses new connections (stops listening) and cuts existing ones
//   proxy.resume()               listens again on the same port
//   proxy.dropDownstream(bool)   while true, bytes from the server to the client are silently discarded
//                                (upstream still flows: the server receives, its replies are lost)
//   proxy.connections            number of open client connections; proxy.accepted: total accepted
//   proxy.close()
import net from 'node:net';

const proxies = new Set();

/** Closes every proxy started in this process. */
export async function closeProxies() {
  await Promise.all([...proxies].map((p) => p.close()));
  proxies.clear();
}

export async function startProxy(targetPort, { host = '127.0.0.1' } = {}) {
  const pairs = new Set();
  let dropping = false;
  let listening = false;
  let server;

  const p = {
    port: 0,
    url: '',
    accepted: 0,
    upstreamBytes: 0,
    get connections() {
      return pairs.size;
    },
  };

  function onConnection(client) {
    p.accepted++;
    const upstream = net.connect(targetPort, host);
    const pair = { client, upstream };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const destroy = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d) => {
      p.upstreamBytes += d.length;
      if (!upstream.write(d)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    upstream.on('data', (d) => {
      if (dropping) return;
      if (!client.write(d)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
    client.on('error', destroy);
    upstream.on('error', destroy);
    client.on('close', destroy);
    upstream.on('close', destroy);
  }

  function listen(port) {
    return new Promise((resolve, reject) => {
      server = net.createServer(onConnection);
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        listening = true;
        resolve(server.address().port);
      });
    });
  }

  p.cut = () => {
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      pair.client.destroy();
      pair.upstream.destroy();
    }
  };

  p.pause = async () => {
    if (listening) {
      listening = false;
      const s = server;
      await new Promise((resolve) => {
        s.close(() => resolve());
        p.cut();
      });
    }
    p.cut();
  };

  p.resume = async () => {
    if (!listening) {
      // The port was ours a moment ago; retry briefly in case the kernel has not released it.
      for (let i = 0; ; i++) {
        try {
          await listen(p.port);
          break;
        } catch (err) {
          if (i >= 50) throw err;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  };

  p.dropDownstream = (on = true) => {
    dropping = on;
  };

  p.close = async () => {
    await p.pause();
  };

  proxies.add(p);
  p.port = await listen(0);
  p.url = `http://${host}:${p.port}`;
  return p;
}
