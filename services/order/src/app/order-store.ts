import { and, eq, getTableColumns, sql, type SQL } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { create } from "@bufbuild/protobuf";
import { rowsOf, appendToOutbox, outboxAppend, keysetAfter, keysetOrder, type Keyset, type PageKey, type SqlExecutor } from "#platform";
import { toMoney as money } from "#shop/money.js";
import { OrderLineSchema } from "#gen/shop/order/v1/order_service_pb.js";
import { OrderCancelledSchema, OrderConfirmedSchema, OrderCreatedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import type { OrderStatus, PricedOrder } from "../domain/order.js";
import { orderLines, orders, outbox, type tables } from "../db/schema.js";

export type Db = PostgresJsDatabase<typeof tables>;
export type OrderRow = typeof orders.$inferSelect;
export type OrderLineRow = typeof orderLines.$inferSelect;
export interface StoredOrder extends OrderRow {
  lines: OrderLineRow[];
}

/** A customer's orders are listed newest first. */
const newestFirst: Keyset = { createdAt: orders.createdAt, id: orders.id, order: "newest-first" };

const aggregate = (orderId: string) => ({ aggregateType: "order", aggregateId: orderId });

/**
 * The time of a status change, cut (not rounded, as the millisecond column would) to the
 * millisecond: its event's ce-time is the same instant as a JS Date, which cuts too, so a
 * watch that applies the event shows exactly the stored update time.
 */
const changedAt = sql`date_trunc('milliseconds', now())`;

/**
 * Persistence of the order aggregate. Every status change writes its event to the outbox in
 * the same transaction, and only moves from PENDING, so replays change nothing.
 */
export function createOrderStore(db: Db) {
  /** An order with its lines in one statement: the lines ride along as JSON. */
  const selectWithLines = () =>
    db
      .select({
        ...getTableColumns(orders),
        lines: sql<OrderLineRow[]>`coalesce((select json_agg(json_build_object('orderId', l.order_id, 'lineNo', l.line_no, 'sku', l.sku, 'name', l.name,
          'quantity', l.quantity, 'unitPriceMinor', l.unit_price_minor) order by l.line_no) from ${orderLines} l where l.order_id = ${orders.id}), '[]')`,
      })
      .from(orders);

  return {
    async find(orderId: string): Promise<StoredOrder | undefined> {
      return (await selectWithLines().where(eq(orders.id, orderId)))[0];
    },

    async findByRequest(customerId: string, requestId: string): Promise<StoredOrder | undefined> {
      return (await selectWithLines().where(and(eq(orders.customerId, customerId), eq(orders.requestId, requestId))))[0];
    },

    /** Newest first, resuming strictly after `after` (keyset pagination). */
    async listByCustomer(customerId: string, limit: number, after?: PageKey): Promise<StoredOrder[]> {
      return selectWithLines()
        .where(and(eq(orders.customerId, customerId), keysetAfter(newestFirst, after)))
        .orderBy(...keysetOrder(newestFirst))
        .limit(limit);
    },

    /**
     * Inserts a PENDING order with its lines and its OrderCreated event, unless the customer
     * already used this request id; returns it as stored, or undefined in that case so the
     * caller can answer with the original. The `requestFingerprint` (domain
     * requestFingerprint) lets a later reuse of the id for a different order be told apart
     * from a replay. One statement, atomic without BEGIN and COMMIT: `alongside(isNew)` adds
     * the CTEs that must go in with the order (its saga), given the condition that it did.
     */
    async insert(
      order: { id: string; customerId: string; requestId: string; requestFingerprint: string; priced: PricedOrder },
      alongside: (isNew: SQL) => SQL,
    ): Promise<StoredOrder | undefined> {
      const { priced } = order;
      const lines = priced.lines.map((line, lineNo) => ({ orderId: order.id, lineNo, ...line }));
      const items = priced.lines.map((line) =>
        create(OrderLineSchema, {
          sku: line.sku,
          name: line.name,
          quantity: line.quantity,
          unitPrice: money(priced.currency, line.unitPriceMinor),
          lineTotal: money(priced.currency, line.unitPriceMinor * line.quantity),
        }),
      );
      const created = create(OrderCreatedSchema, { orderId: order.id, customerId: order.customerId, items, total: money(priced.currency, priced.totalMinor) });
      const isNew = sql`exists (select from inserted)`;
      const appended = outboxAppend(outbox, [{ schema: OrderCreatedSchema, message: created, ...aggregate(order.id) }], isNew);
      const [row] = await rowsOf<{ createdAt: string; updatedAt: string }>(db, sql`
        with inserted as (
          insert into ${orders} (id, customer_id, request_id, request_fingerprint, status, total_minor, currency)
          values (${order.id}::uuid, ${order.customerId}, ${order.requestId}, ${order.requestFingerprint}, 'pending', ${priced.totalMinor}, ${priced.currency})
          on conflict (customer_id, request_id) do nothing returning created_at, updated_at),
        lines as (
          insert into ${orderLines} (order_id, line_no, sku, name, quantity, unit_price_minor)
          select ${order.id}::uuid, l."lineNo", l.sku, l.name, l.quantity, l."unitPriceMinor"
          from jsonb_to_recordset(${JSON.stringify(lines)}::jsonb) as l("lineNo" int, sku text, name text, quantity int, "unitPriceMinor" bigint)
          where ${isNew}),
        ${alongside(isNew)},
        ${appended.cte}
        select created_at as "createdAt", updated_at as "updatedAt", ${appended.notify} as notified from inserted`);
      if (!row) return undefined;
      const at = (value: string) => orders.createdAt.mapFromDriverValue(value) as Date;
      return {
        id: order.id,
        customerId: order.customerId,
        requestId: order.requestId,
        requestFingerprint: order.requestFingerprint,
        status: "pending",
        totalMinor: priced.totalMinor,
        currency: priced.currency,
        cancelReason: null,
        createdAt: at(row.createdAt),
        updatedAt: at(row.updatedAt),
        lines,
      };
    },

    /**
     * Confirms a PENDING order with its OrderConfirmed event, in one statement, atomic
     * without BEGIN and COMMIT; answers the order's status after it. The event is built from
     * what the caller knows of the order; a saga persisted before its payload named the
     * customer has it read first.
     */
    async confirm(order: { orderId: string; customerId?: string | undefined; currency: string; totalMinor: number }): Promise<OrderStatus> {
      const { orderId } = order;
      const customerId = order.customerId ?? (await db.select({ customerId: orders.customerId }).from(orders).where(eq(orders.id, orderId)))[0]?.customerId;
      if (customerId === undefined) return "cancelled"; // no such order: nothing to confirm
      const isConfirmed = sql`exists (select from confirmed)`;
      const event = create(OrderConfirmedSchema, { orderId, customerId, total: money(order.currency, order.totalMinor) });
      const appended = outboxAppend(outbox, [{ schema: OrderConfirmedSchema, message: event, ...aggregate(orderId) }], isConfirmed);
      const [row] = await rowsOf<{ status: OrderStatus | null }>(db, sql`
        with confirmed as (
          update ${orders} set status = 'confirmed', updated_at = ${changedAt} where id = ${orderId}::uuid and status = 'pending' returning 1),
        ${appended.cte}
        select case when ${isConfirmed} then 'confirmed'
          -- Locking reads the newest version, not the statement's snapshot, if the order changed meanwhile.
          else (select status from ${orders} where id = ${orderId}::uuid for share) end as status,
          ${appended.notify} as notified`);
      return row?.status ?? "cancelled";
    },

    async cancel(tx: SqlExecutor, orderId: string, reason: string): Promise<void> {
      const [row] = await tx
        .update(orders)
        .set({ status: "cancelled", cancelReason: reason, updatedAt: changedAt })
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
