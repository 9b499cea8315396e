// Node's amqplib against WarrenMQ: confirms, topic routing, prefetch, ack/nack-requeue.
// Usage: node amqplib_roundtrip.js AMQP_URL ; prints one JSON line with what it saw.
"use strict";
const amqp = require("amqplib");

async function main(url) {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange("node.events", "topic", { durable: false });
  const q = await ch.assertQueue("", { exclusive: true });
  await ch.bindQueue(q.queue, "node.events", "order.*");
  for (let i = 0; i < 10; i++) {
    ch.publish("node.events", i % 2 ? "order.placed" : "user.created",
      Buffer.from(JSON.stringify({ i })), { headers: { n: i }, contentType: "application/json" });
  }
  await ch.waitForConfirms();
  await ch.prefetch(2);
  const seen = [];
  let nacked = false;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timeout")), 5000);
    ch.consume(q.queue, (msg) => {
      const body = JSON.parse(msg.content.toString());
      if (body.i === 3 && !nacked) {
        nacked = true;
        ch.nack(msg, false, true);
        return;
      }
      seen.push({ i: body.i, redelivered: msg.fields.redelivered, n: msg.properties.headers.n });
      ch.ack(msg);
      if (seen.length === 5) { clearTimeout(timer); resolve(); }
    });
  });
  await conn.close();
  console.log(JSON.stringify({ seen }));
}

main(process.argv[2]).catch((err) => { console.error(err); process.exit(1); });
