"use strict";
// Publishes what Node's @socket.io/redis-emitter 5.1 publishes for each
// case of the JSON file argv[2] ([{name, js}]: js is a function body run
// with `e`, an Emitter on the Redis at REDIS_URL with key PREFIX), one
// case after the other on one connection. Prints a JSON line per case
// ({name} or {name, error}), after one with the emitter's RESERVED_EVENTS.
// Run by wire_test.go, which subscribes to the prefix and compares the
// bytes with what the Go emitter publishes for the same calls.
const fs = require("fs");
const { createClient } = require("redis");
const { Emitter, RESERVED_EVENTS } = require("@socket.io/redis-emitter");

(async () => {
  const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const client = createClient({ url: process.env.REDIS_URL });
  client.on("error", (err) => {
    console.error("redis:", err);
    process.exit(2);
  });
  await client.connect();
  const e = new Emitter(client, { key: process.env.PREFIX });
  console.log(JSON.stringify({ reserved: [...RESERVED_EVENTS] }));
  for (const c of cases) {
    try {
      new Function("e", c.js)(e);
      console.log(JSON.stringify({ name: c.name }));
    } catch (err) {
      console.log(JSON.stringify({ name: c.name, error: String(err && err.message) }));
    }
  }
  await client.quit(); // after every publish above was answered
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
