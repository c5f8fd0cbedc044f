// Raw Engine.IO v4 / Socket.IO v5 clients (no socket.io-client) for malformed-input tests.
import http from 'node:http';
import WebSocket from 'ws';
import { waitFor } from './wait.js';

const open = new Set();

/** Terminates every raw WebSocket opened by rawWs (call in afterEach). */
export function closeRaw() {
  for (const ws of open) ws.terminate();
  open.clear();
}

/**
 * Opens a raw WebSocket session: waits for the Engine.IO open packet, then (connect !== false) sends the
 * Socket.IO CONNECT for namespace "/" with auth {token} and waits for the CONNECT reply.
 * Returns { ws, frames, send, closed, isClosed(), waitFrame(pred, ms), close() }. Answers pings unless pong: false.
 */
export async function rawWs(url, { token, path = '/socket.io/', connect = true, nsp = '/', pong = true } = {}) {
  const wsUrl = `${url.replace(/^http/, 'ws')}${path}?EIO=4&transport=websocket`;
  const ws = new WebSocket(wsUrl, { handshakeTimeout: 5000 });
  open.add(ws);
  const frames = [];
  let closeInfo = null;
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      open.delete(ws);
      resolve(closeInfo);
    });
  });
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    const f = isBinary ? data : data.toString();
    frames.push(f);
    if (f === '2' && pong) ws.send('3');
  });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('raw websocket did not open')), 5000);
    ws.once('open', () => { clearTimeout(t); resolve(); });
    ws.once('error', (e) => { clearTimeout(t); reject(e); });
  });
  const r = {
    ws,
    frames,
    closed,
    isClosed: () => closeInfo !== null,
    closeInfo: () => closeInfo,
    send: (d, opts) => ws.send(d, opts),
    waitFrame: (pred, ms = 5000) => waitFor(() => frames.find((f) => typeof f === 'string' && pred(f)), ms, { message: 'frame not received' }),
    close: () => ws.terminate(),
  };
  await r.waitFrame((f) => f.startsWith('0{'));
  if (connect) {
    const prefix = nsp === '/' ? '' : `${nsp},`;
    ws.send(`40${prefix}${JSON.stringify(token === undefined ? {} : { token })}`);
    await r.waitFrame((f) => f.startsWith(`40${prefix}`) || f.startsWith(`44${prefix}`));
  }
  return r;
}

/** One HTTP request with a bounded time; resolves { status, body } or { error }. */
export function httpRequest(url, { method = 'GET', headers = {}, body, chunks, chunkDelay = 0, timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const u = new URL(url);
    let done = false;
    const finish = (v) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        resolve(v);
      }
    };
    const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname + u.search, method, headers, agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => finish({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
      res.on('error', (error) => finish({ error, status: res.statusCode }));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish({ error: new Error('timeout'), timeout: true });
    }, timeoutMs);
    req.on('error', (error) => finish({ error }));
    (async () => {
      try {
        if (chunks) {
          for (const c of chunks) {
            if (done || req.destroyed) break;
            req.write(c);
            if (chunkDelay) await new Promise((r) => setTimeout(r, chunkDelay));
          }
          req.end();
        } else {
          req.end(body);
        }
      } catch { /* connection dropped by the server */ }
    })();
  });
}

/**
 * Opens a raw long-polling session and (connect !== false) joins namespace "/" with auth {token}.
 * Returns { sid, base, get(ms), post(body) }.
 */
export async function rawPolling(url, { token, path = '/socket.io/', connect = true } = {}) {
  const hs = await httpRequest(`${url}${path}?EIO=4&transport=polling`);
  if (hs.status !== 200) throw new Error(`polling handshake: ${hs.status} ${hs.body}`);
  const m = hs.body.match(/^0(\{.*\})/);
  if (!m) throw new Error(`polling handshake: unexpected body ${open.body}`);
  const { sid } = JSON.parse(m[1]);
  const base = `${url}${path}?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
  const r = {
    sid,
    base,
    get: (timeoutMs = 5000) => httpRequest(base, { timeoutMs }),
    post: (body, headers = {}) => httpRequest(base, { method: 'POST', body, headers: { 'Content-Type': 'text/plain;charset=UTF-8', ...headers } }),
  };
  if (connect) {
    const p = await r.post(`40${JSON.stringify({ token })}`);
    if (p.status !== 200) throw new Error(`polling connect POST: ${p.status} ${p.body}`);
    const g = await r.get();
    if (!/(^|\x1e)40\{/.test(g.body || '')) throw new Error(`polling connect: unexpected ${JSON.stringify(g)}`);
  }
  return r;
}
