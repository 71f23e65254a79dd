// Throughput of the full send -> receive -> delete cycle through npm rsmq 0.12.4, one call
// at a time: the baseline half of `cargo xtask bench rsmq` (xtask installs this folder's
// packages, runs this script against its own redis-server and writes docs/benchmarks.md).
//
//   node rsmq-bench.js --redis-url URL --redis-pid PID [--messages N] [--runs R]
//                      [--body-size S] [--warmup W] [--timeout-secs T]
//
// Each run sends N messages (each sendMessage awaited before the next), then receives
// and deletes them (receiveMessage, then deleteMessage, each awaited), and prints one JSON
// line on stdout with the same fields as crates/wsmq-rsmq/examples/bench.rs: wall time per
// phase, Redis and own CPU seconds (utime + stime from /proc/<pid>/stat), requests sent,
// and the INFO commandstats call deltas. Every loop is bounded by N, each run by the
// timeout.
"use strict";

const fs = require("fs");
const { parseArgs } = require("util");
const RedisSMQ = require("rsmq");

// Linux reports process times in USER_HZ ticks, fixed at 100/s by the kernel ABI.
const TICKS_PER_SECOND = 100;

// rsmq reports script-load failures with console.log; stdout carries only results.
console.log = (...args) => console.error(...args);

const { values: opts } = parseArgs({
  options: {
    "redis-url": { type: "string" },
    "redis-pid": { type: "string" },
    messages: { type: "string", default: "20000" },
    runs: { type: "string", default: "1" },
    "body-size": { type: "string", default: "100" },
    warmup: { type: "string", default: "1000" },
    "timeout-secs": { type: "string", default: "300" },
  },
});
if (!opts["redis-url"] || !opts["redis-pid"]) {
  process.stderr.write("rsmq-bench: --redis-url and --redis-pid are required\n");
  process.exit(2);
}
const url = new URL(opts["redis-url"]);
const redisPid = Number(opts["redis-pid"]);
const messages = Number(opts.messages);
const runs = Number(opts.runs);
const body = "x".repeat(Number(opts["body-size"]));
const warmup = Number(opts.warmup);
const timeoutMs = Number(opts["timeout-secs"]) * 1000;

const rsmq = new RedisSMQ({ host: url.hostname, port: Number(url.port), ns: "npm-bench" });

// Count what the client waits on. rsmq sends MULTI ... EXEC blocks and single commands;
// a block travels as one write and comes back as one reply, so it counts as one request,
// like one EVALSHA on the Rust side. Every command, queued ones included, passes through
// internal_send_command (node_redis 3.1.2, pinned by package-lock.json).
let requests = 0;
let inMulti = false;
const client = rsmq.redis;
const send = client.internal_send_command;
client.internal_send_command = function (command) {
  if (command.command === "multi") {
    inMulti = true;
    requests += 1;
  } else if (command.command === "exec") {
    inMulti = false;
  } else if (!inMulti) {
    requests += 1;
  }
  return send.call(this, command);
};

function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may contain spaces, so count from its ')': field 3 is
  // the first after it, utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[14 - 3]) + Number(fields[15 - 3]);
}

function info() {
  return new Promise((resolve, reject) => {
    client.info("commandstats", (err, text) => (err ? reject(err) : resolve(text)));
  });
}

async function sample() {
  const commands = {};
  for (const line of (await info()).split("\n")) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m) commands[m[1]] = Number(m[2]);
  }
  return { redis: cpuTicks(redisPid), own: cpuTicks("self"), requests, commands };
}

async function cycle(qname, n) {
  const redisTicks = cpuTicks(redisPid);
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i += 1) {
    await rsmq.sendMessageAsync({ qname, message: body });
  }
  const sent = process.hrtime.bigint();
  const sendRedisTicks = cpuTicks(redisPid) - redisTicks;
  for (let i = 0; i < n; i += 1) {
    const msg = await rsmq.receiveMessageAsync({ qname });
    if (!msg.id) throw new Error(`queue ran dry after ${i} of ${n} messages`);
    await rsmq.deleteMessageAsync({ qname, id: msg.id });
  }
  const done = process.hrtime.bigint();
  return {
    send: Number(sent - started) / 1e9,
    receive: Number(done - sent) / 1e9,
    sendRedisCpu: sendRedisTicks / TICKS_PER_SECOND,
  };
}

async function main() {
  // node_redis retries a lost connection forever, so bound the whole process too.
  setTimeout(() => {
    process.stderr.write(`rsmq-bench: gave up after ${(runs + 1) * timeoutMs} ms\n`);
    process.exit(1);
  }, (runs + 1) * timeoutMs).unref();
  if (warmup > 0) {
    // Lets V8 optimise the hot paths and rsmq load its scripts before anything is timed.
    const qname = `warmup-${process.pid}`;
    await rsmq.createQueueAsync({ qname });
    await cycle(qname, warmup);
    await rsmq.deleteQueueAsync({ qname });
  }
  for (let run = 1; run <= runs; run += 1) {
    const qname = `npm-${process.pid}-${run}`;
    await rsmq.createQueueAsync({ qname });
    const timer = setTimeout(() => {
      process.stderr.write(`rsmq-bench: run ${run} took longer than ${timeoutMs} ms\n`);
      process.exit(1);
    }, timeoutMs);
    const before = await sample();
    const started = process.hrtime.bigint();
    const phases = await cycle(qname, messages);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const after = await sample();
    clearTimeout(timer);
    await rsmq.deleteQueueAsync({ qname });

    const redisCommands = {};
    for (const [name, calls] of Object.entries(after.commands)) {
      const delta = calls - (before.commands[name] || 0);
      // The INFO that took `before` is counted in `after`; it is not benchmark work.
      if (delta > 0 && name !== "info") redisCommands[name] = delta;
    }
    const result = {
      mode: "npm",
      batch: 1,
      concurrency: 1,
      messages,
      body_bytes: body.length,
      seconds,
      send_seconds: phases.send,
      receive_delete_seconds: phases.receive,
      redis_cpu_seconds: (after.redis - before.redis) / TICKS_PER_SECOND,
      redis_cpu_send_seconds: phases.sendRedisCpu,
      client_cpu_seconds: (after.own - before.own) / TICKS_PER_SECOND,
      // The INFO of `after` is sent after the clock stopped but before this snapshot.
      requests: after.requests - before.requests - 1,
      redis_commands: redisCommands,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  await rsmq.quitAsync();
}

main().catch((err) => {
  process.stderr.write(`rsmq-bench: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
