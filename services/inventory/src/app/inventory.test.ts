import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { openDatabase, type Database } from "#platform";
import { StockReservedSchema } from "#gen/shop/inventory/v1/inventory_events_pb.js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { tables } from "../db/schema.js";
import { createInventory, type Inventory } from "./inventory.js";
import { takeStock } from "./stock-statements.js";

const catalog = [
  { sku: "LAST", name: "Last one", priceMinor: 100, currency: "USD", initialStock: 1 },
  { sku: "FEW", name: "A few", priceMinor: 250, currency: "USD", initialStock: 5 },
  { sku: "MANY", name: "Plenty", priceMinor: 10, currency: "USD", initialStock: 1000 },
];

describe("inventory against real Postgres", () => {
  let database: Database<typeof tables>;
  let inventory: Inventory;
  let sql: ReturnType<typeof connect>;

  beforeAll(async () => {
    const url = await createTestDatabase();
    database = await openDatabase({ url, schemaName: "inventory", tables, migrationsFolder: resolve(import.meta.dirname, "../../migrations"), logger: silentLogger });
    inventory = createInventory(database.db);
    sql = connect(url);
  });
  afterAll(async () => {
    await sql.end();
    await database.close();
  });
  beforeEach(async () => {
    await sql`truncate inventory.reservation_items, inventory.reservations, inventory.outbox, inventory.products`;
    await inventory.seed(catalog);
  });

  const stock = async (sku: string) => {
    const { available, reserved, sold } = await inventory.getStock(sku);
    return { available, reserved, sold };
  };

  it("seeds the catalog only when it is empty", async () => {
    expect(await inventory.seed(catalog)).toBe(0);
    expect((await inventory.listProducts([])).map((p) => p.sku)).toEqual(["FEW", "LAST", "MANY"]);
    expect((await inventory.listProducts(["MANY", "NOPE"])).map((p) => p.sku)).toEqual(["MANY"]);
  });

  it("never lets concurrent reservations take stock below zero", async () => {
    const attempts = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => inventory.reserve(`order-${i}`, [{ sku: "FEW", quantity: 1 }])));
    expect(attempts.filter((a) => a.status === "fulfilled")).toHaveLength(5);
    for (const failed of attempts.filter((a) => a.status === "rejected")) {
      expect((failed as PromiseRejectedResult).reason).toMatchObject({ name: "InsufficientStockError", kind: "failed_precondition" });
    }
    expect(await stock("FEW")).toEqual({ available: 0, reserved: 5, sold: 0 });
    const [row] = await sql`select count(*)::int as count from inventory.reservations`;
    expect(row?.["count"]).toBe(5);
  });

  it("lets orders that share SKUs reserve, commit and release at once without deadlocking", async () => {
    // Half name the SKUs one way round, half the other, and go straight to the statement (the
    // use case sorts its lines first). A cycle of waits would fail one with a deadlock, and a
    // lost update would show in the stock. (On this small table the plan scans the primary key
    // in SKU order anyway, so the statement's ORDER BY is what keeps larger plans safe; this
    // checks the outcome under concurrency, not which clause produced it.)
    const orders = Array.from({ length: 24 }, (_, i) => {
      const items = [{ sku: "FEW", quantity: 1 }, { sku: "MANY", quantity: 2 }];
      return { id: `shared-${i}`, items: i % 2 ? items.reverse() : items };
    });
    const taken = await Promise.all(
      orders.map((order) => {
        const reservationId = randomUUID();
        const event = { schema: StockReservedSchema, message: create(StockReservedSchema, { reservationId, orderId: order.id }), aggregateType: "reservation", aggregateId: order.id };
        return takeStock(database.db, { id: reservationId, orderId: order.id }, order.items, event);
      }),
    );
    const won = orders.filter((_, i) => taken[i]!.created);
    expect(won).toHaveLength(5); // FEW has five
    await Promise.all(won.map((order, i) => (i % 2 ? inventory.commit(order.id) : inventory.release(order.id))));
    expect(await stock("FEW")).toEqual({ available: 3, reserved: 0, sold: 2 });
    expect(await stock("MANY")).toEqual({ available: 996, reserved: 0, sold: 4 });
    const events = await sql`select event_type, count(*)::int as n from inventory.outbox group by 1 order by 1`;
    expect(events.map((e) => `${e["event_type"]}:${e["n"]}`)).toEqual(["shop.inventory.v1.ReservationCommitted:2", "shop.inventory.v1.StockReleased:3", "shop.inventory.v1.StockReserved:5"]);
  });

  it("reserves once per order, however often it is asked", async () => {
    const [first, ...repeats] = await Promise.all(Array.from({ length: 5 }, () => inventory.reserve("order-1", [{ sku: "MANY", quantity: 3 }])));
    for (const repeat of repeats) expect(repeat.id).toBe(first!.id);
    expect(await stock("MANY")).toEqual({ available: 997, reserved: 3, sold: 0 });
  });

  it("writes nothing when any line cannot be reserved", async () => {
    await expect(
      inventory.reserve("order-1", [
        { sku: "MANY", quantity: 1 },
        { sku: "LAST", quantity: 2 },
      ]),
    ).rejects.toThrow("insufficient stock for LAST: requested 2, available 1");
    await expect(inventory.reserve("order-2", [{ sku: "MANY", quantity: 1 }, { sku: "GHOST", quantity: 1 }])).rejects.toThrow('items[1].sku: unknown SKU "GHOST"');
    expect(await stock("MANY")).toEqual({ available: 1000, reserved: 0, sold: 0 });
    const [counts] = await sql`select (select count(*)::int from inventory.reservations) as reservations, (select count(*)::int from inventory.outbox) as events`;
    expect(counts).toEqual({ reservations: 0, events: 0 });
  });

  it("releases and commits with stock conserved, and refuses the wrong transition", async () => {
    await inventory.reserve("keep", [{ sku: "FEW", quantity: 2 }]);
    await inventory.reserve("drop", [{ sku: "FEW", quantity: 1 }]);
    await inventory.commit("keep");
    await inventory.commit("keep");
    await inventory.release("drop");
    await inventory.release("drop");
    expect(await stock("FEW")).toEqual({ available: 3, reserved: 0, sold: 2 });
    await expect(inventory.release("keep")).rejects.toMatchObject({ kind: "failed_precondition" });
    await expect(inventory.commit("drop")).rejects.toMatchObject({ kind: "failed_precondition" });
    await expect(inventory.commit("never")).rejects.toMatchObject({ kind: "not_found" });
  });

  it("a release that arrives before its reservation blocks the late reservation", async () => {
    expect((await inventory.release("late")).status).toBe("released");
    expect((await inventory.reserve("late", [{ sku: "FEW", quantity: 1 }])).status).toBe("released");
    expect(await stock("FEW")).toEqual({ available: 5, reserved: 0, sold: 0 });
  });

  it("appends a decodable event in the transaction of each change", async () => {
    const reservation = await inventory.reserve("evented", [{ sku: "MANY", quantity: 2 }]);
    const rows = await sql`select event_type, aggregate_id, payload from inventory.outbox order by seq`;
    expect(rows.map((r) => r["event_type"])).toEqual(["shop.inventory.v1.StockReserved"]);
    const event = fromBinary(StockReservedSchema, rows[0]!["payload"] as Uint8Array);
    expect(event).toMatchObject({ orderId: "evented", reservationId: reservation.id, items: [{ sku: "MANY", quantity: 2 }] });
  });

  it("adjusts stock but never below zero", async () => {
    expect((await inventory.adjust("LAST", 4, "delivery")).available).toBe(5);
    await expect(inventory.adjust("LAST", -6, "count")).rejects.toThrow("cannot adjust LAST by -6: only 5 available");
    await expect(inventory.adjust("NOPE", 1, "x")).rejects.toMatchObject({ kind: "not_found" });
    await expect(inventory.adjust("LAST", 2_147_483_647, "typo")).rejects.toMatchObject({ kind: "invalid_argument", field: "delta" });
  });

  it("uses its own schema only", async () => {
    const schemas = await sql`select distinct table_schema from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema')`;
    expect(schemas.map((s) => s["table_schema"])).toEqual(["inventory"]);
  });
});
