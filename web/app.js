// Switchboard demo page: sign in (development token or pasted JWT), connect, join/leave rooms, member lists,
// messages with acknowledgements, presence refresh, and a live panel of the server (GET /live.json every 2 s).
// Plain ES module, no build step.
//
// Safety: everything that comes from the network or from other users is put in the DOM as text (textContent /
// Node.append of strings); this file never assigns innerHTML.
import { Switchboard } from '/switchboard-client.js';

const ROOM_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
const AUTH_CODES = new Set(['token_missing', 'token_invalid', 'token_expired']);
const MAX_MESSAGES_PER_ROOM = 500;
// Send failures worth retrying as is (a refusal like payload_too_large would fail again).
const RETRYABLE = new Set(['timeout', 'rate_limited', 'internal', 'not_in_room', 'closed']);

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $('conn'),
  status: $('status'),
  transport: $('transport'),
  reconnectBtn: $('reconnect-btn'),
  signin: $('signin'),
  signinForm: $('signin-form'),
  name: $('name'),
  userId: $('user-id'),
  tokenBox: $('token-box'),
  token: $('token'),
  signinError: $('signin-error'),
  connectBtn: $('connect-btn'),
  workspace: $('workspace'),
  meAvatar: $('me-avatar'),
  meName: $('me-name'),
  meId: $('me-id'),
  signoutBtn: $('signout-btn'),
  joinForm: $('join-form'),
  roomInput: $('room-input'),
  joinBtn: $('join-btn'),
  joinError: $('join-error'),
  roomTabs: $('room-tabs'),
  noRooms: $('no-rooms'),
  roomTitle: $('room-title'),
  presenceBtn: $('presence-btn'),
  leaveBtn: $('leave-btn'),
  messagesWrap: $('messages-wrap'),
  membersWrap: $('members-wrap'),
  memberCount: $('member-count'),
  composer: $('composer'),
  input: $('message-input'),
  sendBtn: $('send-btn'),
  live: $('live'),
  liveDetails: $('live-details'),
  livePeek: $('live-peek'),
  liveSummary: $('live-summary'),
  liveNode: $('live-node'),
  liveConns: $('live-conns'),
  liveTransports: $('live-transports'),
  liveRooms: $('live-rooms'),
  liveIn: $('live-in'),
  liveOut: $('live-out'),
  liveNodes: $('live-nodes'),
  liveCluster: $('live-cluster'),
};

/** Small DOM builder. Strings among children become text nodes; attributes are set with setAttribute. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== undefined && c !== null && c !== false) e.append(c);
  return e;
}

// ------------------------------------------------------------------------------------------------------------
// State

let sb = null; // Switchboard client
let session = null; // { me: { userId, name }, token, exp, dev }
let everConnected = false;
const watchedEngines = new WeakSet();
/** roomId → { id, members: Map<userId, {name, connections?}>, seen: Set<id>, unread, draft, tab, badge, list, members* } */
const rooms = new Map();
let active = null;
/** clientId → { roomId, li, text } for this page's own messages (to match acks with broadcasts). */
const own = new Map();

// ------------------------------------------------------------------------------------------------------------
// Helpers

function slugify(name) {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .trim()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64);
}

function decodeJwt(token) {
  try {
    const part = token.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

function hue(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function avatar(userId, name, cls = 'avatar') {
  const a = el('span', { class: cls, 'aria-hidden': 'true' }, ([...(name || userId || '?').trim()][0] || '?').toUpperCase());
  a.style.setProperty('--hue', String(hue(userId || name || '')));
  return a;
}

function fmtTime(ts) {
  const d = new Date(ts);
  return Number.isFinite(d.getTime()) ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
}

function errText(err) {
  if (!err) return 'unknown error';
  return err.code ? `${err.code}${err.message && err.message !== err.code ? ` (${err.message})` : ''}` : err.message || String(err);
}

function showError(p, text) {
  p.textContent = text || '';
  p.hidden = !text;
}

function displayName(userId, name) {
  return name || userId;
}

// ------------------------------------------------------------------------------------------------------------
// Connection status

function setStatus(state, text) {
  ui.conn.dataset.state = state;
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  if (state !== 'connected') setTransport(null);
  // The client gives up on its own after a refusal or a server-side disconnect: offer a manual retry.
  ui.reconnectBtn.hidden = !(sb && (state === 'offline' || state === 'error'));
}

function setTransport(name) {
  ui.transport.textContent = name || '';
  ui.transport.dataset.transport = name || '';
  ui.transport.hidden = !name;
}

function watchEngine() {
  const engine = sb && sb.socket.io.engine;
  if (!engine) return;
  setTransport(engine.transport && engine.transport.name);
  if (watchedEngines.has(engine)) return;
  watchedEngines.add(engine);
  engine.on('upgrade', (transport) => {
    if (sb && sb.socket.io.engine === engine && sb.connected) setTransport(transport.name);
  });
}

// ------------------------------------------------------------------------------------------------------------
// Sign in / out

async function fetchDevToken(sub, name) {
  const q = new URLSearchParams({ sub });
  if (name) q.set('name', name);
  const res = await fetch(`/auth/dev-token?${q}`, { cache: 'no-store', headers: { accept: 'application/json' } });
  if (res.status === 404) return { production: true };
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok || !body || typeof body.token !== 'string') {
    throw new Error((body && body.error) || `token endpoint answered ${res.status}`);
  }
  return { token: body.token };
}

function updateUserIdPlaceholder() {
  ui.userId.placeholder = slugify(ui.name.value) || 'e.g. alice';
}

async function onSignIn(e) {
  e.preventDefault();
  showError(ui.signinError, '');
  const pasted = ui.token.value.trim();
  const name = ui.name.value.trim();
  let userId = ui.userId.value.trim() || slugify(name);

  let token;
  let dev = false;
  if (pasted) {
    const claims = decodeJwt(pasted);
    if (!claims || typeof claims.sub !== 'string' || !claims.sub) {
      showError(ui.signinError, 'That does not look like a JWT with a "sub" claim.');
      ui.token.focus();
      return;
    }
    token = pasted;
    userId = claims.sub;
  } else {
    if (!name) {
      showError(ui.signinError, 'Enter a display name.');
      ui.name.focus();
      return;
    }
    if (!userId) userId = `user-${Math.random().toString(36).slice(2, 8)}`;
    if (userId.length > 128) {
      showError(ui.signinError, 'The user id can be at most 128 characters.');
      ui.userId.focus();
      return;
    }
    ui.connectBtn.disabled = true;
    ui.connectBtn.textContent = 'Getting a token…';
    try {
      const r = await fetchDevToken(userId, name);
      if (r.production) {
        ui.tokenBox.open = true;
        showError(ui.signinError, 'This server runs in production mode and hands out no tokens: paste a JWT below.');
        ui.token.focus();
        return;
      }
      token = r.token;
      dev = true;
    } catch (err) {
      showError(ui.signinError, `Could not get a token: ${err.message}`);
      return;
    } finally {
      ui.connectBtn.disabled = false;
      ui.connectBtn.textContent = 'Connect';
    }
  }

  // Who the server will say we are: the token's claims (a pasted token's name claim wins over the form).
  const claims = decodeJwt(token) || {};
  const claimedName = typeof claims.name === 'string' ? claims.name : '';
  session = {
    me: { userId: typeof claims.sub === 'string' ? claims.sub : userId, name: pasted ? claimedName : claimedName || name },
    token,
    exp: typeof claims.exp === 'number' ? claims.exp : 0,
    dev,
  };
  connect();
}

/** Called by the client module on every (re)connection: refreshes a development token close to expiry. */
async function currentToken() {
  const s = session;
  if (!s) return undefined;
  if (s.dev && (s.refresh || (s.exp && s.exp * 1000 - Date.now() < 5 * 60_000))) {
    s.refresh = false;
    try {
      const r = await fetchDevToken(s.me.userId, s.me.name);
      if (r.token) {
        s.token = r.token;
        s.exp = (decodeJwt(r.token) || {}).exp || 0;
      }
    } catch {
      /* keep the old one; the server will say if it is expired */
    }
  }
  return s.token;
}

function connect() {
  const { me } = session;
  ui.meName.textContent = displayName(me.userId, me.name);
  ui.meId.textContent = `@${me.userId}`;
  const meAvatar = avatar(me.userId, me.name);
  meAvatar.id = 'me-avatar';
  ui.meAvatar.replaceWith(meAvatar);
  ui.meAvatar = meAvatar;
  ui.signin.hidden = true;
  ui.workspace.hidden = false;
  startLive();
  everConnected = false;
  setStatus('connecting', 'Connecting…');

  sb = new Switchboard(location.origin, { token: currentToken, ackTimeout: 5000, retries: 3 });
  const client = sb;
  const on = (event, fn) => client.on(event, (...args) => sb === client && fn(...args));

  on('connect', () => {
    attempt = 0;
    const recovered = client.socket.recovered;
    setStatus('connected', everConnected ? (recovered ? 'Connected (session recovered)' : 'Connected') : 'Connected');
    watchEngine();
    if (everConnected && !recovered) {
      // The server lost our session: the client module re-joins our rooms; refresh their member lists.
      for (const roomId of rooms.keys()) refreshPresence(roomId, { quiet: true });
    }
    if (!everConnected) ui.roomInput.focus();
    everConnected = true;
    session.authRetried = false;
    updateRoomControls();
  });
  on('disconnect', (reason) => {
    if (reason === 'io server disconnect') setStatus('offline', 'Disconnected by the server');
    else setStatus('reconnecting', `Connection lost (${reason}), reconnecting…`);
  });
  let attempt = 0;
  on('reconnect_attempt', (n) => {
    attempt = n;
    setStatus('reconnecting', `Reconnecting (attempt ${n})…`);
  });
  on('connect_error', (err) => {
    const code = err && err.data && err.data.code;
    if (AUTH_CODES.has(code) && session.dev && !session.authRetried) {
      // A development server that restarted has a new secret: get a fresh token once and try again.
      session.authRetried = true;
      session.refresh = true;
      setStatus('reconnecting', 'Token refused, getting a new one…');
      client.socket.connect();
      return;
    }
    if (AUTH_CODES.has(code)) {
      signOut(`The server refused the token: ${err.message}${code ? ` (${code})` : ''}.`);
      return;
    }
    if (!client.socket.active) {
      // Refused by the server (no automatic retry), e.g. too many connections.
      setStatus('error', `Refused: ${err.message}${code ? ` (${code})` : ''}`);
      return;
    }
    setStatus('reconnecting', attempt ? `Reconnecting (attempt ${attempt}): ${err.message}` : `Cannot connect (${err.message}), retrying…`);
  });
  on('message', onMessage);
  on('user-joined', (ev) => onMembership(ev, true));
  on('user-left', (ev) => onMembership(ev, false));
  on('rejoin_error', (err, roomId) => {
    const room = rooms.get(roomId);
    if (room) systemLine(room, `Could not re-join after reconnecting: ${errText(err)}`, 'error');
  });
}

function signOut(message) {
  const client = sb;
  sb = null;
  if (client) client.close();
  session = null;
  for (const roomId of [...rooms.keys()]) removeRoom(roomId);
  own.clear();
  stopLive();
  setStatus('offline', 'Not connected');
  ui.workspace.hidden = true;
  ui.signin.hidden = false;
  showError(ui.signinError, message || '');
  ui.name.focus();
}

// ------------------------------------------------------------------------------------------------------------
// Rooms

function createRoom(roomId, members) {
  const room = {
    id: roomId,
    members: new Map(),
    seen: new Set(),
    unread: 0,
    draft: '',
  };
  room.badge = el('span', { class: 'badge', 'data-testid': 'unread', hidden: true });
  room.tabBtn = el(
    'button',
    { type: 'button', class: 'room-tab', 'data-testid': 'room-tab', 'data-room': roomId, onclick: () => selectRoom(roomId) },
    el('span', { class: 'hash', 'aria-hidden': 'true' }, '#'),
    el('span', { class: 'room-name' }, roomId),
    room.badge,
  );
  room.tab = el('li', {}, room.tabBtn);
  room.list = el('ol', {
    class: 'messages',
    'data-testid': 'message-list',
    'data-room': roomId,
    role: 'log',
    'aria-live': 'polite',
    'aria-relevant': 'additions',
    'aria-label': `Messages in ${roomId}`,
    tabindex: '0',
    hidden: true,
  });
  room.emptyNote = el('li', { class: 'empty', 'data-testid': 'no-messages' }, 'No messages yet. Say hello!');
  room.list.append(room.emptyNote);
  room.memberList = el('ul', { class: 'member-list', 'data-testid': 'member-list', 'data-room': roomId, hidden: true });
  rooms.set(roomId, room);
  ui.roomTabs.append(room.tab);
  ui.messagesWrap.append(room.list);
  ui.membersWrap.append(room.memberList);
  setMembers(room, members);
  return room;
}

function removeRoom(roomId) {
  const room = rooms.get(roomId);
  if (!room) return;
  rooms.delete(roomId);
  room.tab.remove();
  room.list.remove();
  room.memberList.remove();
  for (const [cid, m] of own) if (m.roomId === roomId) own.delete(cid);
  if (active === roomId) {
    active = null;
    const next = rooms.keys().next();
    selectRoom(next.done ? null : next.value);
  }
  updateRoomControls();
}

function selectRoom(roomId) {
  const prev = active && rooms.get(active);
  if (prev) prev.draft = ui.input.value;
  active = roomId;
  for (const r of rooms.values()) {
    const on = r.id === roomId;
    r.list.hidden = !on;
    r.memberList.hidden = !on;
    if (on) r.tabBtn.setAttribute('aria-current', 'true');
    else r.tabBtn.removeAttribute('aria-current');
  }
  const room = roomId && rooms.get(roomId);
  if (room) {
    room.unread = 0;
    renderBadge(room);
    ui.input.value = room.draft;
    autosize();
    scrollToEnd(room, true);
  } else {
    ui.input.value = '';
  }
  updateRoomControls();
}

function updateRoomControls() {
  const room = active && rooms.get(active);
  ui.roomTitle.textContent = room ? `#${room.id}` : 'No room selected';
  ui.presenceBtn.disabled = !room;
  ui.leaveBtn.disabled = !room;
  ui.input.disabled = !room;
  ui.sendBtn.disabled = !room;
  ui.input.placeholder = room ? `Message #${room.id}` : 'Join a room to chat';
  ui.noRooms.hidden = rooms.size > 0;
  ui.memberCount.textContent = room ? String(room.members.size) : '';
  if (!room) ui.membersWrap.dataset.empty = 'true';
  else delete ui.membersWrap.dataset.empty;
}

function renderBadge(room) {
  room.badge.textContent = room.unread > 99 ? '99+' : String(room.unread);
  room.badge.hidden = room.unread === 0;
  room.tabBtn.setAttribute('aria-label', room.unread ? `${room.id}, ${room.unread} unread` : room.id);
}

async function onJoin(e) {
  e.preventDefault();
  showError(ui.joinError, '');
  const roomId = ui.roomInput.value.trim();
  if (!ROOM_RE.test(roomId)) {
    showError(ui.joinError, 'Room ids are 1-128 characters of A-Z a-z 0-9 _ . : -');
    ui.roomInput.focus();
    return;
  }
  if (rooms.has(roomId)) {
    selectRoom(roomId);
    ui.input.focus();
    return;
  }
  const client = sb;
  ui.joinBtn.disabled = true;
  try {
    const ack = await client.join(roomId);
    if (sb !== client) return;
    const room = rooms.get(ack.room || roomId) || createRoom(ack.room || roomId, ack.members);
    systemLine(room, `You joined #${room.id}`);
    selectRoom(room.id);
    ui.roomInput.value = '';
    ui.input.focus();
  } catch (err) {
    if (sb === client) showError(ui.joinError, `Could not join ${roomId}: ${errText(err)}`);
  } finally {
    ui.joinBtn.disabled = false;
  }
}

async function onLeave() {
  const roomId = active;
  if (!roomId || !sb) return;
  const client = sb;
  ui.leaveBtn.disabled = true;
  try {
    await client.leave(roomId);
    if (sb === client) removeRoom(roomId);
  } catch (err) {
    const room = rooms.get(roomId);
    if (room) systemLine(room, `Could not leave: ${errText(err)}`, 'error');
  } finally {
    updateRoomControls();
  }
}

async function refreshPresence(roomId, { quiet = false } = {}) {
  const room = rooms.get(roomId);
  if (!room || !sb) return;
  const client = sb;
  if (!quiet) ui.presenceBtn.disabled = true;
  try {
    const ack = await client.presence(roomId);
    if (sb === client && rooms.get(roomId) === room) setMembers(room, ack.members);
  } catch (err) {
    if (rooms.get(roomId) === room) systemLine(room, `Could not refresh members: ${errText(err)}`, 'error');
  } finally {
    updateRoomControls();
  }
}

// ------------------------------------------------------------------------------------------------------------
// Members

function setMembers(room, members) {
  room.members.clear();
  for (const m of Array.isArray(members) ? members : []) {
    if (m && typeof m.userId === 'string') {
      room.members.set(m.userId, { name: typeof m.name === 'string' ? m.name : '', connections: m.connections });
    }
  }
  renderMembers(room);
}

function renderMembers(room) {
  const me = session && session.me.userId;
  const sorted = [...room.members.entries()].sort(([ia, a], [ib, b]) => {
    if (ia === me) return -1;
    if (ib === me) return 1;
    return displayName(ia, a.name).localeCompare(displayName(ib, b.name));
  });
  const items = sorted.map(([userId, m]) =>
    el(
      'li',
      { class: 'member', 'data-testid': 'member', 'data-user-id': userId, title: `@${userId}` },
      avatar(userId, m.name, 'avatar small'),
      el('span', { class: 'member-name' }, displayName(userId, m.name)),
      userId === me ? el('span', { class: 'you' }, '(you)') : null,
      typeof m.connections === 'number' && m.connections > 1
        ? el('span', { class: 'conns', title: 'open connections' }, `×${m.connections}`)
        : null,
    ),
  );
  room.memberList.replaceChildren(...items);
  if (room.id === active) ui.memberCount.textContent = String(room.members.size);
}

function onMembership(ev, joined) {
  if (!ev || typeof ev !== 'object') return;
  const room = rooms.get(ev.roomId);
  if (!room || typeof ev.userId !== 'string') return;
  const who = displayName(ev.userId, ev.name);
  if (joined) {
    room.members.set(ev.userId, { name: typeof ev.name === 'string' ? ev.name : '' });
    systemLine(room, `${who} joined`);
  } else {
    room.members.delete(ev.userId);
    systemLine(room, `${who} left`);
  }
  renderMembers(room);
}

// ------------------------------------------------------------------------------------------------------------
// Messages

function nearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

function scrollToEnd(room, force) {
  if (force || room.stick) room.list.scrollTop = room.list.scrollHeight;
}

function appendItem(room, li, { count = false } = {}) {
  room.stick = room.list.hidden || nearBottom(room.list);
  room.emptyNote.remove();
  room.list.append(li);
  // Keep the list bounded.
  while (room.list.childElementCount > MAX_MESSAGES_PER_ROOM) room.list.firstElementChild.remove();
  scrollToEnd(room);
  if (count && room.id !== active) {
    room.unread++;
    renderBadge(room);
  }
}

function systemLine(room, text, kind = 'info') {
  appendItem(room, el('li', { class: `system ${kind}`, 'data-testid': 'system-message' }, text));
}

function messageItem({ userId, name, text, ts, id, clientId, mine, state }) {
  const meta = el('span', { class: 'msg-meta', 'data-testid': 'message-meta' });
  const li = el(
    'li',
    {
      class: `msg${mine ? ' mine' : ''}`,
      'data-testid': 'message',
      'data-user-id': userId,
      'data-message-id': id,
      'data-client-id': clientId,
      'data-state': state,
    },
    avatar(userId, name, 'avatar small'),
    el(
      'div',
      { class: 'bubble' },
      el(
        'div',
        { class: 'msg-head' },
        el('span', { class: 'msg-author', 'data-testid': 'message-author' }, mine ? `${displayName(userId, name)} (you)` : displayName(userId, name)),
        el('time', { class: 'msg-time', datetime: ts ? new Date(ts).toISOString() : null, title: ts ? new Date(ts).toLocaleString() : null }, ts ? fmtTime(ts) : ''),
      ),
      el('p', { class: 'msg-text', 'data-testid': 'message-text' }, text),
      meta,
    ),
  );
  li.meta = meta;
  li.timeEl = li.querySelector('time');
  return li;
}

function setMeta(li, state, text, action) {
  li.dataset.state = state;
  li.meta.replaceChildren(text);
  if (action) li.meta.append(' ', action);
}

function onMessage(msg) {
  if (!msg || typeof msg !== 'object' || typeof msg.roomId !== 'string') return;
  const room = rooms.get(msg.roomId);
  if (!room) return;
  if (msg.id !== undefined && room.seen.has(String(msg.id))) return;
  if (msg.id !== undefined) room.seen.add(String(msg.id));
  const mine = session && msg.userId === session.me.userId;
  if (mine && msg.clientId && own.has(msg.clientId)) {
    markSent(msg.clientId, msg);
    return;
  }
  const li = messageItem({
    userId: String(msg.userId ?? ''),
    name: typeof msg.name === 'string' ? msg.name : '',
    text: typeof msg.text === 'string' ? msg.text : String(msg.text ?? ''),
    ts: msg.ts,
    id: msg.id,
    clientId: msg.clientId,
    mine,
    state: 'received',
  });
  if (mine) setMeta(li, 'sent', `id ${msg.id}`); // sent from another tab of this user
  appendItem(room, li, { count: true });
}

function markSent(clientId, ack) {
  const m = own.get(clientId);
  if (!m || m.li.dataset.state === 'sent') return;
  const room = rooms.get(m.roomId);
  if (room && ack.id !== undefined) room.seen.add(String(ack.id));
  m.li.dataset.messageId = String(ack.id);
  if (ack.ts) {
    m.li.timeEl.textContent = fmtTime(ack.ts);
    m.li.timeEl.setAttribute('datetime', new Date(ack.ts).toISOString());
  }
  setMeta(m.li, 'sent', `✓ id ${ack.id}`);
  m.li.meta.title = 'Acknowledged by the server';
}

async function deliver(clientId) {
  const m = own.get(clientId);
  if (!m || !sb) return;
  const client = sb;
  setMeta(m.li, 'pending', 'sending…');
  try {
    const ack = await client.send(m.roomId, m.text, clientId);
    if (sb === client) markSent(clientId, ack);
  } catch (err) {
    if (sb !== client || !own.has(clientId)) return;
    const retry = RETRYABLE.has(err.code)
      ? el('button', { type: 'button', class: 'link', 'data-testid': 'retry', onclick: () => deliver(clientId) }, 'Retry')
      : null;
    setMeta(m.li, 'failed', `✗ not sent: ${err.code || err.message}`, retry);
    m.li.dataset.error = err.code || 'error';
    m.li.meta.title = err.message || '';
  }
}

function newClientId() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function onSend(e) {
  e.preventDefault();
  const room = active && rooms.get(active);
  const text = ui.input.value;
  if (!room || !sb || text.trim() === '') return;
  const clientId = newClientId();
  const li = messageItem({
    userId: session.me.userId,
    name: session.me.name,
    text,
    ts: Date.now(),
    clientId,
    mine: true,
    state: 'pending',
  });
  own.set(clientId, { roomId: room.id, li, text });
  appendItem(room, li);
  scrollToEnd(room, true);
  ui.input.value = '';
  room.draft = '';
  autosize();
  deliver(clientId);
}

function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 160)}px`;
}

// ------------------------------------------------------------------------------------------------------------
// Live panel: GET /live.json (server/live.go) every 2 s while signed in and the page is visible. Only the summary
// line is a live region (announced politely, and only when the counts it names change), not every number.

const LIVE_EVERY = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const live = { gen: 0, timer: null, running: false, summary: '' };

function startLive() {
  if (live.running) return;
  live.running = true;
  pollLive(++live.gen);
}

function stopLive() {
  live.running = false;
  live.gen++;
  clearTimeout(live.timer);
}

async function pollLive(gen) {
  if (gen !== live.gen) return;
  if (!document.hidden) {
    try {
      const res = await fetch('/live.json', {
        cache: 'no-store',
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(2 * LIVE_EVERY),
      });
      if (gen !== live.gen) return;
      if (res.status === 401 || res.status === 404) {
        // Production server with METRICS_TOKEN (the page has no bearer) or with /live.json on METRICS_ADDR only.
        await res.arrayBuffer().catch(() => {});
        liveUnavailable(res.status === 401 ? 'this server wants its METRICS_TOKEN for /live.json' : 'not served on this address');
        return; // stop asking
      }
      if (!res.ok) throw new Error(`/live.json answered ${res.status}`);
      renderLive(await res.json());
    } catch {
      if (gen !== live.gen) return;
      ui.live.dataset.state = 'error';
      setLiveSummary('Live stats unavailable: the server does not answer. Retrying…');
      ui.livePeek.textContent = 'offline';
    }
  }
  live.timer = setTimeout(() => pollLive(gen), LIVE_EVERY);
}

function liveUnavailable(why) {
  live.running = false;
  ui.live.dataset.state = 'unavailable';
  setLiveSummary(`Live stats unavailable: ${why}.`);
  ui.livePeek.textContent = '';
}

function setLiveSummary(text) {
  if (text === live.summary) return; // unchanged: nothing to announce
  live.summary = text;
  ui.liveSummary.textContent = text;
}

const count = (v) => (Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function renderLive(v) {
  if (!v || typeof v !== 'object') throw new Error('not a live object');
  const conns = v.connections || {};
  const total = count(conns.total);
  const rooms = count(v.rooms);
  const cluster = v.cluster || {};
  const nodes = Array.isArray(cluster.nodes) ? cluster.nodes.filter((n) => typeof n === 'string') : [];
  const node = typeof v.node === 'string' ? v.node : '';
  const ev = v.eventsPerSecond || {};

  ui.live.dataset.state = 'ok';
  ui.liveNode.textContent = node;
  ui.liveConns.textContent = String(total);
  ui.liveConns.dataset.value = String(total);
  ui.liveTransports.textContent = `websocket ${count(conns.websocket)} · polling ${count(conns.polling)}`;
  ui.liveRooms.textContent = String(rooms);
  ui.liveRooms.dataset.value = String(rooms);
  const rateIn = renderRate(ui.liveIn, ev.in);
  renderRate(ui.liveOut, ev.out);

  ui.liveNodes.replaceChildren(
    ...nodes.map((n) => el('li', { 'data-node': n }, n, n === node ? el('span', { class: 'live-sub' }, ' (this one)') : null)),
  );
  const servers = count(cluster.servers);
  let clusterText = v.adapter === 'memory' || !v.adapter ? 'memory adapter: one node' : `${v.adapter}: ${plural(servers, 'server')}`;
  if (cluster.stale) clusterText += ' (last known: Redis did not answer)';
  ui.liveCluster.textContent = clusterText;
  ui.liveCluster.dataset.stale = cluster.stale ? 'true' : 'false';

  setLiveSummary(`${plural(total, 'connection')}, ${plural(rooms, 'room')}, ${plural(Math.max(nodes.length, 1), 'node')} (${node}).`);
  ui.livePeek.textContent = `${plural(total, 'conn')} · ${rateIn}/s in`;
}

/** Fills a rate cell: the last second's count, a bar sparkline of the 10 s (hidden from assistive technology, which
 *  gets the numbers as text instead) and the total. Returns the last second's count. */
function renderRate(dd, series) {
  const vals = (Array.isArray(series) ? series : []).slice(-10).map(count);
  const now = vals.length ? vals[vals.length - 1] : 0;
  const total = vals.reduce((a, b) => a + b, 0);
  dd.dataset.now = String(now);
  dd.dataset.total = String(total);
  dd.dataset.series = vals.join(',');
  dd.replaceChildren(
    el('span', { class: 'live-now' }, el('b', {}, String(now)), '/s'),
    sparkline(vals),
    el('span', { class: 'live-sub' }, `${total} in ${vals.length} s`),
    el('span', { class: 'visually-hidden' }, `, per second, oldest first: ${vals.join(', ') || 'none yet'}`),
  );
  return now;
}

function sparkline(vals) {
  const W = 70;
  const H = 18;
  const slot = W / 10;
  const max = Math.max(1, ...vals);
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('width', String(W));
  svg.setAttribute('height', String(H));
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const offset = 10 - vals.length; // right-aligned: the newest second is the last bar
  vals.forEach((n, i) => {
    const h = n ? Math.max(2, (n / max) * H) : 1;
    const r = document.createElementNS(SVG_NS, 'rect');
    r.setAttribute('x', String((offset + i) * slot + 0.5));
    r.setAttribute('y', String(H - h));
    r.setAttribute('width', String(slot - 1.5));
    r.setAttribute('height', String(h));
    r.setAttribute('class', n ? 'bar' : 'bar zero');
    svg.append(r);
  });
  return svg;
}

// ------------------------------------------------------------------------------------------------------------
// Wiring

ui.name.addEventListener('input', updateUserIdPlaceholder);
ui.signinForm.addEventListener('submit', onSignIn);
ui.signoutBtn.addEventListener('click', () => signOut());
ui.reconnectBtn.addEventListener('click', () => {
  if (!sb) return;
  setStatus('connecting', 'Connecting…');
  sb.socket.connect();
});
ui.joinForm.addEventListener('submit', onJoin);
ui.leaveBtn.addEventListener('click', onLeave);
ui.presenceBtn.addEventListener('click', () => active && refreshPresence(active));
ui.composer.addEventListener('submit', onSend);
ui.input.addEventListener('input', autosize);
ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && live.running) {
    clearTimeout(live.timer);
    pollLive(++live.gen); // at once on coming back (a request in flight is dropped)
  }
});
// Narrow screens: the panel starts collapsed so that the chat stays on top; its summary opens it.
if (window.matchMedia('(max-width: 760px)').matches) ui.liveDetails.open = false;
updateUserIdPlaceholder();
updateRoomControls();
setStatus('offline', 'Not connected');
ui.name.focus();
