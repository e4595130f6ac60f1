import { sql } from "drizzle-orm";
import { check, integer, bigint, pgSchema, primaryKey, text, timestamp, uuid, char } from "drizzle-orm/pg-core";
import { createOutboxTable } from "#platform";

/** Inventory owns this Postgres schema; no other service reads it. */
export const inventorySchema = pgSchema("inventory");

/**
 * Stock lives in three buckets: available + reserved + sold only changes through an
 * adjustment. The checks make negative stock impossible even if application code erred.
 */
export const products = inventorySchema.table(
  "products",
  {
    sku: text("sku").primaryKey(),
    name: text("name").notNull(),
    // Minor units fit a JS number exactly up to 2^53.
    priceMinor: bigint("price_minor", { mode: "number" }).notNull(),
    currency: char("currency", { length: 3 }).notNull(),
    available: integer("available").notNull(),
    reserved: integer("reserved").notNull().default(0),
    sold: integer("sold").notNull().default(0),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check("products_available_non_negative", sql`${t.available} >= 0`),
    check("products_reserved_non_negative", sql`${t.reserved} >= 0`),
    check("products_sold_non_negative", sql`${t.sold} >= 0`),
    check("products_price_non_negative", sql`${t.priceMinor} >= 0`),
  ],
);

export const reservations = inventorySchema.table(
  "reservations",
  {
    id: uuid("id").primaryKey(),
    orderId: text("order_id").notNull().unique(),
    status: text("status", { enum: ["reserved", "released", "committed"] }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [check("reservations_status_valid", sql`${t.status} in ('reserved', 'released', 'committed')`)],
);

export const reservationItems = inventorySchema.table(
  "reservation_items",
  {
    reservationId: uuid("reservation_id")
      .notNull()
      .references(() => reservations.id),
    sku: text("sku")
      .notNull()
      .references(() => products.sku),
    quantity: integer("quantity").notNull(),
  },
  (t) => [primaryKey({ columns: [t.reservationId, t.sku] }), check("reservation_items_quantity_positive", sql`${t.quantity} > 0`)],
);

export const outbox = createOutboxTable(inventorySchema);

export const tables = { products, reservations, reservationItems, outbox };
