// Drives the real npm rsmq library for wsmq's interop suite, one JSON request per stdin line.
//
// Started by crates/wsmq-rsmq/tests/interop.rs as `node rsmq-driver.js <port> <ns>`.
// Request:  {"seq": 1, "method": "sendMessage", "args": {"qname": "q", "message": "hi"}}
// Reply:    {"seq": 1, "ok": <result>}   or   {"seq": 1, "err": {"name": "queueNotFound", "message": "..."}}
// `method` is any rsmq method taking (options, cb); "quit" closes the connection and exits.
// A second client with realtime on is used when args carry "realtime": true.
"use strict";

const readline = require("readline");
const RedisSMQ = require("rsmq");

const [port, ns] = process.argv.slice(2);
if (!port || !ns) {
  process.stderr.write("usage: node rsmq-driver.js <port> <ns>\n");
  process.exit(2);
}

const plain = new RedisSMQ({ host: "127.0.0.1", port: Number(port), ns });
const realtime = new RedisSMQ({ host: "127.0.0.1", port: Number(port), ns, realtime: true });
const methods = new Set([
  "createQueue", "listQueues", "deleteQueue", "getQueueAttributes", "setQueueAttributes",
  "sendMessage", "receiveMessage", "popMessage", "deleteMessage", "changeMessageVisibility",
]);

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
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
    plain.quit();
    realtime.quit();
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
  // listQueues takes only a callback.
  const done = (err, result) => {
    if (err) {
      reply({ seq, err: { name: err.name || "Error", message: String(err.message || err) } });
    } else {
      reply({ seq, ok: result === undefined ? null : result });
    }
  };
  if (method === "listQueues") {
    client.listQueues(done);
  } else {
    client[method](args, done);
  }
});
