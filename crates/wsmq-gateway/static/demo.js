// demo.js: the wsmq chat demo (/demo): sign-in, direct messages with delivered marks, rooms,
// connection state and node failover, all on /client/wsmq.js. Where WebSocket upgrades are
// blocked the client falls back to Server-Sent Events: the page then receives and acks, says
// "SSE", and cannot send (publishing needs the WebSocket).
//
// Wire format of the chat, inside wsmq message bodies (JSON strings):
// - direct message, to the recipient's own queue: {"t":"dm","id","from","text","at"}
// - receipt, to the sender's own queue once the DM was acked: {"t":"receipt","id","from"}
// - room message, on channel room-NAME: {"t":"room","id","from","text","at"}
// Anything else arriving in your queue (say `wsmq-cli send`) shows in the "inbox" conversation.

import { WsmqClient } from '/client/wsmq.js';

const $ = (id) => document.getElementById(id);

/** WebSocket URLs to use, in order: `?nodes=ws://a/ws,ws://b/ws`, else this page's node. */
function nodeUrls() {
  const given = new URLSearchParams(location.search).get('nodes');
  if (given) return given.split(',').map((u) => u.trim()).filter(Boolean);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return [`${scheme}//${location.host}/ws`];
}

/** Where tokens come from: this page's node first, then the other nodes. */
function tokenUrls() {
  const urls = [new URL('/demo/token', location.href).href];
  for (const ws of nodeUrls()) {
    try {
      const u = new URL(ws);
      u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
      u.pathname = '/demo/token';
      u.search = '';
      if (!urls.includes(u.href)) urls.push(u.href);
    } catch {
      // Not a URL: the client will report it when it tries to connect.
    }
  }
  return urls;
}

async function fetchToken(user) {
  let lastError = new Error('no node answered');
  for (const url of tokenUrls()) {
    try {
      const response = await fetch(url, {
        method: 'POST',
        body: new URLSearchParams({ user }),
        signal: AbortSignal.timeout(5000),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.reason || `HTTP ${response.status}`);
      return body;
    } catch (err) {
      lastError = err;
      if (err.message && !/fetch|abort|network|timed? ?out/i.test(err.message)) throw err;
    }
  }
  throw lastError;
}

const newId = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 10);

// ---- state ------------------------------------------------------------------------------

const app = {
  me: null, // user name
  queueTemplate: '{user}',
  userPrefix: '', // what every user name starts with on this node (--demo-secret: 'demo-')
  client: null,
  convs: new Map(), // "dm:bob" | "room:room-x" | "inbox" → {key, title, kind, messages: [], unread, sub?}
  current: null,
  seen: new Set(), // ids of chat messages shown (queues are at-least-once)
  mine: new Map(), // DM id → message object, for receipts
};

const queueOf = (user) => app.queueTemplate.split('{user}').join(user);

function conv(key) {
  let c = app.convs.get(key);
  if (!c) {
    const [kind, name] = key.includes(':') ? key.split(/:(.*)/s) : [key, 'inbox'];
    c = { key, kind, name, title: kind === 'room' ? `# ${name.replace(/^room-/, '')}` : name, messages: [], unread: 0 };
    app.convs.set(key, c);
  }
  return c;
}

function addMessage(key, message) {
  const c = conv(key);
  c.messages.push(message);
  if (app.current !== key) c.unread += 1;
  render();
}

// ---- connection -------------------------------------------------------------------------

async function signIn(name) {
  $('signin-error').textContent = '';
  let grant;
  try {
    grant = await fetchToken(name);
  } catch (err) {
    $('signin-error').textContent = `Could not sign in: ${err.message}`;
    return;
  }
  app.me = grant.user;
  app.queueTemplate = grant.queue_template || '{user}';
  app.userPrefix = grant.user_prefix || '';
  sessionStorage.setItem('wsmq-demo-user', app.me);
  const client = new WsmqClient({
    url: nodeUrls(),
    token: grant.token,
    refreshToken: async () => (await fetchToken(app.me)).token,
  });
  app.client = client;
  client.addEventListener('state', (e) => showState(e.detail));
  client.addEventListener('transport', () => render());
  client.addEventListener('welcome', (e) => {
    $('node').textContent = e.detail.node;
    // Presence frames missed while disconnected: read the rooms' lists again.
    for (const c of app.convs.values()) {
      if (c.kind === 'room' && c.sub && c.sub.active) loadRoster(c);
    }
  });
  client.addEventListener('error', (e) => console.warn('wsmq:', e.detail.error));
  client.subscribeQueue(grant.queue, onQueueMessage, { ack: 'manual' });
  for (const c of app.convs.values()) {
    if (c.kind === 'room') joinRoom(c.name);
  }
  $('me').textContent = app.me;
  $('signin').hidden = true;
  $('chat').hidden = false;
  $('signout').hidden = false;
  render();
}

function signOut() {
  if (app.client) app.client.close();
  app.client = null;
  app.me = null;
  app.convs.clear();
  app.current = null;
  app.seen.clear();
  app.mine.clear();
  sessionStorage.removeItem('wsmq-demo-user');
  $('chat').hidden = true;
  $('signin').hidden = false;
  $('signout').hidden = true;
  $('me').textContent = '';
  $('node').textContent = '–';
  showState({ state: 'signed-out' });
  render();
}

function showState({ state, code }) {
  const transport = $('transport');
  const on = app.client && app.client.transport;
  transport.hidden = !app.client;
  transport.dataset.transport = on || '';
  transport.textContent = on === 'sse' ? 'SSE' : 'WebSocket';
  transport.title =
    on === 'sse'
      ? 'WebSocket upgrades fail here: receiving over Server-Sent Events; sending needs the WebSocket'
      : 'connected over a WebSocket';
  const pill = $('state');
  pill.dataset.state = state;
  const labels = {
    'signed-out': 'signed out',
    idle: 'idle',
    connecting: 'connecting…',
    open: 'online',
    reconnecting: 'reconnecting…',
    stopped: 'stopped: sign in again',
    closed: 'offline',
  };
  pill.textContent = labels[state] || state;
  pill.title = code ? `last close code ${code}` : '';
  if (state !== 'open') $('node').textContent = '–';
  // Publishing needs the WebSocket: on SSE the page only receives (and acks).
  const sse = on === 'sse';
  const usable = state === 'open' && !sse;
  $('text').disabled = !usable || !app.current || app.current === 'inbox';
  $('text').placeholder = sse ? 'Sending needs the WebSocket (this page is on SSE)' : 'Write a message';
  $('send').disabled = $('text').disabled;
}

/** Everything in your own queue: direct messages, receipts, and other messages. */
async function onQueueMessage(message) {
  let body = null;
  try {
    body = JSON.parse(message.message);
  } catch {
    // Not chat JSON: shown as is.
  }
  if (body && body.t === 'receipt' && typeof body.id === 'string') {
    const mine = app.mine.get(body.id);
    if (mine) {
      mine.status = 'delivered';
      render();
    }
    await message.ack();
    return;
  }
  if (body && body.t === 'dm' && typeof body.from === 'string' && typeof body.id === 'string') {
    if (!app.seen.has(body.id)) {
      app.seen.add(body.id);
      addMessage(`dm:${body.from}`, { id: body.id, from: body.from, text: String(body.text), at: body.at });
    }
    // Ack first: the receipt tells the sender that this page has taken the message.
    await message.ack();
    app.client
      .publish({ queue: queueOf(body.from), message: JSON.stringify({ t: 'receipt', id: body.id, from: app.me }) })
      .catch((err) => console.warn('receipt not sent:', err.code));
    return;
  }
  if (!app.seen.has(message.id)) {
    app.seen.add(message.id);
    addMessage('inbox', { id: message.id, from: message.queue, text: message.message, at: message.sent });
  }
  await message.ack();
}

function joinRoom(name) {
  const channel = name.startsWith('room-') ? name : `room-${name}`;
  const c = conv(`room:${channel}`);
  if (c.sub && c.sub.active) return c;
  c.roster = c.roster || new Set();
  const onPresence = ({ joined, left }) => {
    for (const user of joined) c.roster.add(user);
    for (const user of left) c.roster.delete(user);
    render();
  };
  c.sub = app.client.subscribeChannel(channel, ({ message }) => {
    let body;
    try {
      body = JSON.parse(message);
    } catch {
      body = { id: newId(), from: '?', text: message };
    }
    if (app.seen.has(body.id)) return;
    app.seen.add(body.id);
    addMessage(c.key, { id: body.id, from: body.from, text: String(body.text), at: body.at, mine: body.from === app.me });
  }, { onPresence });
  c.sub.ready.then(
    () => {
      addMessage(c.key, { system: true, text: `you joined ${c.title}`, joined: true });
      // The presence list needs the WebSocket.
      if (app.client.transport === 'websocket') loadRoster(c);
    },
    (err) => addMessage(c.key, { system: true, text: `cannot join: ${err.code}` }),
  );
  return c;
}

// Who is in a room: read once on joining (and after each reconnect), then kept up to date by
// the presence frames.
function loadRoster(c) {
  app.client.presence(c.name).then(
    ({ users }) => {
      c.roster = new Set(users.map((u) => u.user));
      render();
    },
    (err) => console.warn('wsmq presence:', err),
  );
}

function leaveRoom(key) {
  const c = app.convs.get(key);
  if (!c) return;
  if (c.sub) c.sub.unsubscribe().catch(() => {});
  app.convs.delete(key);
  app.current = null;
  render();
}

function send(text) {
  const c = app.convs.get(app.current);
  if (!c || !text) return;
  const id = newId();
  const at = Date.now();
  if (c.kind === 'dm') {
    const message = { id, from: app.me, text, at, mine: true, status: 'sending' };
    app.mine.set(id, message);
    addMessage(c.key, message);
    app.client
      .publish({ queue: queueOf(c.name), message: JSON.stringify({ t: 'dm', id, from: app.me, text, at }) })
      .then(
        () => {
          if (message.status === 'sending') message.status = 'sent';
          render();
        },
        (err) => {
          message.status = 'failed';
          message.error = err.code;
          render();
        },
      );
  } else if (c.kind === 'room') {
    app.seen.add(id);
    const message = { id, from: app.me, text, at, mine: true, status: 'sending' };
    addMessage(c.key, message);
    app.client.publish({ channel: c.name, message: JSON.stringify({ t: 'room', id, from: app.me, text, at }) }).then(
      () => {
        message.status = 'sent';
        render();
      },
      (err) => {
        message.status = 'failed';
        message.error = err.code;
        render();
      },
    );
  }
}

// ---- rendering --------------------------------------------------------------------------

function open(key) {
  app.current = key;
  conv(key).unread = 0;
  render();
  $('text').focus();
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'onclick') node.addEventListener('click', v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '');
const marks = { sending: '…', sent: '✓ sent', delivered: '✓✓ delivered', failed: '✗ failed' };

function render() {
  for (const [listId, kinds] of [['dms', ['dm', 'inbox']], ['rooms', ['room']]]) {
    const list = $(listId);
    list.replaceChildren(
      ...[...app.convs.values()]
        .filter((c) => kinds.includes(c.kind))
        .map((c) =>
          el(
            'li',
            { className: c.key === app.current ? 'active' : '', dataset: { conv: c.key }, onclick: () => open(c.key) },
            el('span', { textContent: c.title }),
            c.unread ? el('span', { className: 'badge', textContent: String(c.unread) }) : '',
          ),
        ),
    );
  }
  const c = app.current && app.convs.get(app.current);
  $('conv-title').textContent = c ? c.title : 'Pick or open a conversation';
  $('leave').hidden = !c || c.kind !== 'room';
  const who = $('who');
  who.hidden = !c || c.kind !== 'room';
  who.textContent = c && c.roster ? `here: ${[...c.roster].sort().join(', ') || 'nobody'}` : '';
  const list = $('messages');
  list.replaceChildren(
    ...(c ? c.messages : []).map((m) => {
      if (m.system) return el('li', { className: 'msg system', textContent: m.text, dataset: { system: m.joined ? 'joined' : 'note' } });
      const mine = m.mine || m.from === app.me;
      const meta = el('div', { className: 'meta' }, time(m.at));
      if (mine && m.status) {
        meta.append(' ', el('span', { className: 'mark', textContent: marks[m.status] + (m.error ? ` (${m.error})` : '') }));
      }
      return el(
        'li',
        { className: mine ? 'msg mine' : 'msg', dataset: { id: m.id, status: m.status || '', from: m.from || '' } },
        mine ? '' : el('div', { className: 'from', textContent: m.from }),
        el('div', { className: 'text', textContent: m.text }),
        meta,
      );
    }),
  );
  list.scrollTop = list.scrollHeight;
  showState({ state: app.client ? app.client.state : 'signed-out' });
}

// ---- wiring -----------------------------------------------------------------------------

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  signIn($('name').value.trim());
});
$('signout').addEventListener('click', signOut);
$('new-dm').addEventListener('submit', (e) => {
  e.preventDefault();
  const typed = $('dm-to').value.trim();
  if (!typed) return;
  // A node with --demo-secret names demo users `demo-NAME`: "bob" means demo-bob there.
  const to = typed.startsWith(app.userPrefix) ? typed : app.userPrefix + typed;
  $('dm-to').value = '';
  conv(`dm:${to}`);
  open(`dm:${to}`);
});
$('join-room').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('room-name').value.trim();
  if (!name || !app.client) return;
  $('room-name').value = '';
  open(joinRoom(name).key);
});
$('leave').addEventListener('click', () => leaveRoom(app.current));
$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  $('text').value = '';
  send(text);
});

const remembered = sessionStorage.getItem('wsmq-demo-user');
if (remembered) signIn(remembered);
