// Writes the seed corpora of the adapter's fuzz targets (testdata/fuzz/<Target>/seed-*) from what
// Node's cluster stack really publishes: a socket.io 4.8 server on @socket.io/redis-adapter 8.3, the
// @socket.io/redis-emitter 5.1, and a socket.io server on socket.io-adapter 2.5's
// ClusterAdapterWithHeartbeat encoding its messages as @socket.io/redis-streams-adapter 0.2/0.3
// writes them to the stream (its encode(), copied below: @msgpack/msgpack is not installed here,
// notepack.io writes the same bytes for these values). Redis is faked: every PUBLISH / XADD is
// recorded. A real socket.io-client socket is connected, so that fetchSockets answers, acks and
// handshakes are the real thing. Run from the repository root:
//
//	node adapter/testdata/fuzz_seeds.cjs
//
// It replaces the seed-* files (ids and timestamps differ from one run to the next).
"use strict";
const path = require("path");
const fs = require("fs");
const http = require("http");
const crypto = require("crypto");
const root = path.resolve(__dirname, "../..");
const need = (m) => require(path.join(root, "node_modules", m));
const { Server } = need("socket.io");
const { io: connect } = need("socket.io-client");
const { createAdapter } = need("@socket.io/redis-adapter");
const { Emitter } = need("@socket.io/redis-emitter");
const { ClusterAdapterWithHeartbeat, MessageType } = need("socket.io-adapter");
const msgpack = need("notepack.io");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms = 3000) {
  for (const end = Date.now() + ms; !cond(); ) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(10);
  }
}

// ---- a fake redis@4 client: what the redis adapter and the emitter call ----
function fakeRedis(log) {
  return {
    listeners: { psub: [], sub: [] },
    sSubscribe() {}, // marks a redis@4 client (redis-adapter's util.isRedisV4Client)
    pSubscribe(pattern, listener) { this.listeners.psub.push(listener); return Promise.resolve(); },
    subscribe(channels, listener) { this.listeners.sub.push(listener); return Promise.resolve(); },
    pUnsubscribe() { return Promise.resolve(); },
    unsubscribe() { return Promise.resolve(); },
    publish(channel, payload) { log.push({ channel, payload: Buffer.from(payload) }); return Promise.resolve(1); },
    sendCommand(args) { return Promise.resolve([args[2], "2"]); }, // PUBSUB NUMSUB: two servers
    on() { return this; },
    off() { return this; },
    removeListener() { return this; },
    listenerCount() { return 1; },
  };
}

// ---- @socket.io/redis-streams-adapter 0.2.3's encode (lib/adapter.ts, lib/util.ts) ----
function hasBinary(obj, toJSON) {
  if (!obj || typeof obj !== "object") return false;
  if (obj instanceof ArrayBuffer || ArrayBuffer.isView(obj)) return true;
  if (Array.isArray(obj)) {
    for (let i = 0, l = obj.length; i < l; i++) if (hasBinary(obj[i])) return true;
    return false;
  }
  for (const key in obj) if (Object.prototype.hasOwnProperty.call(obj, key) && hasBinary(obj[key])) return true;
  if (obj.toJSON && typeof obj.toJSON === "function" && !toJSON) return hasBinary(obj.toJSON(), true);
  return false;
}
function encodeEntry(message) {
  const raw = { uid: message.uid, nsp: message.nsp, type: message.type.toString() };
  if (message.data) {
    const mayContainBinary = [MessageType.BROADCAST, MessageType.FETCH_SOCKETS_RESPONSE, MessageType.SERVER_SIDE_EMIT,
      MessageType.SERVER_SIDE_EMIT_RESPONSE, MessageType.BROADCAST_ACK].includes(message.type);
    if (mayContainBinary && hasBinary(message.data)) raw.data = Buffer.from(msgpack.encode(message.data)).toString("base64");
    else raw.data = JSON.stringify(message.data);
  }
  return raw;
}
const stream = [];
class StreamsAdapter extends ClusterAdapterWithHeartbeat {
  constructor(nsp) {
    super(nsp, { heartbeatInterval: 60_000, heartbeatTimeout: 120_000 });
    this.init();
  }
  doPublish(message) {
    stream.push(encodeEntry(message));
    return Promise.resolve(`${Date.now()}-${stream.length}`);
  }
  doPublishResponse(requesterUid, response) {
    return this.doPublish(response);
  }
}

async function server(adapter) {
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter });
  io.on("connection", (socket) => {
    socket.data = { userId: "u1", name: "Ann" };
    socket.join(["room1", "room2"]);
    socket.on("go", (cb) => {
      socket.broadcast.emit("message", "from a socket"); // except: [socket.id]
      socket.to("room1").volatile.emit("typing", { userId: "u1" });
      cb();
    });
  });
  io.on("hi", (arg, cb) => cb({ pong: arg })); // serverSideEmit with ack from another node
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  const client = connect(`http://127.0.0.1:${httpServer.address().port}`, {
    auth: { token: "t0ken" }, query: { room: "lobby" }, transports: ["websocket"],
  });
  client.on("ack-me", (...args) => {
    const cb = args.pop();
    cb(args[0] === "bin" ? Buffer.from([9, 8, 7]) : { ok: true, got: args });
  });
  await new Promise((r) => client.on("connect", r));
  await until("rooms joined", () => io.of("/").adapter.rooms.has("room1"));
  return { io, client, close: () => { client.close(); io.close(); } };
}

// Every broadcast shape, on io (a Server) or an emitter-like operator.
function broadcasts(io) {
  io.emit("message", { id: "m1", roomId: "room1", text: "héllo <b>", ts: 1700000000123 });
  io.to("room1").emit("message", "hi", 1, -2, 2.5, true, false, null);
  io.to(["room1", "room2"]).except("room3").emit("multi");
  io.except(["a", "b"]).emit("all-but");
  io.volatile.emit("tick", 1);
  io.compress(false).emit("uncompressed", "x");
  io.emit("bin", Buffer.from([1, 2, 3]), { nested: new Uint8Array([4, 5]) });
  io.emit("time", new Date(1700000000123));
  io.emit("undef", undefined, [undefined, 1], { u: undefined });
  io.emit("deep", { a: { b: { c: [1, [2, [3, { d: "e" }]]] } } });
  io.emit("numbers", 2 ** 53 - 1, -(2 ** 31), 1e300, 0.1, 255, 65535, 4294967295);
  io.emit(7, "numeric event name");
  io.of("/chat").to("r").emit("in-chat", "x");
}

async function main() {
  // ---- redis adapter ----
  const log = [];
  const redis = fakeRedis(log);
  const a = await server(createAdapter(redis, redis));
  const io = a.io;
  broadcasts(io);
  await a.client.emitWithAck("go");
  io.timeout(1000).emit("ack-me", 1, () => {}); // BROADCAST (msgpack, on the request channel)
  io.to("room1").timeout(500).emit("ack-me", "bin", () => {});
  io.fetchSockets().catch(() => {});
  io.in("room1").except("room9").fetchSockets().catch(() => {});
  io.of("/").adapter.allRooms().catch(() => {});
  io.socketsJoin("joined");
  io.in("room1").socketsLeave(["room2", "x"]);
  io.in("nobody").disconnectSockets(true);
  io.except("room1").disconnectSockets();
  io.serverSideEmit("hello", 1, { a: [2] });
  io.serverSideEmit("hello-ack", "q", () => {});
  // Other nodes' requests: this server answers them on the response channel.
  const request = (v, binary) => {
    const b = binary ? Buffer.from(msgpack.encode(v)) : Buffer.from(JSON.stringify(v));
    log.push({ channel: "socket.io-request#/#", payload: b }); // as another Node server publishes it
    for (const l of redis.listeners.sub) l(b, Buffer.from("socket.io-request#/#"));
  };
  request({ uid: "other1", requestId: "rq0", type: 0, rooms: ["room1"] }); // SOCKETS (redis-adapter 7)
  request({ uid: "other1", requestId: "rq1", type: 1 }); // ALL_ROOMS
  request({ uid: "other1", requestId: "rq5", type: 5, opts: { rooms: [], except: [] } }); // REMOTE_FETCH
  request({ uid: "other1", requestId: "rq6", type: 6, data: ["hi", 42] }); // SERVER_SIDE_EMIT with ack
  request({ uid: "other1", requestId: "rq7", type: 7, packet: { type: 2, data: ["ack-me", 42], nsp: "/" },
    opts: { rooms: [], except: [], flags: { timeout: 1000 } } }, true); // BROADCAST with acks
  request({ uid: "other1", requestId: "rq8", type: 7, packet: { type: 2, data: ["ack-me", "bin"], nsp: "/" },
    opts: { rooms: ["room1"], except: [], flags: { timeout: 1000 } } }, true);
  const responses = () => log.filter((m) => m.channel.startsWith("socket.io-response#"));
  await until("the answers", () => responses().length >= 8);
  a.close();

  // ---- emitter ----
  const emitter = new Emitter(fakeRedis(log));
  broadcasts({
    emit: (...args) => emitter.emit(...args), to: (r) => emitter.to(r), except: (r) => emitter.except(r),
    get volatile() { return emitter.volatile; }, compress: (c) => emitter.compress(c), of: (n) => emitter.of(n),
  });
  emitter.of("/chat").to(["a", "b"]).except("c").volatile.compress(true).emit("x", Buffer.from("hi"));
  emitter.socketsJoin("r");
  emitter.in("room1").socketsLeave(["r"]);
  emitter.except("room2").disconnectSockets(true);
  emitter.serverSideEmit("hello", { a: 1 });

  // ---- streams (ClusterAdapterWithHeartbeat) ----
  const s = await server(StreamsAdapter);
  const adapter = s.io.of("/").adapter;
  const from = (type, data) => adapter.onMessage({ uid: "other2", nsp: "/", type, data }, "1700000000000-0");
  from(MessageType.INITIAL_HEARTBEAT); // another server (fetchSockets and acks wait for it): answered with a HEARTBEAT
  broadcasts(s.io);
  await s.client.emitWithAck("go");
  s.io.timeout(1000).emit("ack-me", 1, () => {});
  s.io.fetchSockets().catch(() => {});
  s.io.in("room1").except("room9").fetchSockets().catch(() => {});
  s.io.socketsJoin("joined");
  s.io.in("room1").socketsLeave(["room2", "x"]);
  s.io.in("nobody").disconnectSockets(true);
  s.io.serverSideEmit("hello", 1, { a: [2] }, Buffer.from([1]));
  s.io.serverSideEmit("hello-ack", "q", () => {});
  from(MessageType.FETCH_SOCKETS, { opts: { rooms: [], except: [] }, requestId: "f1" });
  from(MessageType.SERVER_SIDE_EMIT, { requestId: "s1", packet: ["hi", 42] });
  from(MessageType.BROADCAST, { requestId: "b1", packet: { type: 2, data: ["ack-me", 42] }, opts: { rooms: [], except: [], flags: { timeout: 1000 } } });
  from(MessageType.BROADCAST, { requestId: "b2", packet: { type: 2, data: ["ack-me", "bin"] }, opts: { rooms: ["room1"], except: [], flags: {} } });
  const answers = () => stream.filter((e) => ["8", "10", "11", "12"].includes(e.type));
  await until("the stream answers", () => answers().length >= 6);
  await sleep(50);
  s.close(); // ADAPTER_CLOSE
  await sleep(50);

  // ---- write the corpora ----
  const targets = { FuzzRedisBroadcast: [], FuzzRedisRequest: [], FuzzRedisResponse: [], FuzzStreamEntry: [] };
  for (const m of log) {
    const t = m.channel.startsWith("socket.io-request#") ? "FuzzRedisRequest"
      : m.channel.startsWith("socket.io-response#") ? "FuzzRedisResponse" : "FuzzRedisBroadcast";
    targets[t].push([goBytes(m.payload)]);
  }
  for (const e of stream) {
    targets.FuzzStreamEntry.push([e.uid, e.nsp, e.type, e.data === undefined ? "" : e.data].map(goString));
  }
  for (const [name, seeds] of Object.entries(targets)) {
    const dir = path.join(__dirname, "fuzz", name);
    fs.mkdirSync(dir, { recursive: true });
    for (const f of fs.readdirSync(dir)) if (f.startsWith("seed-")) fs.unlinkSync(path.join(dir, f));
    const seen = new Set();
    for (const args of seeds) {
      const body = "go test fuzz v1\n" + args.join("\n") + "\n";
      const id = crypto.createHash("sha256").update(body).digest("hex").slice(0, 16);
      if (seen.has(id)) continue;
      seen.add(id);
      fs.writeFileSync(path.join(dir, "seed-" + id), body);
    }
    console.log(`${name}: ${seen.size} seeds`);
  }
  process.exit(0);
}

// Go literals of a corpus file.
function goQuote(b) {
  let out = '"';
  for (const c of b) {
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += "\\x" + c.toString(16).padStart(2, "0");
  }
  return out + '"';
}
const goBytes = (b) => "[]byte(" + goQuote(b) + ")";
const goString = (s) => "string(" + goQuote(Buffer.from(s, "utf8")) + ")";

const watchdog = setTimeout(() => { console.error("fuzz_seeds: timed out"); process.exit(1); }, 30_000);
watchdog.unref();
main().catch((err) => { console.error(err); process.exit(1); });
