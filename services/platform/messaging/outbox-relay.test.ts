import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { eventually } from "#tests/support/eventually.js";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { appendToOutbox, createOutboxTable } from "./outbox.js";
import { connectBus, type BusConnection } from "./connection.js";
import { startOutboxRelay, type OutboxRelay } from "./outbox-relay.js";
import { orderEventStream } from "#tests/support/kit-streams.js";


const schema = pgSchema("relay_test");
const outbox = createOutboxTable(schema);
const stream = orderEventStream;

describe("outbox relay against real NATS and Postgres", () => {
  let nats: TestNats;
  let bus: BusConnection;
  let sql: ReturnType<typeof connect>;
  let db: ReturnType<typeof drizzle>;
  let relay: OutboxRelay;

  beforeAll(async () => {
    nats = await startTestNats();
    const url = await createTestDatabase();
    sql = connect(url);
    db = drizzle(sql);
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, outbox }))) await sql.unsafe(statement);
    bus = connectBus({ url: nats.url, name: "relay-test", logger: silentLogger });
    // A 60 s poll: anything published sooner was woken by NOTIFY.
    relay = startOutboxRelay({ sql, outbox, schemaName: "relay_test", stream, source: "relay-test", bus, logger: silentLogger, pollMs: 60_000 });
    // Let the relay make its first (empty) round and go to sleep on its 60 s poll.
    const { jsm } = await bus.ready;
    await eventually(async () => expect((await jsm.streams.info(stream.name)).config.name).toBe(stream.name));
    await new Promise((resolve) => setTimeout(resolve, 300));
  });
  afterAll(async () => {
    await relay?.stop();
    await bus?.close();
    await sql?.end();
    await nats?.stop();
  });

  const emit = (orderId: string, n = 1) =>
    db.transaction((tx) =>
      appendToOutbox(
        tx,
        outbox,
        Array.from({ length: n }, (_, i) => ({
          schema: OrderConfirmedSchema,
          message: create(OrderConfirmedSchema, { orderId, customerId: `c${i}` }),
          aggregateType: "order",
          aggregateId: orderId,
        })),
      ),
    );

  const pending = async () => Number((await sql`select count(*)::int as n from relay_test.outbox where published_at is null`)[0]?.["n"]);
  const streamed = async () => (await (await bus.ready).jsm.streams.info(stream.name)).state.messages;

  it("publishes a committed event, woken by NOTIFY, with its CloudEvents headers", async () => {
    const [id] = await emit("first");
    await eventually(async () => expect(await pending()).toBe(0), 10_000);
    const stored = await (await bus.ready).jsm.streams.getMessage(stream.name, { last_by_subj: "shop.order.v1.OrderConfirmed" });
    expect(stored?.header.get("ce-id")).toBe(id);
    expect(stored?.header.get("Nats-Msg-Id")).toBe(id);
    expect(stored?.header.get("ce-type")).toBe("shop.order.v1.OrderConfirmed");
    expect(stored?.header.get("content-type")).toBe("application/protobuf");
  });

  it("publishes nothing for a transaction that rolls back", async () => {
    const before = await streamed();
    await db
      .transaction(async (tx) => {
        await appendToOutbox(tx, outbox, [{ schema: OrderConfirmedSchema, message: create(OrderConfirmedSchema, { orderId: "ghost" }), aggregateType: "order", aggregateId: "ghost" }]);
        throw new Error("abort");
      })
      .catch(() => {});
    await emit("after-ghost");
    await eventually(async () => expect(await streamed()).toBe(before + 1), 10_000);
  });

  it("keeps rows while NATS is down and publishes each exactly once when it returns", async () => {
    const before = await streamed();
    await nats.kill();
    const first = await emit("outage", 30);
    const second = await emit("outage-2", 20);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await pending()).toBe(50);
    await nats.restart();
    await eventually(async () => expect(await pending()).toBe(0), 30_000);
    expect(await streamed()).toBe(before + 50);
    // Per-aggregate order: the stream holds each aggregate's events in outbox order.
    const { jsm } = await bus.ready;
    const info = await jsm.streams.info(stream.name);
    const seen: string[] = [];
    for (let seq = info.state.last_seq - 49; seq <= info.state.last_seq; seq++) seen.push((await jsm.streams.getMessage(stream.name, { seq }))!.header.get("ce-id"));
    expect(seen.filter((id) => first.includes(id))).toEqual(first);
    expect(seen.filter((id) => second.includes(id))).toEqual(second);
  });

  it("publishes every event once, each aggregate's in order, across batches and a window narrower than a batch", async () => {
    // A second relay on a schema of its own, with batches of 7 and a window of 5, so an
    // aggregate's events span batches and several of them wait in the window at once.
    const narrowSchema = pgSchema("relay_narrow");
    const narrowOutbox = createOutboxTable(narrowSchema);
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema: narrowSchema, outbox: narrowOutbox }))) await sql.unsafe(statement);
    const narrow = startOutboxRelay({ sql, outbox: narrowOutbox, schemaName: "relay_narrow", stream, source: "relay-test", bus, logger: silentLogger, pollMs: 60_000, batchSize: 7, window: 5 });
    try {
      const { jsm } = await bus.ready;
      const before = (await jsm.streams.info(stream.name)).state.last_seq;
      // Three aggregates' events interleaved, committed at once: 60 rows, 9 batches.
      const written = await db.transaction((tx) =>
        appendToOutbox(
          tx,
          narrowOutbox,
          Array.from({ length: 60 }, (_, i) => ({ schema: OrderConfirmedSchema, message: create(OrderConfirmedSchema, { orderId: `narrow-${i % 3}` }), aggregateType: "order", aggregateId: `narrow-${i % 3}` })),
        ),
      );
      await eventually(async () => expect(Number((await sql`select count(*)::int as n from relay_narrow.outbox where published_at is null`)[0]?.["n"])).toBe(0), 15_000);
      const after = (await jsm.streams.info(stream.name)).state.last_seq;
      expect(after - before).toBe(60);
      const seen: string[] = [];
      for (let seq = before + 1; seq <= after; seq++) seen.push((await jsm.streams.getMessage(stream.name, { seq }))!.header.get("ce-id"));
      for (const aggregate of [0, 1, 2]) {
        const ofAggregate = written.filter((_, i) => i % 3 === aggregate);
        expect(seen.filter((id) => ofAggregate.includes(id))).toEqual(ofAggregate);
      }
    } finally {
      await narrow.stop();
    }
  });

  it("holds an aggregate's later events behind one whose publish fails, and lets other aggregates through", async () => {
    const before = await streamed();
    // No stream takes this subject, so publishing it fails for as long as the row exists.
    const poison = { id: randomUUID(), aggregateType: "order", aggregateId: "stuck", eventType: "shop.nowhere.v1.Lost", payload: new Uint8Array([1]) };
    await db.insert(outbox).values(poison);
    const [held] = await emit("stuck");
    const [passed] = await emit("free");
    // "free" was written after "stuck"'s event, so once it is out, the relay has been past the held one.
    await eventually(async () => expect(await streamed()).toBe(before + 1), 10_000);
    // Eventually: the relay marks "free" published in its own statement after NATS has stored it.
    const stillPending = async () => (await sql`select id from relay_test.outbox where published_at is null order by seq`).map((row) => row["id"]);
    await eventually(async () => expect(await stillPending()).toEqual([poison.id, held]), 10_000);
    expect((await (await bus.ready).jsm.streams.getMessage(stream.name, { last_by_subj: "shop.order.v1.OrderConfirmed" }))?.header.get("ce-id")).toBe(passed);
    await sql`delete from relay_test.outbox where id = ${poison.id}`;
    await eventually(async () => expect(await pending()).toBe(0), 15_000);
    expect(await streamed()).toBe(before + 2);
  });
});
