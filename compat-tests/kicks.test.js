// Kicks that hold: a socket kicked for flooding loses its whole Engine.IO session (the old sid is unknown
// afterwards), and its user and IP are refused with connect_error rate_limited for RATE_KICK_COOLDOWN, doubling on a
// repeat kick. A bystander from another IP keeps getting its acks throughout.
import assert from 'node:assert/strict';
import { describe, test, standardHooks, serverFor, connect, connectError, ack, waitFor, sleep, token, assertAlive } from './helpers/index.js';
import { joinOk } from './helpers/room.js';
import { rawWs, httpRequest } from './helpers/raw.js';

standardHooks();

const COOLDOWN_MS = 1000;
const WS = { transports: ['websocket'] };
// Every client connects from 127.0.0.1 except the bystander, bound to another loopback address.
const BYSTANDER = { ...WS, localAddress: '127.0.0.3' };

describe('flood kicks (RATE_LIMIT=5, RATE_BURST=5, RATE_KICK_COOLDOWN=1s)', () => {
  const ref = serverFor({
    env: { RATE_LIMIT: '5', RATE_BURST: '5', RATE_KICK_COOLDOWN: '1s', HANDSHAKE_RATE_PER_IP: '0', MAX_CONNECTIONS_PER_IP: '0' },
  });

  /** A raw websocket client floods "/" until it is kicked; returns its sid and when the DISCONNECT arrived. */
  async function floodUntilKicked(user) {
    const raw = await rawWs(ref.srv.url, { token: token(user) });
    assert.ok(raw.frames.some((f) => typeof f === 'string' && f.startsWith('40{')), `${user} was not connected: ${JSON.stringify(raw.frames)}`);
    const { sid } = JSON.parse(raw.frames.find((f) => typeof f === 'string' && f.startsWith('0{')).slice(1));
    let kickedAt = 0;
    raw.ws.on('message', (d) => {
      if (!kickedAt && d.toString() === '41') kickedAt = Date.now();
    });
    for (let i = 0; i < 60; i++) raw.send(`42${i}${JSON.stringify(['presence', 'calm'])}`);
    await waitFor(() => raw.isClosed(), 5000, { message: () => `the flooder's transport stayed open; frames ${JSON.stringify(raw.frames.slice(-5))}` });
    const limited = raw.frames.filter((f) => typeof f === 'string' && /^43\d+\[\{"ok":false,"error":\{"code":"rate_limited"/.test(f)).length;
    assert.ok(raw.frames.includes('41'), `no DISCONNECT before the close: ${JSON.stringify(raw.frames.slice(-5))}`);
    assert.ok(limited >= 10, `expected at least 10 rate_limited acks before the kick, got ${limited}`);
    assert.ok(kickedAt > 0);
    return { sid, kickedAt };
  }

  async function assertRefused(user, opts = WS) {
    const err = await connectError(ref.srv.url, { ...opts, user });
    assert.equal(err.data?.code, 'rate_limited', `${user}: ${err.message} ${JSON.stringify(err.data)}`);
    assert.match(err.message, /^Too many events: try again in \d+s$/);
    return err;
  }

  async function assertAccepted(user, opts = WS) {
    const s = await connect(ref.srv.url, { ...opts, user });
    s.disconnect();
  }

  const untilMs = (t) => sleep(Math.max(0, t - Date.now()));

  test('a flood kick closes the session; the user and IP are refused for the cool-down, doubled on a repeat', async () => {
    // The bystander, from another IP, asks for presence four times a second (under RATE_LIMIT) throughout.
    const bystander = await connect(ref.srv.url, { ...BYSTANDER, user: 'bystander' });
    await joinOk(bystander, 'calm');
    let lost = null;
    bystander.on('disconnect', (r) => (lost = r));
    const answers = [];
    let stop = false;
    const pinger = (async () => {
      for (let i = 0; i < 200 && !stop; i++) {
        answers.push(await ack(bystander, 'presence', 'calm').catch((e) => ({ failed: e.message })));
        await sleep(250);
      }
    })();

    // First kick: the whole session is gone.
    const first = await floodUntilKicked('flooder');
    const poll = await httpRequest(`${ref.srv.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(first.sid)}`);
    assert.equal(poll.status, 400, `old sid: ${JSON.stringify(poll)}`);
    assert.match(poll.body, /Session ID unknown/);

    // At once: the same user, and another user from the same IP, are refused; another IP is not.
    const err = await assertRefused('flooder');
    assert.equal(err.message, 'Too many events: try again in 1s');
    await assertRefused('someone-else');
    await assertAccepted('newcomer', BYSTANDER);

    // After the cool-down both connect.
    await untilMs(first.kickedAt + COOLDOWN_MS + 200);
    await assertAccepted('flooder');
    await assertAccepted('someone-else');

    // Second kick: the cool-down doubles (2 s).
    const second = await floodUntilKicked('flooder');
    await untilMs(second.kickedAt + 1200);
    await assertRefused('flooder');
    await assertRefused('someone-else');
    await untilMs(second.kickedAt + 2 * COOLDOWN_MS + 200);
    await assertAccepted('flooder');

    stop = true;
    await pinger;
    assert.equal(lost, null, `the bystander was disconnected: ${lost}`);
    const bad = answers.filter((a) => a.ok !== true);
    assert.deepEqual(bad, [], 'the bystander missed acks');
    assert.ok(answers.length >= 10, `only ${answers.length} bystander acks`);

    // Every refusal was counted.
    const metrics = await (await fetch(`${ref.srv.url}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const m = metrics.match(/^switchboard_handshake_refusals_total\{reason="cooldown"\} (\d+)/m);
    assert.ok(m && Number(m[1]) >= 4, `cooldown refusals: ${m && m[0]}`);
    const kicks = metrics.match(/^switchboard_rate_limit_disconnects_total (\d+)/m);
    assert.equal(kicks && Number(kicks[1]), 2);
    await assertAlive(ref.srv);
  });
});
