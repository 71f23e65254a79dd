// Publishes as the Express + Socket.IO + RabbitMQ chat's server does: npm amqplib,
// `channel.publish(exchange, userId, body)` to a direct exchange, with the recipient as routing
// key (and, here, a confirm channel so the caller knows the broker has the messages).
//
// Started by crates/wsmq-gateway/tests/amqp.rs as
//   node amqp-publish.js <amqp-url> <exchange> <routing-key> <body>...
// one message per body, in order. Prints {"ok": <count>} on stdout, or {"err": "..."} and exits 1.
// The URL comes from the test (a throwaway broker's); it is never printed.
"use strict";

const amqp = require("amqplib");

async function main() {
  const [url, exchange, routingKey, ...bodies] = process.argv.slice(2);
  if (!url || !exchange || !routingKey || bodies.length === 0) {
    throw new Error("usage: node amqp-publish.js <amqp-url> <exchange> <routing-key> <body>...");
  }
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    for (const body of bodies) {
      channel.publish(exchange, routingKey, Buffer.from(body));
    }
    await channel.waitForConfirms();
    await channel.close();
  } finally {
    await connection.close();
  }
  process.stdout.write(JSON.stringify({ ok: bodies.length }) + "\n");
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ err: String(err && err.message) }) + "\n");
  process.exit(1);
});
