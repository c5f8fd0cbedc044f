// A Node socket.io 4.8 server with @socket.io/redis-adapter 8.3 on the Redis
// at REDIS_URL (key PREFIX), and socket.io-client 4.8 clients connected to it:
// alice (namespace "/", joined to "lobby" by the server), bob ("/") and dave
// ("/calc"), each on its own connection. Prints JSON lines on stdout:
//   {"ready":true,"sids":{name: socket id}}        once every client is connected
//   {"client":name,"event":e,"args":[...]}         every event a client receives
//   {"client":name,"event":"$disconnect","reason"} a client disconnected
//   {"server":"/","event":e,"args":[...]}          a server-side event on "/"
// Binary arguments are printed as {"$bin":"<hex>"}. Exits when stdin ends.
// Run by node_server_test.go.
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { io as connect } from "socket.io-client";

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

function plain(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString("hex") };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

const pub = createClient({ url: process.env.REDIS_URL });
const sub = pub.duplicate();
for (const c of [pub, sub]) c.on("error", (err) => { console.error("redis:", err); process.exit(2); });
await Promise.all([pub.connect(), sub.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, { adapter: createAdapter(pub, sub, { key: process.env.PREFIX }) });
io.of("/").on("connection", (socket) => socket.join(socket.handshake.auth.rooms || []));
io.of("/calc").on("connection", () => {});
io.of("/").on("reload", (...args) => out({ server: "/", event: "reload", args: plain(args) }));
await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
const { port } = httpServer.address();

const sids = {};
for (const [name, nsp, rooms] of [["alice", "/", ["lobby"]], ["bob", "/", []], ["dave", "/calc", []]]) {
  const s = connect(`http://127.0.0.1:${port}${nsp}`, { auth: { rooms }, transports: ["websocket"], reconnection: false, forceNew: true });
  s.onAny((event, ...args) => out({ client: name, event, args: plain(args) }));
  s.on("disconnect", (reason) => out({ client: name, event: "$disconnect", reason }));
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  sids[name] = s.id;
}
out({ ready: true, sids });

process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
