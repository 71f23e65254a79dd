// The npm rsmq publisher of `cargo xtask bench delivery`: npm rsmq 0.12.4 with realtime on,
// `sendMessage` one message at a time (each awaited before the next), paced by schedule
// (message k is due at start + k / rate, so a slow send is caught up by the next ones),
// message k to queue `<prefix><k mod queues>`.
//
//   node rsmq-publisher.js --redis-url URL --prefix P --queues N --messages M --rate R
//                          [--body-size S] [--timeout-secs T]
//
// It speaks the stdio protocol of wsmq-load (crates/wsmq-load/src/lib.rs), so xtask runs it
// beside the load processes: one `{"event":"ready"}` line once Redis is connected, then a
// line on stdin is the go-ahead, then one `{"event":"result",…}` line with what was sent.
// Bodies are `<k> <unix µs> <padding>`, the load tool's format, so that its consumers
// measure publish → deliver latency from them.
"use strict";

const { parseArgs } = require("util");
const { performance } = require("perf_hooks");
const readline = require("readline");
const RedisSMQ = require("rsmq");

// rsmq reports script-load failures with console.log; stdout carries only the protocol.
console.log = (...args) => console.error(...args);

const { values: opts } = parseArgs({
  options: {
    "redis-url": { type: "string" },
    prefix: { type: "string", default: "bench-" },
    queues: { type: "string", default: "100" },
    messages: { type: "string", default: "1000" },
    rate: { type: "string", default: "1000" },
    "body-size": { type: "string", default: "100" },
    "timeout-secs": { type: "string", default: "120" },
  },
});
if (!opts["redis-url"]) {
  process.stderr.write("rsmq-publisher: --redis-url is required\n");
  process.exit(2);
}
const url = new URL(opts["redis-url"]);
const queues = Number(opts.queues);
const messages = Number(opts.messages);
const rate = Number(opts.rate);
const bodySize = Number(opts["body-size"]);
const timeoutMs = Number(opts["timeout-secs"]) * 1000;

// Date.now() has ms steps; this is the same wall clock to a few µs, which the latency
// of a local delivery (well under a ms at best) needs.
function unixMicros() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

function body(k) {
  const text = `${k} ${unixMicros()} `;
  return text.length < bodySize ? text + "x".repeat(bodySize - text.length) : text;
}

function emit(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function cpuSeconds() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The driver's go-ahead: one line on stdin, or its end. The driver keeps stdin open until
// this process exits, and an open stdin would keep it running, so it is let go of here.
function goAhead() {
  return new Promise((resolve) => {
    const lines = readline.createInterface({ input: process.stdin });
    const done = () => {
      lines.close();
      process.stdin.destroy();
      resolve();
    };
    lines.once("line", done);
    lines.once("close", resolve);
  });
}

async function main() {
  const rsmq = new RedisSMQ({
    host: url.hostname,
    port: Number(url.port),
    ns: "rsmq",
    realtime: true,
  });
  if (!rsmq.connected) {
    await new Promise((resolve) => rsmq.once("connect", resolve));
  }
  emit({ event: "ready" });
  await goAhead();

  const cpuBefore = cpuSeconds();
  const start = performance.now();
  const deadline = start + timeoutMs;
  let sent = 0;
  let firstSendUs = 0;
  let lastSendUs = 0;
  for (let k = 0; k < messages && performance.now() < deadline; k++) {
    const wait = start + (k * 1000) / rate - performance.now();
    if (wait > 0) {
      await sleep(wait);
    }
    const message = body(k);
    await rsmq.sendMessageAsync({ qname: `${opts.prefix}${k % queues}`, message });
    const now = unixMicros();
    sent += 1;
    firstSendUs = firstSendUs || now;
    lastSendUs = now;
  }
  emit({
    event: "result",
    sent,
    first_send_us: firstSendUs,
    last_send_us: lastSendUs,
    cpu_seconds: cpuSeconds() - cpuBefore,
  });
  rsmq.quit();
}

// node_redis retries a lost connection forever, so bound the whole process too.
setTimeout(() => {
  process.stderr.write("rsmq-publisher: timed out\n");
  process.exit(1);
}, timeoutMs + 30_000).unref();

main().catch((err) => {
  process.stderr.write(`rsmq-publisher: ${err.stack || err}\n`);
  process.exit(1);
});
