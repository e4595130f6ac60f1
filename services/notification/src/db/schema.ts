import { sql } from "drizzle-orm";
import { check, index, pgSchema, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { createInboxTable } from "#platform";

/** Notification owns this Postgres schema; no other service reads it. */
export const notificationSchema = pgSchema("notification");

export const notifications = notificationSchema.table(
  "notifications",
  {
    id: uuid("id").primaryKey(),
    /** One notification per event, whatever the redelivery. */
    eventId: uuid("event_id").notNull().unique(),
    customerId: text("customer_id").notNull(),
    orderId: text("order_id").notNull(),
    kind: text("kind", { enum: ["order_confirmed", "order_cancelled"] }).notNull(),
    message: text("message").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (t) => [
    index("notifications_customer_recent_idx").on(t.customerId, t.createdAt.desc(), t.id.desc()),
    check("notifications_kind_valid", sql`${t.kind} in ('order_confirmed', 'order_cancelled')`),
  ],
);

export const inbox = createInboxTable(notificationSchema);

export const tables = { notifications, inbox };
