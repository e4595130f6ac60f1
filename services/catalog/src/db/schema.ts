import { pgSchema, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { createInboxTable, createOutboxTable } from "#platform";

/** Catalog owns this Postgres schema; no other service reads it. */
export const catalogSchema = pgSchema("catalog");

export const items = catalogSchema.table("items", {
  id: uuid("id").primaryKey(),
  /** The caller's key; its uniqueness is what makes a retried CreateItem create once. */
  requestId: text("request_id").notNull().unique(),
  description: text("description").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** What catalog's consumer received: one receipt per ItemCreated, written with its inbox row. */
export const receipts = catalogSchema.table("receipts", {
  /** One receipt per event, whatever the redelivery. */
  eventId: uuid("event_id").primaryKey(),
  itemId: uuid("item_id").notNull(),
  receivedAt: timestamp("received_at", { withTimezone: true }).notNull().defaultNow(),
});

export const outbox = createOutboxTable(catalogSchema);

export const inbox = createInboxTable(catalogSchema);

export const tables = { items, receipts, outbox, inbox };
