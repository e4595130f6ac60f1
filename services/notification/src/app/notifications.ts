import { randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { on, type EventHandler, keysetAfter, keysetOrder, pageRequest, readPage, requireText, type Keyset, type SqlExecutor } from "#platform";
import { OrderCancelledSchema, OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import { notificationText, type NotificationKind } from "../domain/notification.js";
import { notifications, type tables } from "../db/schema.js";

type Db = PostgresJsDatabase<typeof tables>;

/** A customer's notifications are listed newest first. */
const newestFirst: Keyset = { createdAt: notifications.createdAt, id: notifications.id, order: "newest-first" };
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
      requireText(customerId, "customer_id");
      return readPage(pageRequest({ pageSize: requestedSize, pageToken }, "ListNotifications"), (limit, after) =>
        db
          .select()
          .from(notifications)
          .where(and(eq(notifications.customerId, customerId), keysetAfter(newestFirst, after)))
          .orderBy(...keysetOrder(newestFirst))
          .limit(limit),
      );
    },
  };
}
