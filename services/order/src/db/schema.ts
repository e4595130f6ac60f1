import { sql } from "drizzle-orm";
import { bigint, char, check, index, integer, pgSchema, primaryKey, text, timestamp, unique, uuid } from "drizzle-orm/pg-core";
import { createOutboxTable, createSagaTables } from "#platform";

/** Ordering owns this Postgres schema; no other service reads it. */
export const ordersSchema = pgSchema("orders");

export const orders = ordersSchema.table(
  "orders",
  {
    id: uuid("id").primaryKey(),
    customerId: text("customer_id").notNull(),
    /** The client's retry key, unique per customer. */
    requestId: text("request_id").notNull(),
    /** requestFingerprint of the request that created the order; null for older orders. */
    requestFingerprint: text("request_fingerprint"),
    status: text("status", { enum: ["pending", "confirmed", "cancelled"] }).notNull(),
    totalMinor: bigint("total_minor", { mode: "number" }).notNull(),
    currency: char("currency", { length: 3 }).notNull(),
    cancelReason: text("cancel_reason"),
    // Millisecond precision, so a page token built from a JS Date matches the row exactly.
    createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (t) => [
    unique("orders_customer_request_unique").on(t.customerId, t.requestId),
    index("orders_customer_recent_idx").on(t.customerId, t.createdAt.desc(), t.id.desc()),
    check("orders_status_valid", sql`${t.status} in ('pending', 'confirmed', 'cancelled')`),
    check("orders_total_non_negative", sql`${t.totalMinor} >= 0`),
  ],
);

export const orderLines = ordersSchema.table(
  "order_lines",
  {
    orderId: uuid("order_id")
      .notNull()
      .references(() => orders.id),
    lineNo: integer("line_no").notNull(),
    sku: text("sku").notNull(),
    name: text("name").notNull(),
    quantity: integer("quantity").notNull(),
    unitPriceMinor: bigint("unit_price_minor", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.lineNo] }), check("order_lines_quantity_positive", sql`${t.quantity} > 0`)],
);

export const sagaTables = createSagaTables(ordersSchema);
export const { sagas, sagaSteps, sagaWaits, sagaSignals } = sagaTables;

/**
 * One row per operator action on a saga (retry, compensate), refused ones included: who,
 * when, what, and the outcome. Written in the transaction that decides the action.
 */
export const sagaAudit = ordersSchema.table(
  "saga_audit",
  {
    id: uuid("id").primaryKey(),
    at: timestamp("at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    /** The operator's name and address, e.g. "ada@127.0.0.1"; see the admin routes. */
    actor: text("actor").notNull(),
    action: text("action", { enum: ["retry", "compensate"] }).notNull(),
    orderId: text("order_id").notNull(),
    /** "accepted", "not_found" or "refused". */
    outcome: text("outcome", { enum: ["accepted", "not_found", "refused"] }).notNull(),
    /** The resulting state, or why it was refused. */
    detail: text("detail").notNull(),
  },
  (t) => [
    index("saga_audit_order_idx").on(t.orderId, t.at),
    // The retention sweep finds expired rows by age.
    index("saga_audit_at_idx").on(t.at),
    check("saga_audit_action_valid", sql`${t.action} in ('retry', 'compensate')`),
    check("saga_audit_outcome_valid", sql`${t.outcome} in ('accepted', 'not_found', 'refused')`),
  ],
);

export const outbox = createOutboxTable(ordersSchema);

export const tables = { orders, orderLines, sagas, sagaSteps, sagaWaits, sagaSignals, sagaAudit, outbox };
