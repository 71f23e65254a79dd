// The Node chat's RabbitMQ design, rebuilt minimal for `cargo xtask bench amqp`: a `ws` server
// where a client sends `/subscribe/<user>` and gets every message published to the direct
// exchange `wsmq.direct` with routing key <user> as `{"message":"<body>"}`. As in the chat, each
// subscription is an exclusive, auto-delete, server-named queue bound with the user id and
// consumed with `noAck: true` (npm amqplib, one connection and one channel for the server), so
// a message sent before the binding exists, or while the socket is away, is dropped.
//
//   node ws-amqplib.js --port P --amqp-url amqp://user:pass@127.0.0.1:PORT/
//
// Prints `listening <port>` on stdout once the server accepts connections. `GET /bound`
// answers the number of subscriptions whose queue is bound and consumed, so the bench can wait
// for all of them before it publishes. Runs until killed (xtask stops it by PID). The URL is
// never printed.
"use strict";

const http = require("http");
const { parseArgs } = require("util");
const { WebSocketServer } = require("ws");
const amqp = require("amqplib");

const EXCHANGE = "wsmq.direct";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    "amqp-url": { type: "string", default: "amqp://guest:guest@127.0.0.1:5672/" },
  },
});

async function main() {
  const connection = await amqp.connect(opts["amqp-url"]);
  connection.on("error", (err) => process.stderr.write(`amqplib: ${err.message}\n`));
  connection.on("close", () => {
    process.stderr.write("amqplib: connection closed\n");
    process.exit(1);
  });
  const channel = await connection.createChannel();
  await channel.assertExchange(EXCHANGE, "direct", { durable: true });
  let bound = 0;

  const server = http.createServer((req, res) => {
    if (req.url === "/bound") {
      res.end(String(bound));
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  const wss = new WebSocketServer({ server });

  wss.on("connection", (ws) => {
    const tags = [];
    let closed = false;
    ws.on("message", async (data) => {
      const match = /^\/subscribe\/([A-Za-z0-9_-]{1,160})$/.exec(data.toString());
      if (!match || tags.length >= 16) {
        return;
      }
      try {
        const { queue } = await channel.assertQueue("", { exclusive: true, autoDelete: true });
        await channel.bindQueue(queue, EXCHANGE, match[1]);
        const { consumerTag } = await channel.consume(
          queue,
          (msg) => {
            if (msg && ws.readyState === ws.OPEN) {
              ws.send(JSON.stringify({ message: msg.content.toString() }));
            }
          },
          { noAck: true },
        );
        if (closed) {
          // The socket went away while this was being set up.
          await channel.cancel(consumerTag);
          return;
        }
        tags.push(consumerTag);
        bound += 1;
      } catch (err) {
        process.stderr.write(`subscribe: ${err.message}\n`);
      }
    });
    ws.on("close", () => {
      closed = true;
      for (const tag of tags) {
        bound -= 1;
        // Cancelling the only consumer deletes the auto-delete queue.
        channel.cancel(tag).catch((err) => process.stderr.write(`cancel: ${err.message}\n`));
      }
    });
  });

  server.listen(Number(opts.port), "127.0.0.1", () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
}

main().catch((err) => {
  process.stderr.write(`ws-amqplib: ${err && err.message}\n`);
  process.exit(1);
});
