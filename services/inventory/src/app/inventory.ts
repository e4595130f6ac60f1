import { randomUUID } from "node:crypto";
import { asc, eq, inArray, sql } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { appendToOutbox, InvalidArgumentError, type SqlExecutor } from "#platform";
import { LineItemSchema } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import {
  ReservationCommittedSchema,
  StockAdjustedSchema,
  StockReleasedSchema,
  StockReservedSchema,
} from "#gen/shop/inventory/v1/inventory_events_pb.js";
import type { CatalogEntry } from "../domain/demo-catalog.js";
import {
  InsufficientStockError,
  ProductNotFoundError,
  ReservationNotFoundError,
  StockAdjustmentError,
} from "../domain/errors.js";
import { normalizeLines, planCommit, planRelease, type Reservation, type StockLine } from "../domain/reservation.js";
import { moveReservation, readReservation, takeStock } from "./stock-statements.js";
import { outbox, products, reservations, type tables } from "../db/schema.js";

type Db = PostgresJsDatabase<typeof tables>;

export type Product = typeof products.$inferSelect;

/** Inventory's use cases. Each write is one transaction that also appends its event. */
export interface Inventory {
  seed(catalog: readonly CatalogEntry[]): Promise<number>;
  listProducts(skus: readonly string[]): Promise<Product[]>;
  getStock(sku: string): Promise<Product>;
  reserve(orderId: string, items: readonly StockLine[]): Promise<Reservation>;
  release(orderId: string): Promise<Reservation>;
  commit(orderId: string): Promise<Reservation>;
  getReservation(orderId: string): Promise<Reservation>;
  adjust(sku: string, delta: number, reason: string): Promise<Product>;
}

/** Stock columns are int4. */
const MAX_STOCK = 2_147_483_647;

const aggregate = (orderId: string) => ({ aggregateType: "reservation", aggregateId: orderId });
const eventLines = (items: StockLine[]) => items.map((item) => create(LineItemSchema, item));

export function createInventory(db: Db): Inventory {
  /**
   * Claims the order's reservation row, or reads (and locks) the one it has. Concurrent
   * callers for the same order serialize on the unique order_id: the loser's insert waits,
   * then does nothing and reads the winner's.
   */
  async function claimReservation(tx: SqlExecutor, orderId: string, status: Reservation["status"]): Promise<{ created: boolean; reservation: Reservation }> {
    const id = randomUUID();
    const inserted = await tx
      .insert(reservations)
      .values({ id, orderId, status })
      .onConflictDoNothing({ target: reservations.orderId })
      .returning({ id: reservations.id });
    if (inserted.length > 0) return { created: true, reservation: { id, orderId, status, items: [] } };
    const existing = await readReservation(tx, orderId, true);
    if (!existing) throw new Error(`reservation for ${orderId} vanished during claim`);
    return { created: false, reservation: existing };
  }

  /**
   * Moves a reserved reservation on (commit or release) with its stock and its event. Null
   * if it was not reserved when the statement ran; the caller then reads why.
   */
  async function moveReserved(tx: SqlExecutor, orderId: string, to: "committed" | "released") {
    const moved = await moveReservation(tx, orderId, { from: "reserved", to, stock: to === "committed" ? "sell" : "return" });
    if (!moved) return undefined;
    const event = { reservationId: moved.id, orderId, items: eventLines(moved.items) };
    await appendToOutbox(tx, outbox, [
      to === "committed"
        ? { schema: ReservationCommittedSchema, message: create(ReservationCommittedSchema, event), ...aggregate(orderId) }
        : { schema: StockReleasedSchema, message: create(StockReleasedSchema, event), ...aggregate(orderId) },
    ]);
    return { id: moved.id, orderId, status: to, items: moved.items };
  }

  return {
    async seed(catalog) {
      return db.transaction(async (tx) => {
        const [existing] = await tx.select({ count: sql<number>`count(*)::int` }).from(products);
        if ((existing?.count ?? 0) > 0) return 0;
        const rows = catalog.map((entry) => ({
          sku: entry.sku,
          name: entry.name,
          priceMinor: entry.priceMinor,
          currency: entry.currency,
          available: entry.initialStock,
        }));
        const inserted = await tx.insert(products).values(rows).onConflictDoNothing().returning({ sku: products.sku });
        return inserted.length;
      });
    },

    async listProducts(skus) {
      const query = db.select().from(products);
      return skus.length > 0 ? query.where(inArray(products.sku, [...skus])).orderBy(asc(products.sku)) : query.orderBy(asc(products.sku));
    },

    async getStock(sku) {
      const [row] = await db.select().from(products).where(eq(products.sku, sku));
      if (!row) throw new ProductNotFoundError(sku);
      return row;
    },

    async reserve(orderId, requested) {
      const lines = normalizeLines(requested);
      const reservation = { id: randomUUID(), orderId };
      const event = { schema: StockReservedSchema, message: create(StockReservedSchema, { reservationId: reservation.id, orderId, items: eventLines(lines) }), ...aggregate(orderId) };
      const outcome = await takeStock(db, reservation, lines, event);
      if (outcome.created) return { ...reservation, status: "reserved" as const, items: lines };
      // The order has a reservation already (a repeat, or a release that came first): it answers.
      const existing = await readReservation(db, orderId, false);
      if (existing) return existing;
      const unknownIndex = requested.findIndex((item) => !outcome.available.has(item.sku));
      if (unknownIndex >= 0) throw new InvalidArgumentError(`items[${unknownIndex}].sku`, `unknown SKU "${requested[unknownIndex]?.sku}"`);
      const short = lines.find((line) => outcome.available.get(line.sku)! < line.quantity);
      if (!short) throw new Error(`reservation for ${orderId} neither made nor found`);
      throw new InsufficientStockError(short.sku, short.quantity, outcome.available.get(short.sku)!);
    },

    async release(orderId) {
      return db.transaction(async (tx) => {
        const released = await moveReserved(tx, orderId, "released");
        if (released) return released;
        // With no reservation yet, the released marker stops a late ReserveStock from
        // taking stock for an order that has already been given up.
        const { created, reservation } = await claimReservation(tx, orderId, "released");
        if (created || planRelease(reservation) === "none") return reservation;
        // Reserved since the first statement looked: the lock is ours now, so this one moves it.
        return (await moveReserved(tx, orderId, "released"))!;
      });
    },

    async commit(orderId) {
      return db.transaction(async (tx) => {
        const committed = await moveReserved(tx, orderId, "committed");
        if (committed) return committed;
        const reservation = await readReservation(tx, orderId, true);
        if (!reservation) throw new ReservationNotFoundError(orderId);
        if (planCommit(reservation) === "none") return reservation;
        return (await moveReserved(tx, orderId, "committed"))!;
      });
    },

    async getReservation(orderId) {
      const reservation = await readReservation(db, orderId, false);
      if (!reservation) throw new ReservationNotFoundError(orderId);
      return reservation;
    },

    async adjust(sku, delta, reason) {
      return db.transaction(async (tx) => {
        const [row] = await tx.select().from(products).where(eq(products.sku, sku)).for("update");
        if (!row) throw new ProductNotFoundError(sku);
        if (row.available + delta < 0) throw new StockAdjustmentError(sku, delta, row.available);
        if (row.available + row.reserved + row.sold + delta > MAX_STOCK) throw new InvalidArgumentError("delta", `would take stock of ${sku} past ${MAX_STOCK}`);
        const [updated] = await tx
          .update(products)
          .set({ available: sql`${products.available} + ${delta}`, updatedAt: sql`now()` })
          .where(eq(products.sku, sku))
          .returning();
        if (!updated) throw new ProductNotFoundError(sku);
        await appendToOutbox(tx, outbox, [
          { schema: StockAdjustedSchema, message: create(StockAdjustedSchema, { sku, delta, available: updated.available, reason }), aggregateType: "product", aggregateId: sku },
        ]);
        return updated;
      });
    },
  };
}
