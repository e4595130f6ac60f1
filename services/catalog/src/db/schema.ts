import { sql } from "drizzle-orm";
import { bigint, char, check, index, pgSchema, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { createInboxTable, createOutboxTable } from "#platform";

/** Catalog owns this Postgres schema; no other service reads it. */
export const catalogSchema = pgSchema("catalog");

/**
 * The old shop's products as the catalog holds them: written by the change capture while the
 * old shop takes catalog writes, and by UpdateProduct once the route table moves them here.
 */
export const products = catalogSchema.table(
  "products",
  {
    sku: text("sku").primaryKey(),
    name: text("name").notNull(),
    description: text("description").notNull(),
    // Minor units fit a JS number exactly up to 2^53; the source's numeric(12,2) stays below 10^12.
    priceMinor: bigint("price_minor", { mode: "number" }).notNull(),
    currency: char("currency", { length: 3 }).notNull(),
    /** The source position (LSN, "0/16B3748") of the change that wrote this row; empty for one written here (UpdateProduct) or read again from the old shop's API (DiscardRefusedWrites). */
    sourceLsn: text("source_lsn").notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [check("products_price_non_negative", sql`${t.priceMinor} >= 0`)],
);

/**
 * How far the change capture has applied each slot, committed in the same transaction as the
 * rows it wrote: after a crash the reader resumes here and skips what it already holds.
 */
export const cdcPosition = catalogSchema.table("cdc_position", {
  slot: text("slot").primaryKey(),
  lsn: text("lsn").notNull(),
  appliedAt: timestamp("applied_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Writes taken here, with their values, until the change capture sees each come back from the
 * old shop: one row per UpdateProduct (the same values again included), inserted with its
 * event. The sync back marks it sent (or refused, with the refusal) once it has PUT it; the
 * capture deletes it when a captured change of its SKU carries its values (its echo). A
 * captured change of a SKU with rows that matches none of them is held: the write taken here
 * wins. So the row count is the writes not yet seen in the old shop, what moving writes back
 * waits for.
 */
export const syncBack = catalogSchema.table(
  "sync_back",
  {
    eventId: uuid("event_id").primaryKey(),
    /** The order of a SKU's writes: taken under the SKU's lock, so increasing in commit order (written_at is not). */
    seq: bigint("seq", { mode: "bigint" }).generatedAlwaysAsIdentity().notNull(),
    sku: text("sku").notNull(),
    name: text("name").notNull(),
    description: text("description").notNull(),
    priceMinor: bigint("price_minor", { mode: "number" }).notNull(),
    currency: char("currency", { length: 3 }).notNull(),
    state: text("state", { enum: ["pending", "sent", "refused"] }).notNull().default("pending"),
    writtenAt: timestamp("written_at", { withTimezone: true }).notNull().defaultNow(),
    refusal: text("refusal"),
  },
  (t) => [index("sync_back_sku_seq_idx").on(t.sku, t.seq), check("sync_back_state", sql`${t.state} in ('pending', 'sent', 'refused')`)],
);

export const outbox = createOutboxTable(catalogSchema);

/** The sync back's record of events consumed from the catalog's own stream. */
export const inbox = createInboxTable(catalogSchema);

export const tables = { products, cdcPosition, syncBack, outbox, inbox };
