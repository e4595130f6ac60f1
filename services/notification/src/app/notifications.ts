import { randomUUID } from "node:crypto";
import { and, desc, eq, lt, or } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { on, type EventHandler, decodePageToken, encodePageToken, pageSize, type PageKey, type SqlExecutor, InvalidArgumentError } from "#platform";
import { OrderCancelledSchema, OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import { notificationText, type NotificationKind } from "../domain/notification.js";
import { notifications, type tables } from "../db/schema.js";

type Db = PostgresJsDatabase<typeof tables>;
export type NotificationRow = typeof notifications.$inferSelect;

async function record(tx: SqlExecutor, eventId: string, fields: { customerId: string; orderId: string; kind: NotificationKind; message: string }) {
  // No ON CONFLICT: the inbox is what makes a redelivery harmless; the unique event_id is a
  // guard that fails loudly if that ever breaks.
  await tx.insert(notifications).values({ id: randomUUID(), eventId, ...fields });
}

/** Reactions to ordering's events: each becomes one notification row. */
export const orderEventHandlers: EventHandler[] = [
  on(OrderConfirmedSchema, (tx, event, envelope) =>
    record(tx, envelope.id, {
      customerId: event.customerId,
      orderId: event.orderId,
      kind: "order_confirmed",
      message: notificationText("order_confirmed", event.orderId, { totalMinor: Number(event.total?.minorUnits ?? 0n), currency: event.total?.currencyCode ?? "" }),
    }),
  ),
  on(OrderCancelledSchema, (tx, event, envelope) =>
    record(tx, envelope.id, {
      customerId: event.customerId,
      orderId: event.orderId,
      kind: "order_cancelled",
      message: notificationText("order_cancelled", event.orderId, { reason: event.reason }),
    }),
  ),
];

export function createNotificationQueries(db: Db) {
  return {
    async list(customerId: string, requestedSize: number, pageToken: string): Promise<{ rows: NotificationRow[]; nextPageToken: string }> {
      if (customerId.trim() === "") throw new InvalidArgumentError("customer_id", "is required");
      if (requestedSize < 0) throw new InvalidArgumentError("page_size", "must not be negative");
      const after: PageKey | undefined = pageToken ? decodePageToken(pageToken) : undefined;
      if (pageToken && !after) throw new InvalidArgumentError("page_token", "is not a token returned by ListNotifications");
      const size = pageSize(requestedSize);
      const keyset = after
        ? or(lt(notifications.createdAt, after.createdAt), and(eq(notifications.createdAt, after.createdAt), lt(notifications.id, after.id)))
        : undefined;
      const rows = await db
        .select()
        .from(notifications)
        .where(and(eq(notifications.customerId, customerId), keyset))
        .orderBy(desc(notifications.createdAt), desc(notifications.id))
        .limit(size + 1);
      const page = rows.slice(0, size);
      return { rows: page, nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!) : "" };
    },
  };
}
