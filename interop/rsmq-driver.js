// Drives the real npm rsmq library for wsmq's interop suite, one JSON request per stdin line.
//
// Started by crates/wsmq-rsmq/tests/support/node.rs as `node rsmq-driver.js <port> <ns> [host]`.
// Request:  {"seq": 1, "method": "sendMessage", "args": {"qname": "q", "message": "hi"}}
// Reply:    {"seq": 1, "ok": <result>}   or   {"seq": 1, "err": {"name": "queueNotFound", "message": "..."}}
// `method` is any rsmq method taking (options, cb); "quit" closes the connections and exits.
// A second client with realtime on is used when args carry "realtime": true.
// Requests run concurrently: a caller that needs ordering waits for each reply before the next.
// When stdin closes (the test finished or died) the driver closes its connections and exits.
"use strict";

const readline = require("readline");
const RedisSMQ = require("rsmq");

const [port, ns, host = "127.0.0.1"] = process.argv.slice(2);
if (!port || !ns) {
  process.stderr.write("usage: node rsmq-driver.js <port> <ns> [host]\n");
  process.exit(2);
}

// rsmq reports script-load failures with console.log; stdout carries only replies.
console.log = (...args) => console.error(...args);

const plain = new RedisSMQ({ host, port: Number(port), ns });
const realtime = new RedisSMQ({ host, port: Number(port), ns, realtime: true });
const methods = new Set([
  "createQueue", "listQueues", "deleteQueue", "getQueueAttributes", "setQueueAttributes",
  "sendMessage", "receiveMessage", "popMessage", "deleteMessage", "changeMessageVisibility",
]);

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// Requests still running, and whether stdin has closed: the connections are closed only
// when both say so, since an rsmq call may still have commands to send (quit() would
// abort them).
let pending = 0;
let closing = false;
let closed = false;
function maybeQuit() {
  if (closing && pending === 0 && !closed) {
    closed = true;
    // The process ends once both sockets have closed.
    plain.quit();
    realtime.quit();
  }
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("close", () => {
  closing = true;
  maybeQuit();
});
lines.on("line", (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    reply({ seq: null, err: { name: "driverError", message: "request is not JSON" } });
    return;
  }
  const { seq, method } = req;
  const args = Object.assign({}, req.args || {});
  if (method === "quit") {
    reply({ seq, ok: true });
    lines.close();
    return;
  }
  if (!methods.has(method)) {
    reply({ seq, err: { name: "driverError", message: `unknown method ${method}` } });
    return;
  }
  const client = args.realtime ? realtime : plain;
  delete args.realtime;
  pending += 1;
  const done = (err, result) => {
    pending -= 1;
    if (err) {
      reply({ seq, err: { name: err.name || "Error", message: String(err.message || err) } });
    } else {
      reply({ seq, ok: result === undefined ? null : result });
    }
    maybeQuit();
  };
  // listQueues takes only a callback.
  if (method === "listQueues") {
    client.listQueues(done);
  } else {
    client[method](args, done);
  }
});
