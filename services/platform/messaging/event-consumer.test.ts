import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { pgSchema, text, uuid } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { OrderConfirmedSchema, file_shop_order_v1_order_events } from "#gen/shop/order/v1/order_events_pb.js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { createInboxTable } from "./inbox.js";
import { connectBus, type BusConnection } from "./connection.js";
import { listDeadLetters, replayDeadLetter } from "./dead-letters.js";
import { on, startEventConsumer, type EventConsumer } from "./event-consumer.js";
import { toHeaders } from "./event-headers.js";
import { ensureStream } from "./streams.js";
import { orderEventStream, testDeadLetterStream } from "#tests/support/kit-streams.js";

const schema = pgSchema("consumer_test");
const inbox = createInboxTable(schema);
const effects = schema.table("effects", { eventId: uuid("event_id").notNull(), orderId: text("order_id").notNull() });
const stream = orderEventStream;

describe("event consumer against real NATS and Postgres", () => {
  let nats: TestNats;
  let bus: BusConnection;
  let sql: ReturnType<typeof connect>;
  let consumer: EventConsumer;
  /** Orders whose handler fails, and how many times it has. */
  const failures = new Map<string, number>();
  const failUntil = new Map<string, number>();
  /** Orders whose handler finds the database refusing connections (53300), and how many more times it will. */
  const outages = new Map<string, number>();

  beforeAll(async () => {
    nats = await startTestNats();
    const url = await createTestDatabase();
    sql = connect(url);
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, inbox, effects }))) await sql.unsafe(statement);
    bus = connectBus({ url: nats.url, name: "consumer-test", logger: silentLogger });
    consumer = startEventConsumer({
      bus,
      db: drizzle(sql),
      inbox,
      stream,
      deadLetters: testDeadLetterStream,
      contract: file_shop_order_v1_order_events,
      durable: "consumer-test",
      handlers: [
        on(OrderConfirmedSchema, async (tx, event, envelope) => {
          const outagesLeft = outages.get(event.orderId) ?? 0;
          if (outagesLeft > 0) {
            outages.set(event.orderId, outagesLeft - 1);
            throw Object.assign(new Error("sorry, too many clients already"), { code: "53300" });
          }
          const failed = failures.get(event.orderId) ?? 0;
          if (failed < (failUntil.get(event.orderId) ?? 0)) {
            failures.set(event.orderId, failed + 1);
            throw new Error(`transient failure ${failed + 1}`);
          }
          await tx.insert(effects).values({ eventId: envelope.id, orderId: event.orderId });
        }),
      ],
      logger: silentLogger,
      maxDeliver: 3,
      backoffMs: [20, 40],
    });
    const { jsm } = await bus.ready;
    // The stream is its owner's to create, as order's relay creates SHOP_ORDER; the consumer waits for it.
    await ensureStream(jsm, stream);
    await eventually(async () => expect((await jsm.consumers.info(stream.name, "consumer-test")).name).toBe("consumer-test"));
  });
  afterAll(async () => {
    await consumer?.stop();
    await bus?.close();
    await sql?.end();
    await nats?.stop();
  });

  async function publish(opts: { orderId?: string; id?: string; type?: string; data?: Uint8Array; msgID?: string; omitId?: boolean }) {
    const { js } = await bus.ready;
    const id = opts.id ?? randomUUID();
    const type = opts.type ?? "shop.order.v1.OrderConfirmed";
    const headers = toHeaders({ id, type, source: "test", time: new Date() });
    if (opts.omitId) headers.delete("ce-id");
    const data = opts.data ?? toBinary(OrderConfirmedSchema, create(OrderConfirmedSchema, { orderId: opts.orderId ?? "o", customerId: "c" }));
    await js.publish(type, data, { headers, msgID: opts.msgID ?? id });
    return id;
  }

  const effectCount = async (orderId: string) => Number((await sql`select count(*)::int as n from consumer_test.effects where order_id = ${orderId}`)[0]?.["n"]);

  it("applies an event whose ce-id is in upper case, once", async () => {
    const id = randomUUID().toUpperCase();
    await publish({ orderId: "shouted", id });
    await publish({ orderId: "shouted", id, msgID: `again-${id}` });
    await eventually(async () => expect(await effectCount("shouted")).toBe(1));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await effectCount("shouted")).toBe(1);
  });

  it("applies an event once, even when it is delivered twice", async () => {
    const id = await publish({ orderId: "twice" });
    await publish({ orderId: "twice", id, msgID: `again-${id}` }); // same event, new Nats-Msg-Id: a real redelivery
    await eventually(async () => expect(Number((await sql`select count(*)::int as n from consumer_test.inbox where event_id = ${id}`)[0]?.["n"])).toBe(1));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await effectCount("twice")).toBe(1);
  });

  it("retries a failing handler with backoff and applies it once it recovers", async () => {
    failUntil.set("flaky", 2);
    await publish({ orderId: "flaky" });
    await eventually(async () => expect(await effectCount("flaky")).toBe(1));
    expect(failures.get("flaky")).toBe(2);
  });

  it("waits out a database that refuses work without spending the event's deliveries", async () => {
    const { jsm } = await bus.ready;
    const before = (await listDeadLetters(jsm, testDeadLetterStream)).length;
    outages.set("outage", 5); // more failures than maxDeliver (3) allows a failing handler
    await publish({ orderId: "outage" });
    await eventually(async () => expect(await effectCount("outage")).toBe(1));
    expect(outages.get("outage")).toBe(0);
    expect((await listDeadLetters(jsm, testDeadLetterStream)).length).toBe(before);
  });

  it("applies a burst of events once each, in batches, retrying a failing one among them alone", async () => {
    failUntil.set("burst-17", 2);
    const orders = Array.from({ length: 40 }, (_, i) => `burst-${i}`);
    await Promise.all(orders.map((orderId) => publish({ orderId })));
    await eventually(async () => expect(Number((await sql`select count(*)::int as n from consumer_test.effects where order_id like 'burst-%'`)[0]?.["n"])).toBe(40), 10_000);
    const perOrder = await sql`select order_id, count(*)::int as n from consumer_test.effects where order_id like 'burst-%' group by order_id`;
    expect(perOrder).toHaveLength(40);
    expect(perOrder.every((row) => row["n"] === 1)).toBe(true);
    expect(failures.get("burst-17")).toBe(2);
  });

  it("dead-letters poison and exhausted messages with their reason, and keeps consuming", async () => {
    failUntil.set("hopeless", 100);
    const hopeless = await publish({ orderId: "hopeless" });
    const garbage = await publish({ data: new Uint8Array([0x0a, 0xff, 0xff]) });
    const unknown = await publish({ type: "shop.order.v1.OrderTeleported" });
    await publish({ omitId: true, msgID: randomUUID() });
    await publish({ orderId: "after-poison" });

    await eventually(async () => expect(await effectCount("after-poison")).toBe(1));
    const letters = await eventually(async () => {
      const found = await listDeadLetters((await bus.ready).jsm, testDeadLetterStream);
      expect(found).toHaveLength(4);
      return found;
    });
    const reasonFor = (id: string) => letters.find((l) => l.eventId === id)?.reason;
    expect(reasonFor(hopeless)).toMatch(/^failed 3 deliveries; last error: transient failure 3/);
    expect(reasonFor(garbage)).toMatch(/^undecodable shop.order.v1.OrderConfirmed payload/);
    expect(reasonFor(unknown)).toBe('unknown event type "shop.order.v1.OrderTeleported"');
    expect(letters.some((l) => l.reason === "missing header ce-id")).toBe(true);
    expect(letters.every((l) => l.consumer === "consumer-test")).toBe(true);
    expect(await effectCount("hopeless")).toBe(0);
  });

  it("replays a dead letter to its subject once the cause is fixed", async () => {
    failUntil.set("hopeless", 0);
    const { jsm, js } = await bus.ready;
    const letter = (await listDeadLetters(jsm, testDeadLetterStream)).find((l) => l.reason.startsWith("failed 3 deliveries"))!;
    await replayDeadLetter({ js, jsm }, testDeadLetterStream, letter.seq);
    await eventually(async () => expect(await effectCount("hopeless")).toBe(1));
    expect((await listDeadLetters(jsm, testDeadLetterStream)).map((l) => l.seq)).not.toContain(letter.seq);
  });

  it("skips, without dead-lettering, a declared event type it has no handler for", async () => {
    const { jsm } = await bus.ready;
    const before = (await listDeadLetters(jsm, testDeadLetterStream)).length;
    const id = await publish({ type: "shop.order.v1.OrderCreated" });
    await eventually(async () => expect((await jsm.consumers.info(stream.name, "consumer-test")).num_ack_pending).toBe(0));
    expect((await listDeadLetters(jsm, testDeadLetterStream)).length).toBe(before);
    expect(Number((await sql`select count(*)::int as n from consumer_test.inbox where event_id = ${id}`)[0]?.["n"])).toBe(0);
  });
});
