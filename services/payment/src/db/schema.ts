import { sql } from "drizzle-orm";
import { bigint, char, check, index, pgSchema, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { createOutboxTable } from "#platform";

/** Payment owns this Postgres schema; no other service reads it. */
export const paymentSchema = pgSchema("payment");

export const payments = paymentSchema.table(
  "payments",
  {
    id: uuid("id").primaryKey(),
    orderId: text("order_id").notNull(),
    /** The caller's key; its uniqueness is what makes a retried charge charge once. */
    idempotencyKey: text("idempotency_key").notNull().unique(),
    amountMinor: bigint("amount_minor", { mode: "number" }).notNull(),
    currency: char("currency", { length: 3 }).notNull(),
    status: text("status", { enum: ["pending", "captured", "declined", "refunded", "requires_action"] }).notNull(),
    declineReason: text("decline_reason"),
    /** The card network's id for the capture, needed to refund it. */
    providerReference: text("provider_reference"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("payments_order_id_idx").on(t.orderId),
    check("payments_amount_positive", sql`${t.amountMinor} > 0`),
    check("payments_status_valid", sql`${t.status} in ('pending', 'captured', 'declined', 'refunded', 'requires_action')`),
  ],
);

/**
 * Orders whose payments were refunded by compensation. A charge for one of them that
 * arrives late (a retry still in flight when the saga gave up) is declined, not captured.
 */
export const voidedOrders = paymentSchema.table("voided_orders", {
  orderId: text("order_id").primaryKey(),
  reason: text("reason").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

export const outbox = createOutboxTable(paymentSchema);

export const tables = { payments, voidedOrders, outbox };
