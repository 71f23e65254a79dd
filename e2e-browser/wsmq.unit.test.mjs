// wsmq.unit.test.mjs: wsmq.js's reconnect rules against a fake WebSocket, in Node (no browser,
// no gateway): which close codes reconnect, where to, how soon, and which ones stop.
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
  const client = new WsmqClient({ url: 'ws://a/ws', token: token(hourFromNow()), minDelay: 40, maxDelay: 1000 });
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
