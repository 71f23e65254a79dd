// demo.test.mjs: the chat demo and wsmq.js in headless Chromium against two gateway nodes.
//
// Run by `cargo xtask e2e browser` through crates/wsmq-gateway/tests/browser.rs, which starts
// node A and node B (`serve --demo`) on one Redis and passes them in the environment:
//   WSMQ_DEMO_A, WSMQ_DEMO_B          host:port of each node
//   WSMQ_DEMO_NODE_A, WSMQ_DEMO_NODE_B their node ids
//   WSMQ_DEMO_B_PID                    the PID of node B, which this test stops with SIGTERM
//   WSMQ_DEMO_SCREENSHOT               where to write the screenshot (docs/img/demo.png on request)
//   WSMQ_DEMO_CLI, WSMQ_DEMO_REDIS_URL, WSMQ_DEMO_NS  wsmq-cli and its --redis-url / --ns
//   WSMQ_CHROMIUM                      the browser [default: /usr/bin/chromium]
// Every wait is bounded (Playwright timeouts, the test timeout); the browser is closed in
// `after`, whatever happens. The SSE test puts a proxy of its own (loopback only, closed in
// `after` or after two minutes at most) in front of node A that refuses WebSocket upgrades.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this through \`cargo xtask e2e browser\``);
  return value;
};

const A = env('WSMQ_DEMO_A');
const B = env('WSMQ_DEMO_B');
const NODE_A = env('WSMQ_DEMO_NODE_A');
const NODE_B = env('WSMQ_DEMO_NODE_B');
const B_PID = Number(env('WSMQ_DEMO_B_PID'));
const SCREENSHOT = env('WSMQ_DEMO_SCREENSHOT');
const WAIT = 15_000;
const ROOM = 'lobby';

/** The chromium flags the project runs with (Debian's chromium, no sandbox in containers). */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

let context;
let profile;

before(async () => {
  // A fresh profile each run; Playwright passes it as --user-data-dir.
  profile = mkdtempSync(join(tmpdir(), 'wsmq-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.WSMQ_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
    viewport: { width: 1100, height: 640 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(WAIT);
});

/** Proxies in front of a node that refuse WebSocket upgrades, as some corporate ones do. */
const proxies = [];

after(async () => {
  for (const proxy of proxies) {
    proxy.closeAllConnections();
    proxy.close();
  }
  await context?.close().catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** Opens the demo served by `host`, failing over to `others`, and signs in as `user`. */
async function signIn(host, others, user) {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[${user} page error]`, err));
  const nodes = [host, ...others].map((h) => `ws://${h}/ws`).join(',');
  await page.goto(`http://${host}/demo?nodes=${encodeURIComponent(nodes)}`);
  await page.fill('#name', user);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#state[data-state="open"]');
  return page;
}

const nodeOf = (page) => page.textContent('#node');

// The nodes run with --demo-secret (beside the cluster's --jwt-secret), so demo user `alice`
// is `demo-alice`; the page adds the prefix to names typed in the DM box.
const USER_PREFIX = 'demo-';

async function openDm(page, user) {
  await page.fill('#dm-to', user);
  await page.press('#dm-to', 'Enter');
}

async function openConv(page, key) {
  await page.click(`#dms li[data-conv="${key}"], #rooms li[data-conv="${key}"]`);
}

async function say(page, text) {
  // Enter submits the form, as a person would; unlike a click it does not wait for the
  // page's animation frames, which Chromium throttles in a background tab.
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** The message whose text is `text` in the open conversation. */
const message = (page, text) => page.locator('#messages li.msg', { has: page.locator('.text', { hasText: text }) });

test('two users chat across two nodes, offline delivery, delivered marks and failover', async (t) => {
  let alice;
  let bob;

  await t.test('alice signs in on node A and bob on node B', async () => {
    alice = await signIn(A, [B], 'alice');
    bob = await signIn(B, [A], 'bob');
    assert.equal(await nodeOf(alice), NODE_A);
    assert.equal(await nodeOf(bob), NODE_B);
  });

  await t.test('a direct message each way, each marked delivered', async () => {
    await openDm(alice, 'bob');
    await say(alice, 'Hi Bob! I am on node A.');
    await bob.waitForSelector(`#dms li[data-conv="dm:${USER_PREFIX}alice"]`);
    await openConv(bob, `dm:${USER_PREFIX}alice`);
    await message(bob, 'Hi Bob! I am on node A.').waitFor();
    await message(alice, 'Hi Bob!').and(alice.locator('[data-status="delivered"]')).waitFor();

    await say(bob, 'Hello Alice, node B here.');
    await message(alice, 'Hello Alice, node B here.').waitFor();
    await message(bob, 'Hello Alice').and(bob.locator('[data-status="delivered"]')).waitFor();
  });

  await t.test('a room message is seen by both', async () => {
    for (const page of [alice, bob]) {
      await page.fill('#room-name', ROOM);
      await page.press('#room-name', 'Enter');
      await page.waitForSelector('#messages li[data-system="joined"]');
    }
    await say(alice, 'Hello room, from alice');
    await message(bob, 'Hello room, from alice').waitFor();
    await message(alice, 'Hello room, from alice').waitFor();
    await say(bob, 'Hi all, bob in the room');
    await message(alice, 'Hi all, bob in the room').waitFor();
  });

  await t.test('a message to bob while his page is closed waits for him', async () => {
    await bob.close();
    await openConv(alice, `dm:${USER_PREFIX}bob`);
    await say(alice, 'Are you there? This waits in your queue.');
    const waiting = message(alice, 'Are you there?');
    await waiting.and(alice.locator('[data-status="sent"]')).waitFor();
    // Nobody has taken it: still "sent", not "delivered", a moment later.
    await alice.waitForTimeout(500);
    assert.equal(await waiting.getAttribute('data-status'), 'sent');

    bob = await signIn(B, [A], 'bob');
    await bob.waitForSelector(`#dms li[data-conv="dm:${USER_PREFIX}alice"]`);
    await openConv(bob, `dm:${USER_PREFIX}alice`);
    await message(bob, 'Are you there? This waits in your queue.').waitFor();
    await waiting.and(alice.locator('[data-status="delivered"]')).waitFor();
    await say(bob, 'Back now: your message was waiting for me.');
    await message(alice, 'Back now').waitFor();
  });

  await t.test('the screenshot for the README', async () => {
    await message(alice, 'Back now').waitFor();
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await alice.screenshot({ path: SCREENSHOT });
  });

  await t.test('node B stops and bob\'s page reconnects to node A', async () => {
    process.kill(B_PID, 'SIGTERM');
    await bob.waitForFunction((nodeA) => document.getElementById('node').textContent === nodeA, NODE_A, {
      timeout: WAIT,
    });
    await bob.waitForSelector('#state[data-state="open"]');
    await say(alice, 'Node B is gone, and you still get this.');
    await message(bob, 'Node B is gone').waitFor();
    await message(alice, 'Node B is gone').and(alice.locator('[data-status="delivered"]')).waitFor();
  });
});

test('wsmq.js: error codes, auto-ack and nack on a throw, token refresh, close', async () => {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('[carol page error]', err));
  await page.goto(`http://${A}/demo`);
  const out = await page.evaluate(async () => {
    const { WsmqClient } = await import('/client/wsmq.js');
    const grant = async (user) => {
      const response = await fetch('/demo/token', { method: 'POST', body: new URLSearchParams({ user }) });
      return response.json();
    };
    const within = (ms, what, done) =>
      new Promise((resolve, reject) => {
        const started = Date.now();
        const poll = () => {
          if (done()) resolve();
          else if (Date.now() - started > ms) reject(new Error(`${what} did not happen within ${ms} ms`));
          else setTimeout(poll, 20);
        };
        poll();
      });
    const code = (promise) => promise.then(() => 'resolved', (err) => err.code);

    const carol = await grant('carol');
    const client = new WsmqClient({ url: `ws://${location.host}/ws`, token: carol.token });
    await within(5000, 'welcome', () => client.state === 'open');
    const result = { user: client.user, node: client.node };
    result.badName = (await fetch('/demo/token', { method: 'POST', body: 'user=no%20spaces' })).status;
    result.forbiddenChannel = await code(client.publish({ channel: 'secret-1', message: 'x' }));
    result.forbiddenQueue = await code(client.subscribeQueue('someone-else', () => {}).ready);

    const got = [];
    let thrown = false;
    const sub = client.subscribeQueue(carol.queue, (m) => {
      got.push(`${m.message}#${m.rc}`);
      if (m.message === 'throw-once' && !thrown) {
        thrown = true;
        throw new Error('the handler failed');
      }
    });
    await sub.ready;
    const ok = await client.publish({ queue: carol.queue, message: 'hello' });
    result.idLength = ok.id.length;
    await client.publish({ queue: carol.queue, message: 'throw-once' });
    await within(10000, 'the redelivery after a throw', () => got.includes('throw-once#2'));
    result.got = got.slice();

    // A token for another user is refused; a later one for the same user is taken.
    result.otherUser = await code(client.setToken((await grant('dave')).token));
    await new Promise((r) => setTimeout(r, 1100));
    result.refresh = await code(client.setToken((await grant('carol')).token));
    result.stillOpen = client.state;
    client.close();
    result.closed = client.state;
    result.afterClose = await code(client.publish({ queue: carol.queue, message: 'late' }));
    return result;
  });
  await page.close();
  // With --demo-secret (as the suite runs the demo), demo users are named demo-NAME.
  assert.equal(out.user, 'demo-carol');
  assert.equal(out.node, NODE_A);
  assert.equal(out.badName, 400);
  assert.equal(out.forbiddenChannel, 'forbidden');
  assert.equal(out.forbiddenQueue, 'forbidden');
  assert.equal(out.idLength, 32);
  // Acked after the handler returned: "hello" came once; the throw was nacked and came again.
  assert.deepEqual(out.got, ['hello#1', 'throw-once#1', 'throw-once#2']);
  assert.equal(out.otherUser, 'forbidden');
  assert.equal(out.refresh, 'resolved');
  assert.equal(out.stillOpen, 'open');
  assert.equal(out.closed, 'closed');
  assert.equal(out.afterClose, 'closed');
});

test('wsmq.js: a revoked session (4003) stops until it is given a new token', async () => {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('[erin page error]', err));
  await page.goto(`http://${A}/demo`);
  await page.evaluate(async () => {
    const { WsmqClient } = await import('/client/wsmq.js');
    const grant = await (await fetch('/demo/token', { method: 'POST', body: 'user=erin' })).json();
    window.erin = new WsmqClient({ url: `ws://${location.host}/ws`, token: grant.token, minDelay: 50 });
    window.erinStates = [];
    window.erin.addEventListener('state', (e) => window.erinStates.push(`${e.detail.state}:${e.detail.code ?? ''}`));
  });
  await page.waitForFunction(() => window.erin.state === 'open', null, { timeout: WAIT });

  const cli = [
    '--redis-url', env('WSMQ_DEMO_REDIS_URL'), '--ns', env('WSMQ_DEMO_NS'), 'token', 'revoke', '--user', 'demo-erin',
  ];
  execFileSync(env('WSMQ_DEMO_CLI'), cli, { timeout: 30_000, stdio: ['ignore', 'ignore', 'inherit'] });

  await page.waitForFunction(() => window.erin.state === 'stopped', null, { timeout: WAIT });
  // Stopped means stopped: no reconnect attempts with the refused token.
  await page.waitForTimeout(1000);
  const stopped = await page.evaluate(() => ({ state: window.erin.state, states: window.erinStates.slice() }));
  assert.equal(stopped.state, 'stopped');
  assert.deepEqual(stopped.states.slice(-1), ['stopped:4003']);
  assert.ok(!stopped.states.slice(2).includes('reconnecting:'), stopped.states.join(' '));

  const after = await page.evaluate(async () => {
    // The revocation mark has one-second precision and refuses every JWT issued up to its
    // second (one minted in that second may predate the revoke): the new token is a later one.
    await new Promise((r) => setTimeout(r, 1100));
    const grant = await (await fetch('/demo/token', { method: 'POST', body: 'user=erin' })).json();
    await window.erin.setToken(grant.token);
    const started = Date.now();
    while (window.erin.state !== 'open' && Date.now() - started < 10_000) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const state = window.erin.state;
    window.erin.close();
    return state;
  });
  assert.equal(after, 'open');
  await page.close();
});

/** Starts an HTTP proxy on 127.0.0.1 in front of `target` (host:port) that forwards plain
 * requests, streaming the answers (SSE must not be buffered), and answers every WebSocket
 * upgrade with 400. Resolves with its host:port. */
async function noWebSocketProxy(target) {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const proxy = http.createServer((req, res) => {
    const upstream = http.request(
      { host, port, method: req.method, path: req.url, headers: { ...req.headers, host: target } },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        // Node holds the head back until the first body byte, and a stream of queues says
        // nothing until its first message or keep-alive: pass the head on at once.
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  proxy.upgrades = 0;
  proxy.on('upgrade', (req, socket) => {
    proxy.upgrades += 1;
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  proxies.push(proxy);
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  // Bounded lifetime even if `after` never runs.
  setTimeout(() => {
    proxy.closeAllConnections();
    proxy.close();
  }, 120_000).unref();
  return { proxy, addr: `127.0.0.1:${proxy.address().port}` };
}

/** `wsmq-cli queue stats Q --json`. */
function queueStats(queue) {
  const args = ['--redis-url', env('WSMQ_DEMO_REDIS_URL'), '--ns', env('WSMQ_DEMO_NS'), '--json', 'queue', 'stats', queue];
  return JSON.parse(execFileSync(env('WSMQ_DEMO_CLI'), args, { timeout: 30_000, stdio: ['ignore', 'pipe', 'inherit'] }));
}

test('behind a proxy that refuses WebSocket upgrades the demo runs on SSE: receives and acks', async (t) => {
  const { proxy, addr } = await noWebSocketProxy(A);
  let sam;
  let walt;

  await t.test('sam signs in through the proxy and the page says SSE', async () => {
    sam = await context.newPage();
    sam.on('pageerror', (err) => console.error('[sam page error]', err));
    await sam.goto(`http://${addr}/demo`);
    await sam.fill('#name', 'sam');
    await sam.click('#signin-form button[type=submit]');
    await sam.waitForSelector('#state[data-state="open"]');
    await sam.waitForSelector('#transport[data-transport="sse"]');
    assert.equal(await sam.textContent('#transport'), 'SSE');
    assert.ok(proxy.upgrades >= 1, 'the page tried the WebSocket first');
    // Sending needs the WebSocket: the composer says so rather than failing.
    await openDm(sam, 'walt');
    assert.ok(await sam.isDisabled('#text'));
    walt = await signIn(A, [], 'walt');
    assert.equal(await walt.textContent('#transport'), 'WebSocket');
  });

  await t.test('a room message reaches sam over SSE', async () => {
    for (const page of [sam, walt]) {
      await page.fill('#room-name', 'sse-room');
      await page.press('#room-name', 'Enter');
      await page.waitForSelector('#messages li[data-system="joined"]');
    }
    await say(walt, 'Hello sse-room, from walt');
    await message(sam, 'Hello sse-room, from walt').waitFor();
  });

  await t.test('a direct message reaches sam and is acked over HTTP', async () => {
    await openDm(walt, 'sam');
    await say(walt, 'A direct message over SSE');
    await sam.waitForSelector(`#dms li[data-conv="dm:${USER_PREFIX}walt"]`);
    await openConv(sam, `dm:${USER_PREFIX}walt`);
    await message(sam, 'A direct message over SSE').waitFor();
    // Acked by POST /api/ack through the proxy: the message left sam's queue.
    const started = Date.now();
    let stats = queueStats(`${USER_PREFIX}sam`);
    while (stats.msgs !== 0 && Date.now() - started < WAIT) {
      await sam.waitForTimeout(200);
      stats = queueStats(`${USER_PREFIX}sam`);
    }
    assert.equal(stats.msgs, 0, JSON.stringify(stats));
    assert.ok(stats.totalrecv >= 1, JSON.stringify(stats));
  });

  await sam?.close();
  await walt?.close();
});
