import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql as drizzleSql } from "drizzle-orm";
import { fromBinary } from "@bufbuild/protobuf";
import { openDatabase, type Database } from "#platform";
import { OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { tables } from "../db/schema.js";
import { createOrderStore } from "./order-store.js";

const priced = { currency: "USD", totalMinor: 2598, lines: [{ sku: "MW-MUG-001", name: "Mug", quantity: 2, unitPriceMinor: 1299 }] };

describe("the order store against real Postgres", () => {
  let database: Database<typeof tables>;
  let sql: ReturnType<typeof connect>;
  let store: ReturnType<typeof createOrderStore>;

  beforeAll(async () => {
    const url = await createTestDatabase();
    database = await openDatabase({ url, schemaName: "orders", tables, migrationsFolder: resolve(import.meta.dirname, "../../migrations"), logger: silentLogger });
    store = createOrderStore(database.db);
    sql = connect(url);
  });
  afterAll(async () => {
    await sql.end();
    await database.close();
  });

  const place = (id: string, requestId = id) =>
    store.insert({ id, customerId: "ada", requestId, requestFingerprint: "f", priced }, () => drizzleSql`nothing_else as (select 1)`);

  it("inserts an order with its lines once per request id, as stored", async () => {
    const placed = await place("00000000-0000-4000-8000-000000000001", "req-1");
    expect(placed).toEqual(await store.find("00000000-0000-4000-8000-000000000001"));
    expect(await place("00000000-0000-4000-8000-000000000002", "req-1")).toBeUndefined();
    const [counts] = await sql`select (select count(*)::int from orders.orders) as orders, (select count(*)::int from orders.order_lines) as lines, (select count(*)::int from orders.outbox) as events`;
    expect(counts).toEqual({ orders: 1, lines: 1, events: 1 });
  });

  it("confirms once, with the customer read when a saga's payload lacks it, and says what an order already is", async () => {
    const id = "00000000-0000-4000-8000-000000000003";
    await place(id);
    expect(await store.confirm({ orderId: id, currency: "USD", totalMinor: 2598 })).toBe("confirmed");
    expect(await store.confirm({ orderId: id, customerId: "ada", currency: "USD", totalMinor: 2598 })).toBe("confirmed");
    const events = await sql`select payload from orders.outbox where aggregate_id = ${id} and event_type = ${OrderConfirmedSchema.typeName}`;
    expect(events.map((e) => fromBinary(OrderConfirmedSchema, e["payload"] as Uint8Array).customerId)).toEqual(["ada"]);
    const cancelled = "00000000-0000-4000-8000-000000000004";
    await place(cancelled);
    await database.db.transaction((tx) => store.cancel(tx, cancelled, "changed my mind"));
    expect(await store.confirm({ orderId: cancelled, customerId: "ada", currency: "USD", totalMinor: 2598 })).toBe("cancelled");
  });
});
