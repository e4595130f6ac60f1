import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { OrderConfirmedSchema, file_shop_order_v1_order_events } from "#gen/shop/order/v1/order_events_pb.js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { orderEventStream, testDeadLetterStream } from "#tests/support/kit-streams.js";
import { connectBus, type BusConnection } from "./connection.js";
import { listDeadLetters, publishDeadLetter } from "./dead-letters.js";
import { on, startEventConsumer, type EventConsumer } from "./event-consumer.js";
import { toHeaders } from "./event-headers.js";
import { createInboxTable } from "./inbox.js";
import { ensureStream } from "./streams.js";

/**
 * Listing reads the dead-letter stream as the operator's NATS user does (npm run dlq, the
 * operator console): in order, across the gaps replays leave, and no further than asked.
 */
describe("listing dead letters", () => {
  let nats: TestNats;
  let suite: BusConnection;
  let operator: BusConnection;
  /** Dead-letter sequences, in the order they were parked. */
  const parked: number[] = [];

  beforeAll(async () => {
    nats = await startTestNats();
    suite = connectBus({ url: nats.url, name: "dead-letters-test", logger: silentLogger });
    operator = connectBus({ url: nats.urlFor("operator"), name: "dead-letters-operator", logger: silentLogger });
    const { js, jsm } = await suite.ready;
    await ensureStream(jsm, testDeadLetterStream);
    for (let i = 1; i <= 6; i++) {
      await publishDeadLetter(js, { subject: "shop.order.v1.OrderConfirmed", data: new Uint8Array([i]), streamSequence: i, deliveries: 3 }, "listing-test", `reason ${i}`);
    }
    const info = await jsm.streams.info(testDeadLetterStream.name);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) parked.push(seq);
    // A gap in the middle, as a replay leaves (which deletes the letter it republished).
    await jsm.streams.deleteMessage(testDeadLetterStream.name, parked[2]!);
  }, 30_000);
  afterAll(async () => {
    await operator?.close();
    await suite?.close();
    await nats?.stop();
  });

  it("lists every letter oldest first, skipping the replayed one", async () => {
    const letters = await listDeadLetters((await operator.ready).jsm, testDeadLetterStream);
    expect(letters.map((l) => l.reason)).toEqual(["reason 1", "reason 2", "reason 4", "reason 5", "reason 6"]);
    expect(letters.map((l) => l.seq)).toEqual([parked[0], parked[1], parked[3], parked[4], parked[5]]);
    expect(letters.every((l) => l.consumer === "listing-test" && l.originalSubject === "shop.order.v1.OrderConfirmed" && l.deliveries === 3)).toBe(true);
  });

  it("stops after `limit` letters, the oldest, counting none for the gap", async () => {
    const { jsm } = await operator.ready;
    expect((await listDeadLetters(jsm, testDeadLetterStream, { limit: 3 })).map((l) => l.reason)).toEqual(["reason 1", "reason 2", "reason 4"]);
    expect((await listDeadLetters(jsm, testDeadLetterStream, { limit: 1 })).map((l) => l.reason)).toEqual(["reason 1"]);
    expect(await listDeadLetters(jsm, testDeadLetterStream, { limit: 100 })).toHaveLength(5);
    await expect(listDeadLetters(jsm, testDeadLetterStream, { limit: 0 })).rejects.toThrow("limit must be at least 1, got 0");
  });
});

/**
 * NATS refuses a header value with a line break in it, and the reason travels in a header: a
 * failure whose message spans lines (every database error: "Failed query: ...\nparams: ...")
 * must still be parked, with its reason on one line, not redelivered for ever.
 */
describe("dead-lettering a failure whose message spans lines", () => {
  const schema = pgSchema("dead_letter_test");
  const inbox = createInboxTable(schema);
  const failure = 'Failed query: insert into "notification"."notifications" ("order_id") values ($1)\r\nparams: order-1\n\tat the end\u0000';
  let nats: TestNats;
  let bus: BusConnection;
  let sql: ReturnType<typeof connect>;
  let consumer: EventConsumer;
  let attempts = 0;

  beforeAll(async () => {
    nats = await startTestNats();
    sql = connect(await createTestDatabase());
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, inbox }))) await sql.unsafe(statement);
    bus = connectBus({ url: nats.url, name: "dead-letter-lines-test", logger: silentLogger });
    consumer = startEventConsumer({
      bus,
      db: drizzle(sql),
      inbox,
      stream: orderEventStream,
      deadLetters: testDeadLetterStream,
      contract: file_shop_order_v1_order_events,
      durable: "dead-letter-lines-test",
      handlers: [
        on(OrderConfirmedSchema, () => {
          attempts++;
          throw new Error(failure);
        }),
      ],
      logger: silentLogger,
      maxDeliver: 2,
      backoffMs: [20],
    });
    const { jsm } = await bus.ready;
    await ensureStream(jsm, orderEventStream);
    await eventually(async () => expect((await jsm.consumers.info(orderEventStream.name, "dead-letter-lines-test")).name).toBe("dead-letter-lines-test"));
  }, 30_000);
  afterAll(async () => {
    await consumer?.stop();
    await bus?.close();
    await sql?.end();
    await nats?.stop();
  });

  it("parks the event after its deliveries, with the line breaks and control characters folded to spaces", async () => {
    const { js, jsm } = await bus.ready;
    const id = randomUUID();
    const data = toBinary(OrderConfirmedSchema, create(OrderConfirmedSchema, { orderId: "order-1", customerId: "c" }));
    await js.publish("shop.order.v1.OrderConfirmed", data, { headers: toHeaders({ id, type: "shop.order.v1.OrderConfirmed", source: "test", time: new Date() }), msgID: id });

    const [letter] = await eventually(async () => {
      const found = await listDeadLetters(jsm, testDeadLetterStream);
      expect(found).toHaveLength(1);
      return found;
    }, 10_000);
    expect(letter).toMatchObject({
      eventId: id,
      consumer: "dead-letter-lines-test",
      deliveries: 2,
      reason: 'failed 2 deliveries; last error: Failed query: insert into "notification"."notifications" ("order_id") values ($1) params: order-1 at the end',
    });
    // Parked, so settled: no further delivery after the second.
    await eventually(async () => expect((await jsm.consumers.info(orderEventStream.name, "dead-letter-lines-test")).num_ack_pending).toBe(0));
    expect(attempts).toBe(2);
  });
});
