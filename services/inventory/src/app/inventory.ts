import { randomUUID } from "node:crypto";
import { and, asc, eq, gte, inArray, sql } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { appendToOutbox } from "../../../platform/outbox.js";
import { LineItemSchema } from "../../../../gen/shop/inventory/v1/inventory_service_pb.js";
import {
  ReservationCommittedSchema,
  StockAdjustedSchema,
  StockReleasedSchema,
  StockReservedSchema,
} from "../../../../gen/shop/inventory/v1/inventory_events_pb.js";
import type { CatalogEntry } from "../domain/demo-catalog.js";
import {
  InsufficientStockError,
  InvalidStockRequestError,
  ProductNotFoundError,
  ReservationNotFoundError,
  StockAdjustmentError,
} from "../domain/errors.js";
import { normalizeLines, planCommit, planRelease, sortBySku, type Reservation, type StockLine } from "../domain/reservation.js";
import { outbox, products, reservationItems, reservations, type tables } from "../db/schema.js";

type Db = PostgresJsDatabase<typeof tables>;
type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

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
  async function loadReservation(tx: Tx | Db, orderId: string, lock: boolean): Promise<Reservation | undefined> {
    const query = tx.select().from(reservations).where(eq(reservations.orderId, orderId));
    const [row] = lock ? await query.for("update") : await query;
    if (!row) return undefined;
    const items = await tx
      .select({ sku: reservationItems.sku, quantity: reservationItems.quantity })
      .from(reservationItems)
      .where(eq(reservationItems.reservationId, row.id))
      .orderBy(asc(reservationItems.sku));
    return { id: row.id, orderId: row.orderId, status: row.status, items };
  }

  /**
   * Claims the order's reservation row. Concurrent callers for the same order serialize on
   * the unique order_id: the loser's insert waits, then does nothing and reads the winner's.
   */
  async function claimReservation(tx: Tx, orderId: string, status: Reservation["status"]): Promise<{ created: boolean; reservation: Reservation }> {
    const id = randomUUID();
    const inserted = await tx
      .insert(reservations)
      .values({ id, orderId, status })
      .onConflictDoNothing({ target: reservations.orderId })
      .returning({ id: reservations.id });
    if (inserted.length > 0) return { created: true, reservation: { id, orderId, status, items: [] } };
    const existing = await loadReservation(tx, orderId, true);
    if (!existing) throw new Error(`reservation for ${orderId} vanished during claim`);
    return { created: false, reservation: existing };
  }

  /** Rows are locked in SKU order, as reserve() locks them, so the two cannot deadlock. */
  async function moveStock(tx: Tx, items: StockLine[], change: (quantity: number) => Partial<Record<"available" | "reserved" | "sold", ReturnType<typeof sql>>>) {
    for (const item of sortBySku(items)) {
      await tx
        .update(products)
        .set({ ...change(item.quantity), updatedAt: sql`now()` })
        .where(eq(products.sku, item.sku));
    }
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
      return db.transaction(async (tx) => {
        const { created, reservation } = await claimReservation(tx, orderId, "reserved");
        if (!created) return reservation;
        const known = new Set(
          (await tx.select({ sku: products.sku }).from(products).where(inArray(products.sku, lines.map((l) => l.sku)))).map((r) => r.sku),
        );
        const unknownIndex = requested.findIndex((item) => !known.has(item.sku));
        if (unknownIndex >= 0) throw new InvalidStockRequestError(`items[${unknownIndex}].sku`, `unknown SKU "${requested[unknownIndex]?.sku}"`);
        for (const line of lines) {
          // The guard in WHERE makes the check and the decrement one atomic step.
          const taken = await tx
            .update(products)
            .set({
              available: sql`${products.available} - ${line.quantity}`,
              reserved: sql`${products.reserved} + ${line.quantity}`,
              updatedAt: sql`now()`,
            })
            .where(and(eq(products.sku, line.sku), gte(products.available, line.quantity)))
            .returning({ sku: products.sku });
          if (taken.length === 0) {
            const [row] = await tx.select({ available: products.available }).from(products).where(eq(products.sku, line.sku));
            throw new InsufficientStockError(line.sku, line.quantity, row?.available ?? 0);
          }
        }
        await tx.insert(reservationItems).values(lines.map((line) => ({ reservationId: reservation.id, ...line })));
        await appendToOutbox(tx, outbox, [
          { schema: StockReservedSchema, message: create(StockReservedSchema, { reservationId: reservation.id, orderId, items: eventLines(lines) }), ...aggregate(orderId) },
        ]);
        return { ...reservation, items: lines };
      });
    },

    async release(orderId) {
      return db.transaction(async (tx) => {
        // With no reservation yet, the released marker stops a late ReserveStock from
        // taking stock for an order that has already been given up.
        const { created, reservation } = await claimReservation(tx, orderId, "released");
        if (created || planRelease(reservation) === "none") return reservation;
        await moveStock(tx, reservation.items, (q) => ({ available: sql`${products.available} + ${q}`, reserved: sql`${products.reserved} - ${q}` }));
        await tx.update(reservations).set({ status: "released", updatedAt: sql`now()` }).where(eq(reservations.id, reservation.id));
        await appendToOutbox(tx, outbox, [
          { schema: StockReleasedSchema, message: create(StockReleasedSchema, { reservationId: reservation.id, orderId, items: eventLines(reservation.items) }), ...aggregate(orderId) },
        ]);
        return { ...reservation, status: "released" };
      });
    },

    async commit(orderId) {
      return db.transaction(async (tx) => {
        const reservation = await loadReservation(tx, orderId, true);
        if (!reservation) throw new ReservationNotFoundError(orderId);
        if (planCommit(reservation) === "none") return reservation;
        await moveStock(tx, reservation.items, (q) => ({ reserved: sql`${products.reserved} - ${q}`, sold: sql`${products.sold} + ${q}` }));
        await tx.update(reservations).set({ status: "committed", updatedAt: sql`now()` }).where(eq(reservations.id, reservation.id));
        await appendToOutbox(tx, outbox, [
          {
            schema: ReservationCommittedSchema,
            message: create(ReservationCommittedSchema, { reservationId: reservation.id, orderId, items: eventLines(reservation.items) }),
            ...aggregate(orderId),
          },
        ]);
        return { ...reservation, status: "committed" };
      });
    },

    async getReservation(orderId) {
      const reservation = await loadReservation(db, orderId, false);
      if (!reservation) throw new ReservationNotFoundError(orderId);
      return reservation;
    },

    async adjust(sku, delta, reason) {
      return db.transaction(async (tx) => {
        const [row] = await tx.select().from(products).where(eq(products.sku, sku)).for("update");
        if (!row) throw new ProductNotFoundError(sku);
        if (row.available + delta < 0) throw new StockAdjustmentError(sku, delta, row.available);
        if (row.available + row.reserved + row.sold + delta > MAX_STOCK) throw new InvalidStockRequestError("delta", `would take stock of ${sku} past ${MAX_STOCK}`);
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
