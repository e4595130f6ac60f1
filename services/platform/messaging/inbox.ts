import { index, pgSchema, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";

type Schema = ReturnType<typeof pgSchema>;

/**
 * The inbox: which events each consumer has already applied. The row is inserted in the
 * transaction of the effect, so a redelivered event finds it and changes nothing.
 */
export function createInboxTable(schema: Schema) {
  return schema.table(
    "inbox",
    {
      consumer: text("consumer").notNull(),
      eventId: uuid("event_id").notNull(),
      eventType: text("event_type").notNull(),
      processedAt: timestamp("processed_at", { withTimezone: true }).notNull().defaultNow(),
    },
    // The retention sweep finds expired rows by age.
    (t) => [primaryKey({ columns: [t.consumer, t.eventId] }), index("inbox_processed_idx").on(t.processedAt)],
  );
}

export type InboxTable = ReturnType<typeof createInboxTable>;
