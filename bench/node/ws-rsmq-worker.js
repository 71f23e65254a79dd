// The Node design that wsmq replaces, rebuilt minimal for `cargo xtask bench`: a `ws`
// server where a client sends `/subscribe/<queue>` and gets every message of that queue
// as `{"message":"<body>"}`, one npm `rsmq-worker` (default options) per subscription,
// each message deleted right after its frame is handed to the socket.
//
//   node ws-rsmq-worker.js --port P --redis-url redis://127.0.0.1:PORT
//
// Prints `listening <port>` on stdout once the server accepts connections. Runs until
// killed (xtask stops it by PID). Other text from a client is ignored, as the original did.
"use strict";

const { parseArgs } = require("util");
const { WebSocketServer } = require("ws");
const RSMQWorker = require("rsmq-worker");

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    "redis-url": { type: "string", default: "redis://127.0.0.1:6379" },
  },
});
const redis = new URL(opts["redis-url"]);

// rsmq-worker logs through console; stdout carries only the `listening` line.
console.log = (...args) => console.error(...args);

const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(opts.port) });

wss.on("connection", (ws) => {
  const workers = [];
  ws.on("message", (data) => {
    const text = data.toString();
    const match = /^\/subscribe\/([A-Za-z0-9_-]{1,160})$/.exec(text);
    if (!match || workers.length >= 16) {
      return;
    }
    const worker = new RSMQWorker(match[1], {
      host: redis.hostname,
      port: Number(redis.port),
    });
    worker.on("message", (message, next) => {
      if (ws.readyState === ws.OPEN) {
        ws.send(JSON.stringify({ message }));
        next(); // deletes the message
      } else {
        next(false); // keep it for the next session
      }
    });
    worker.on("error", (err) => process.stderr.write(`rsmq-worker: ${err}\n`));
    worker.start();
    workers.push(worker);
  });
  ws.on("close", () => {
    for (const worker of workers) {
      worker.quit();
    }
  });
});

wss.on("listening", () => {
  process.stdout.write(`listening ${wss.address().port}\n`);
});
