import type { ConnectRouter } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { customerOf } from "#platform";
import { NotificationKind, NotificationService } from "#gen/shop/notification/v1/notification_service_pb.js";
import type { createNotificationQueries, NotificationRow } from "../app/notifications.js";

const kindToWire: Record<NotificationRow["kind"], NotificationKind> = {
  order_confirmed: NotificationKind.ORDER_CONFIRMED,
  order_cancelled: NotificationKind.ORDER_CANCELLED,
};

/** Maps the wire contract onto notification's queries. */
export function createRoutes({ queries }: { queries: ReturnType<typeof createNotificationQueries> }) {
  return (router: ConnectRouter) =>
    router.service(NotificationService, {
      async listNotifications(req, ctx) {
        const { rows, nextPageToken } = await queries.list(customerOf(ctx, req.customerId) ?? req.customerId, req.pageSize, req.pageToken);
        return {
          notifications: rows.map((row) => ({
            id: row.id,
            customerId: row.customerId,
            orderId: row.orderId,
            kind: kindToWire[row.kind],
            message: row.message,
            eventId: row.eventId,
            createTime: timestampFromDate(row.createdAt),
          })),
          nextPageToken,
        };
      },
    });
}
