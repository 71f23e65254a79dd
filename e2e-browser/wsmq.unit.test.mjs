// wsmq.unit.test.mjs: wsmq.js's reconnect rules against a fake WebSocket, in Node (no browser,
// no gateway): which close codes reconnect, where to, how soon, and which ones stop; and its
// fallback to Server-Sent Events against a fake fetch (streams, acks over HTTP, going back).
//
// Run with the browser suite (crates/wsmq-gateway/tests/browser.rs), or alone:
//   node --test e2e-browser/wsmq.unit.test.mjs

import assert from 'node:assert/strict';
import { test } from 'node:test';

/** Records every socket the client opens; a test opens, welcomes and closes them. */
class FakeWebSocket {
  static OPEN = 1;
  static opened = [];
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.opened.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000) {
    this.readyState = 3;
    this.closedWith = code;
  }
  /** The server accepts and says welcome. */
  welcome(node = 'n1') {
    this.readyState = 1;
    this.onmessage({ data: JSON.stringify({ op: 'welcome', user: 'u', node, token: null }) });
  }
  /** The server (or the network) closes with `code`. */
  serverClose(code) {
    this.readyState = 3;
    this.onclose({ code, reason: '' });
  }
}
globalThis.WebSocket = FakeWebSocket;

/** Records every fetch: GET /sse streams a test opens, pushes events into and ends; POSTs
 * (acks) are answered `ackStatus` at once. Honours the abort signal, as fetch does. */
class FakeFetch {
  static calls = [];
  static ackStatus = 200;
  constructor(url, init) {
    this.url = new URL(url);
    this.init = init;
    this.headers = init.headers || {};
    this.aborted = false;
    this.controller = null;
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    init.signal?.addEventListener('abort', () => {
      this.aborted = true;
      const err = new DOMException('aborted', 'AbortError');
      if (this.controller) this.controller.error(err);
      else this.reject(err);
    });
    if (init.method === 'POST') {
      this.body = JSON.parse(init.body);
      const ok = FakeFetch.ackStatus === 200;
      const reply = ok ? { ok: true } : { error: 'not_found', message: 'no stream holds it' };
      this.resolve(new Response(JSON.stringify(reply), { status: FakeFetch.ackStatus }));
    }
  }
  /** The server answers 200 and starts the event stream. */
  open() {
    const body = new ReadableStream({ start: (c) => (this.controller = c) });
    this.resolve(new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } }));
  }
  /** One event: `type` null for a delivery (`message`). */
  push(type, frame, id) {
    let text = type ? `event: ${type}\n` : '';
    if (id) text += `id: ${id}\n`;
    text += `data: ${JSON.stringify(frame)}\n\n`;
    this.controller.enqueue(new TextEncoder().encode(text));
  }
  end() {
    this.controller.close();
  }
  refuse(status, body) {
    this.resolve(new Response(JSON.stringify(body), { status }));
  }
}
globalThis.fetch = (url, init = {}) => {
  const call = new FakeFetch(String(url), init);
  FakeFetch.calls.push(call);
  return call.promise;
};

const { WsmqClient } = await import('../crates/wsmq-gateway/static/wsmq.js');

const token = (expSeconds) =>
  `h.${Buffer.from(JSON.stringify({ sub: 'u', exp: expSeconds })).toString('base64url')}.s`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const last = () => FakeWebSocket.opened.at(-1);
const hourFromNow = () => Math.floor(Date.now() / 1000) + 3600;

test('connects with the token in the query and the wsmq.v1 subprotocol, resubscribes after a reconnect', async () => {
  FakeWebSocket.opened = [];
  const t = token(hourFromNow());
  const client = new WsmqClient({ url: ['ws://a/ws', 'ws://b/ws'], token: t, minDelay: 10 });
  assert.equal(last().url, `ws://a/ws?token=${encodeURIComponent(t)}`);
  assert.equal(last().protocol, 'wsmq.v1');
  client.subscribeQueue('q', () => {});
  last().welcome('a');
  assert.deepEqual(last().sent.map((f) => [f.op, f.queue]), [['subscribe', 'q']]);

  // 1012: the node drains; go to the next URL at once (well under the backoff).
  last().serverClose(1012);
  assert.equal(client.state, 'reconnecting');
  await sleep(150);
  assert.equal(FakeWebSocket.opened.length, 2);
  assert.ok(last().url.startsWith('ws://b/ws?token='));
  last().welcome('b');
  assert.equal(client.node, 'b');
  assert.deepEqual(last().sent.map((f) => [f.op, f.queue]), [['subscribe', 'q']]);
  client.close();
});

test('4008 and network errors reconnect with growing delays; a welcome resets them', async () => {
  FakeWebSocket.opened = [];
  // Sockets closed before their welcome would mean a blocked upgrade: this is about the
  // WebSocket's own reconnects, so without the SSE fallback.
  const client = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 40, maxDelay: 1000, sse: false });
  last().welcome();
  const delays = [];
  for (const code of [4008, 1006, 1006]) {
    const before = FakeWebSocket.opened.length;
    last().serverClose(code);
    delays.push(client.nextRetryAt - Date.now());
    const started = Date.now();
    while (FakeWebSocket.opened.length === before && Date.now() - started < 2000) await sleep(5);
    assert.equal(FakeWebSocket.opened.length, before + 1, `reconnected after ${code}`);
  }
  // Jittered in [d/2, d] for d = 40, 80, 160 ms.
  assert.ok(delays[0] <= 40 && delays[2] >= 75, delays.join(', '));
  last().welcome();
  last().serverClose(1006);
  assert.ok(client.nextRetryAt - Date.now() <= 40, 'the backoff restarts after a welcome');
  client.close();
});

test('4001 without refreshToken and 4003 stop until setToken; 4001 with it refreshes and reconnects', async () => {
  for (const code of [4001, 4003]) {
    FakeWebSocket.opened = [];
    const client = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 10 });
    last().welcome();
    last().serverClose(code);
    assert.equal(client.state, 'stopped');
    await sleep(100);
    assert.equal(FakeWebSocket.opened.length, 1, `no reconnect after ${code}`);
    const fresh = token(hourFromNow() + 60);
    await client.setToken(fresh);
    assert.equal(FakeWebSocket.opened.length, 2);
    assert.ok(last().url.endsWith(encodeURIComponent(fresh)));
    client.close();
  }

  FakeWebSocket.opened = [];
  const fresh = token(hourFromNow() + 120);
  let calls = 0;
  const client = new WsmqClient({
    url: 'ws://a/ws',
    token: token(hourFromNow()),
    minDelay: 10,
    refreshToken: async () => {
      calls += 1;
      return fresh;
    },
  });
  last().welcome();
  last().serverClose(4001);
  await sleep(100);
  assert.equal(calls, 1);
  assert.equal(FakeWebSocket.opened.length, 2);
  assert.ok(last().url.endsWith(encodeURIComponent(fresh)));
  client.close();
});

test('publish settles with the reply; requests in flight reject with disconnected', async () => {
  FakeWebSocket.opened = [];
  const client = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 10 });
  last().welcome();
  const ws = last();
  const ok = client.publish({ queue: 'q', message: 'm' });
  const refused = client.publish({ channel: 'c', message: 'm' });
  const lost = client.publish({ queue: 'q', message: 'n' });
  const [a, b] = ws.sent;
  ws.onmessage({ data: JSON.stringify({ op: 'ok', ref: a.ref, id: 'x'.repeat(32) }) });
  ws.onmessage({ data: JSON.stringify({ op: 'error', ref: b.ref, code: 'forbidden', message: 'no' }) });
  assert.equal((await ok).id.length, 32);
  await assert.rejects(refused, { code: 'forbidden' });
  ws.serverClose(1006);
  await assert.rejects(lost, { code: 'disconnected' });
  client.close();
});

test('a channel with history resubscribes with since its last offset; not recovered emits reset', async () => {
  FakeWebSocket.opened = [];
  const client = new WsmqClient({ url: ['ws://a/ws', 'ws://b/ws'], token: token(hourFromNow()), minDelay: 10 });
  const got = [];
  const resets = [];
  client.addEventListener('reset', (e) => resets.push(e.detail));
  client.subscribeChannel('room', (m) => got.push(m));
  last().welcome('a');
  let ws = last();
  let [sub] = ws.sent;
  assert.equal(sub.since, undefined);
  ws.onmessage({ data: JSON.stringify({ op: 'ok', ref: sub.ref, offset: 4, epoch: 'E' }) });
  await sleep(0);
  for (const offset of [5, 6]) {
    ws.onmessage({ data: JSON.stringify({ op: 'message', channel: 'room', message: `m${offset}`, offset, epoch: 'E' }) });
  }
  assert.deepEqual(got.map((m) => [m.offset, m.epoch, m.message]), [[5, 'E', 'm5'], [6, 'E', 'm6']]);

  // The node dies: on the other one, recover from offset 6.
  ws.serverClose(1006);
  await sleep(50);
  last().welcome('b');
  ws = last();
  [sub] = ws.sent;
  assert.deepEqual(sub.since, { offset: 6, epoch: 'E' });
  ws.onmessage({ data: JSON.stringify({ op: 'ok', ref: sub.ref, offset: 9, epoch: 'E', recovered: true }) });
  await sleep(0);
  ws.onmessage({ data: JSON.stringify({ op: 'message', channel: 'room', message: 'm7', offset: 7, epoch: 'E' }) });
  assert.deepEqual(resets, []);

  // Again, but the history is gone: reset, and live from the new position.
  ws.serverClose(1006);
  await sleep(50);
  last().welcome('a');
  ws = last();
  [sub] = ws.sent;
  assert.deepEqual(sub.since, { offset: 7, epoch: 'E' });
  ws.onmessage({ data: JSON.stringify({ op: 'ok', ref: sub.ref, offset: 2, epoch: 'F', recovered: false }) });
  await sleep(0);
  assert.deepEqual(resets, [{ channel: 'room', offset: 2, epoch: 'F' }]);

  // A reset frame from the server moves the position too.
  ws.onmessage({ data: JSON.stringify({ op: 'reset', channel: 'room', offset: 10, epoch: 'F' }) });
  assert.deepEqual(resets.at(-1), { channel: 'room', offset: 10, epoch: 'F' });
  ws.serverClose(1006);
  await sleep(50);
  last().welcome('b');
  assert.deepEqual(last().sent[0].since, { offset: 10, epoch: 'F' });
  client.close();
});

test('history resolves with the epoch and the messages', async () => {
  FakeWebSocket.opened = [];
  const client = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 10 });
  last().welcome();
  const ws = last();
  const page = client.history('room', { limit: 2, before: 9 });
  const [req] = ws.sent;
  assert.deepEqual([req.op, req.channel, req.limit, req.before], ['history', 'room', 2, 9]);
  const messages = [{ offset: 7, message: 'a', sent: 1 }, { offset: 8, message: 'b', sent: 2 }];
  ws.onmessage({ data: JSON.stringify({ op: 'ok', ref: req.ref, offset: 12, epoch: 'E', messages }) });
  assert.deepEqual(await page, { epoch: 'E', offset: 12, messages });
  client.close();
});

const streams = () => FakeFetch.calls.filter((c) => c.url.pathname === '/sse');
const posts = () => FakeFetch.calls.filter((c) => c.init.method === 'POST');
/** Waits (bounded) until `done()` holds. */
async function until(what, done, ms = 2000) {
  const started = Date.now();
  while (!done()) {
    assert.ok(Date.now() - started < ms, `${what} did not happen within ${ms} ms`);
    await sleep(5);
  }
}

test('a failed upgrade falls back to SSE: one stream, acks and nacks over HTTP, publish unsupported', async () => {
  FakeWebSocket.opened = [];
  FakeFetch.calls = [];
  const t = token(hourFromNow());
  const client = new WsmqClient({ url: 'ws://a:3000/ws', token: t, minDelay: 10 });
  const transports = [];
  client.addEventListener('transport', (e) => transports.push(e.detail.transport));
  const got = [];
  const queue = client.subscribeQueue('q', (m) => {
    got.push(m.message);
    if (m.message === 'bad') throw new Error('the handler failed');
  });
  const room = client.subscribeChannel('room', (m) => got.push(`room:${m.message}`));
  assert.equal(client.transport, 'websocket');

  // The upgrade is refused: the socket closes before any welcome.
  last().serverClose(1006);
  assert.equal(client.transport, 'sse');
  assert.deepEqual(transports, ['sse']);
  const [stream] = streams();
  assert.equal(`${stream.url.origin}${stream.url.pathname}`, 'http://a:3000/sse');
  assert.deepEqual([...stream.url.searchParams], [['queue', 'q'], ['channel', 'room']]);
  // The token goes in a header, not in a URL that proxies log.
  assert.equal(stream.headers.authorization, `Bearer ${t}`);
  assert.equal(stream.url.searchParams.get('token'), null);

  stream.open();
  await queue.ready;
  assert.equal(client.state, 'open');
  stream.push('ok', { op: 'ok' });
  await room.ready;

  stream.push(null, { op: 'message', queue: 'q', id: 'id-1', message: 'hi', rc: 1, sent: 1 }, 'id-1');
  stream.push(null, { op: 'message', queue: 'q', id: 'id-2', message: 'bad', rc: 1, sent: 1 }, 'id-2');
  stream.push(null, { op: 'message', channel: 'room', message: 'all' });
  await until('an ack and a nack', () => posts().length === 2);
  const [ack, nack] = posts().sort((a, b) => a.url.pathname.localeCompare(b.url.pathname));
  assert.equal(ack.url.href, 'http://a:3000/api/ack');
  assert.deepEqual(ack.body, { queue: 'q', id: 'id-1' });
  assert.equal(ack.headers.authorization, `Bearer ${t}`);
  assert.equal(nack.url.href, 'http://a:3000/api/nack');
  assert.deepEqual(nack.body, { queue: 'q', id: 'id-2' });
  assert.deepEqual(got.sort(), ['bad', 'hi', 'room:all']);

  await assert.rejects(client.publish({ queue: 'q', message: 'm' }), { code: 'unsupported' });
  await assert.rejects(client.presence('room'), { code: 'unsupported' });
  client.close();
  assert.ok(stream.aborted);
});

test('no welcome in time falls back; subscription changes reopen the stream with the channel position', async () => {
  FakeWebSocket.opened = [];
  FakeFetch.calls = [];
  const client = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 10, fallbackTimeout: 30 });
  const resets = [];
  client.addEventListener('reset', (e) => resets.push(e.detail));
  client.subscribeChannel('room', () => {});
  // The upgrade hangs (a proxy that holds it): after fallbackTimeout, SSE.
  await until('the fallback', () => streams().length === 1);
  assert.equal(last().readyState, 3, 'the hanging socket was closed');
  let stream = streams()[0];
  stream.open();
  stream.push('ok', { op: 'ok', offset: 4, epoch: 'E' });
  stream.push(null, { op: 'message', channel: 'room', message: 'm5', offset: 5, epoch: 'E' }, 'E:5');
  await sleep(10);

  // A new subscription: the stream is reopened with both, resuming the channel after 5.
  const queue = client.subscribeQueue('q', () => {});
  await until('the second stream', () => streams().length === 2);
  assert.ok(stream.aborted);
  stream = streams()[1];
  assert.deepEqual([...stream.url.searchParams], [['channel', 'room'], ['queue', 'q']]);
  assert.equal(stream.headers['last-event-id'], 'E:5');
  stream.open();
  await queue.ready;
  stream.push('ok', { op: 'ok', offset: 7, epoch: 'E', recovered: true });
  await sleep(10);
  assert.deepEqual(resets, []);

  // A forbidden one is refused as a v1 subscribe would be; the others keep streaming.
  const secret = client.subscribeChannel('secret', () => {});
  await until('the third stream', () => streams().length === 3);
  streams()[2].refuse(403, { error: 'forbidden', message: 'you may not subscribe to channel secret' });
  await assert.rejects(secret.ready, { code: 'forbidden' });
  await until('the fourth stream', () => streams().length === 4);
  assert.deepEqual(streams()[3].url.searchParams.getAll('channel'), ['room']);
  client.close();
});

test('on SSE: a close event reconnects or stops by its code, and the WebSocket is tried again', async () => {
  FakeWebSocket.opened = [];
  FakeFetch.calls = [];
  const client = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 10, wsRetryInterval: 300 });
  client.subscribeQueue('q', () => {});
  last().serverClose(1006);
  streams()[0].open();
  await until('open', () => client.state === 'open');

  // The node drains: the stream says 1012 and ends; the client comes back at once, on SSE
  // again (the upgrade failed a moment ago).
  streams()[0].push('close', { code: 1012, reason: 'restarting' });
  streams()[0].end();
  await until('the new stream', () => streams().length === 2);
  assert.equal(FakeWebSocket.opened.length, 1);
  streams()[1].open();
  await until('open', () => client.state === 'open');

  // wsRetryInterval later a WebSocket is tried; once welcomed, the client moves to it.
  await until('the WebSocket probe', () => FakeWebSocket.opened.length === 2, 1000);
  last().welcome('a');
  assert.equal(client.transport, 'websocket');
  assert.ok(streams()[1].aborted);
  assert.deepEqual(last().sent.map((f) => [f.op, f.queue]), [['subscribe', 'q']]);
  client.close();

  // A revoked token (401) stops, as a 4003 would.
  FakeWebSocket.opened = [];
  FakeFetch.calls = [];
  const stopped = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 10 });
  stopped.subscribeQueue('q', () => {});
  last().serverClose(1006);
  streams()[0].refuse(401, { error: 'unauthorized', reason: 'revoked' });
  await until('stopped', () => stopped.state === 'stopped');
  await sleep(50);
  assert.equal(streams().length, 1);
  stopped.close();
});
