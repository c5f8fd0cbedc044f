// Drives the official engine.io-client against the Go server (see TestNodeEngineIOClient).
// Usage: node node_client.cjs http://127.0.0.1:PORT
"use strict";
const { Socket } = require("engine.io-client");
const assert = require("node:assert/strict");

const url = process.argv[2];

function open(opts) {
  return new Promise((resolve, reject) => {
    const s = new Socket(url, { path: "/engine.io/", ...opts });
    s.once("open", () => resolve(s));
    s.once("error", reject);
  });
}

function next(s, event) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("timeout waiting for " + event)), 5000);
    s.once(event, (...args) => { clearTimeout(t); resolve(args); });
  });
}

async function echo(s, data) {
  const p = next(s, "message");
  s.send(data);
  const [got] = await p;
  assert.deepEqual(Buffer.isBuffer(data) ? Buffer.from(got) : got, data);
}

async function burst(s, n) {
  const got = [];
  const done = new Promise((resolve) => {
    const on = (m) => { got.push(m); if (got.length === n) { s.off("message", on); resolve(); } };
    s.on("message", on);
  });
  for (let i = 0; i < n; i++) s.send("m" + i);
  await done;
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => "m" + i));
}

async function exchange(s) {
  await echo(s, "hello ☃");
  await echo(s, Buffer.from([1, 2, 3, 255]));
  await burst(s, 50);
}

const scenarios = {
  async upgrade() {
    const s = await open({});
    assert.equal(s.transport.name, "polling");
    await exchange(s);
    if (s.transport.name !== "websocket") await next(s, "upgrade");
    assert.equal(s.transport.name, "websocket");
    await exchange(s);
    // Server-initiated close: the reply, then the close.
    const closed = next(s, "close");
    await echo(s, "bye");
    const [reason] = await closed;
    assert.equal(reason, "transport close");
  },
  async websocketOnly() {
    const s = await open({ transports: ["websocket"] });
    assert.equal(s.transport.name, "websocket");
    await exchange(s);
    await new Promise((r) => setTimeout(r, 700)); // several heartbeats
    assert.equal(s.readyState, "open");
    s.close();
  },
  async pollingOnly() {
    const s = await open({ transports: ["polling"] });
    await exchange(s);
    await new Promise((r) => setTimeout(r, 700)); // several heartbeats over polling
    assert.equal(s.readyState, "open");
    await exchange(s);
    const closed = next(s, "close");
    await echo(s, "bye");
    const [reason] = await closed;
    assert.equal(reason, "transport close");
  },
  async clientClosePolling() {
    const s = await open({ transports: ["polling"] });
    await echo(s, "x");
    s.close();
  },
};

(async () => {
  for (const [name, fn] of Object.entries(scenarios)) {
    await fn();
    console.log("ok " + name);
  }
  process.exit(0);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
