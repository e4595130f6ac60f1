import { and, asc, desc, eq, inArray, lt, or, sql } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { appendToOutbox } from "../../../platform/outbox.js";
import type { SqlExecutor } from "../../../platform/saga/saga-runner.js";
import { toMoney as money } from "../../../platform/money.js";
import { OrderLineSchema } from "../../../../gen/shop/order/v1/order_service_pb.js";
import { OrderCancelledSchema, OrderConfirmedSchema, OrderCreatedSchema } from "../../../../gen/shop/order/v1/order_events_pb.js";
import type { OrderStatus, PricedOrder } from "../domain/order.js";
import { orderLines, orders, outbox, type tables } from "../db/schema.js";

export type Db = PostgresJsDatabase<typeof tables>;
export type OrderRow = typeof orders.$inferSelect;
export type OrderLineRow = typeof orderLines.$inferSelect;
export interface StoredOrder extends OrderRow {
  lines: OrderLineRow[];
}

const aggregate = (orderId: string) => ({ aggregateType: "order", aggregateId: orderId });

/**
 * Persistence of the order aggregate. Every status change writes its event to the outbox in
 * the same transaction, and only moves from PENDING, so replays change nothing.
 */
export function createOrderStore(db: Db) {
  async function withLines(rows: OrderRow[]): Promise<StoredOrder[]> {
    if (rows.length === 0) return [];
    const lines = await db
      .select()
      .from(orderLines)
      .where(inArray(orderLines.orderId, rows.map((r) => r.id)))
      .orderBy(asc(orderLines.orderId), asc(orderLines.lineNo));
    return rows.map((row) => ({ ...row, lines: lines.filter((line) => line.orderId === row.id) }));
  }

  return {
    async find(orderId: string): Promise<StoredOrder | undefined> {
      return (await withLines(await db.select().from(orders).where(eq(orders.id, orderId))))[0];
    },

    async findByRequest(customerId: string, requestId: string): Promise<StoredOrder | undefined> {
      const rows = await db.select().from(orders).where(and(eq(orders.customerId, customerId), eq(orders.requestId, requestId)));
      return (await withLines(rows))[0];
    },

    /** Newest first, resuming strictly after `after` (keyset pagination). */
    async listByCustomer(customerId: string, limit: number, after?: { createdAt: Date; id: string }): Promise<StoredOrder[]> {
      const keyset = after ? or(lt(orders.createdAt, after.createdAt), and(eq(orders.createdAt, after.createdAt), lt(orders.id, after.id))) : undefined;
      const rows = await db
        .select()
        .from(orders)
        .where(and(eq(orders.customerId, customerId), keyset))
        .orderBy(desc(orders.createdAt), desc(orders.id))
        .limit(limit);
      return withLines(rows);
    },

    /**
     * Inserts a PENDING order unless the customer already used this request id; returns
     * false in that case so the caller can answer with the original order. The
     * `requestFingerprint` (domain requestFingerprint) lets a later reuse of the id for a
     * different order be told apart from a replay.
     */
    async insert(tx: SqlExecutor, order: { id: string; customerId: string; requestId: string; requestFingerprint: string; priced: PricedOrder }): Promise<boolean> {
      const inserted = await tx
        .insert(orders)
        .values({
          id: order.id,
          customerId: order.customerId,
          requestId: order.requestId,
          requestFingerprint: order.requestFingerprint,
          status: "pending",
          totalMinor: order.priced.totalMinor,
          currency: order.priced.currency,
        })
        .onConflictDoNothing({ target: [orders.customerId, orders.requestId] })
        .returning({ id: orders.id });
      if (inserted.length === 0) return false;
      await tx.insert(orderLines).values(order.priced.lines.map((line, lineNo) => ({ orderId: order.id, lineNo, ...line })));
      const items = order.priced.lines.map((line) =>
        create(OrderLineSchema, {
          sku: line.sku,
          name: line.name,
          quantity: line.quantity,
          unitPrice: money(order.priced.currency, line.unitPriceMinor),
          lineTotal: money(order.priced.currency, line.unitPriceMinor * line.quantity),
        }),
      );
      await appendToOutbox(tx, outbox, [
        {
          schema: OrderCreatedSchema,
          message: create(OrderCreatedSchema, { orderId: order.id, customerId: order.customerId, items, total: money(order.priced.currency, order.priced.totalMinor) }),
          ...aggregate(order.id),
        },
      ]);
      return true;
    },

    async confirm(orderId: string): Promise<OrderStatus> {
      return db.transaction(async (tx) => {
        const [row] = await tx
          .update(orders)
          .set({ status: "confirmed", updatedAt: sql`now()` })
          .where(and(eq(orders.id, orderId), eq(orders.status, "pending")))
          .returning();
        if (!row) return (await tx.select({ status: orders.status }).from(orders).where(eq(orders.id, orderId)))[0]?.status ?? "cancelled";
        await appendToOutbox(tx, outbox, [
          {
            schema: OrderConfirmedSchema,
            message: create(OrderConfirmedSchema, { orderId, customerId: row.customerId, total: money(row.currency, row.totalMinor) }),
            ...aggregate(orderId),
          },
        ]);
        return row.status;
      });
    },

    async cancel(tx: SqlExecutor, orderId: string, reason: string): Promise<void> {
      const [row] = await tx
        .update(orders)
        .set({ status: "cancelled", cancelReason: reason, updatedAt: sql`now()` })
        .where(and(eq(orders.id, orderId), eq(orders.status, "pending")))
        .returning();
      if (!row) return;
      await appendToOutbox(tx, outbox, [
        { schema: OrderCancelledSchema, message: create(OrderCancelledSchema, { orderId, customerId: row.customerId, reason }), ...aggregate(orderId) },
      ]);
    },
  };
}

export type OrderStore = ReturnType<typeof createOrderStore>;
