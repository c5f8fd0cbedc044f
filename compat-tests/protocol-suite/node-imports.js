// Switchboard's node-imports.js. The suite's own imports node-fetch, ws, chai and chai-string into globals; so does
// this one, with two additions (test-suite.js itself is unmodified):
//   - the suite talks to http://localhost:3000; the server under test runs on a free port, SUITE_URL, so URLs are
//     rewritten on their way to fetch and WebSocket;
//   - WebSockets are made with ws's allowSynchronousEvents: false. The suite awaits one 'message' event, then adds
//     the listener for the next; ws (8.5 in the suite's lock file, 8.21 here) emits every frame of one TCP read in
//     the same tick, so when two frames arrive together (a CONNECT reply and the "auth" event after it) the second
//     is lost and the test waits for a ping or times out. With Node's socket.io 4.8.4 this fails 3 of the 32 tests
//     on this machine; ws's option emits one message per microtask, which lets the suite's await run in between.
import fetch from "node-fetch";
import { WebSocket } from "ws";
import chai from "chai";
import chaiString from "chai-string";

chai.use(chaiString);

const target = new URL(process.env.SUITE_URL || "http://localhost:3000");
const rewrite = (url) => String(url).replace(/^(https?|wss?):\/\/localhost:3000/, (_, scheme) => `${scheme}://${target.host}`);

globalThis.fetch = (url, opts) => fetch(rewrite(url), opts);
globalThis.WebSocket = class extends WebSocket {
  constructor(url, protocols, options) {
    super(rewrite(url), protocols, { allowSynchronousEvents: false, ...options });
  }
};
globalThis.chai = chai;
