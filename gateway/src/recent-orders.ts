import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OrderStatus, type Order } from "#gen/shop/order/v1/order_service_pb.js";
import { OrderCancelledSchema, OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import type { OrderEvent, OrderEventFeed } from "./order-watch.js";

/** Ordering's events that change an order: it leaves PENDING once, confirmed or cancelled. */
const outcomeTypes = [OrderConfirmedSchema.typeName, OrderCancelledSchema.typeName];

/** The order after one of ordering's own events: confirmed or cancelled, when it was committed. */
export function applyOrderEvent(order: Order, event: OrderEvent): Order {
  const updateTime = timestampFromDate(event.time);
  switch (event.type) {
    case OrderConfirmedSchema.typeName:
      return { ...order, status: OrderStatus.CONFIRMED, updateTime };
    case OrderCancelledSchema.typeName:
      return { ...order, status: OrderStatus.CANCELLED, cancelReason: event.message.reason ?? "", updateTime };
    default:
      return order;
  }
}

/**
 * The orders this gateway placed in the last minute, kept current from ordering's events, so
 * the WatchOrder that follows a PlaceOrder starts from the order it already holds instead of
 * reading it again. An outcome seen before its order was remembered (the saga can finish
 * before PlaceOrder's answer is handled) is kept too, and applied when it is. A watch on
 * another replica, or after the minute, reads the order as before; so does one that is not
 * the order's customer's. Bounded: the oldest entry goes first.
 */
export function createRecentOrders(feed: OrderEventFeed, options: { ttlMs?: number; maxEntries?: number; now?: () => number } = {}) {
  const { ttlMs = 60_000, maxEntries = 10_000, now = Date.now } = options;
  const entries = new Map<string, { order?: Order; outcome?: OrderEvent; until: number }>();
  const entry = (orderId: string) => {
    let found = entries.get(orderId);
    if (!found) {
      if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!);
      found = { until: now() + ttlMs };
      entries.set(orderId, found);
    }
    return found;
  };
  feed.listenToTypes(outcomeTypes, (event) => {
    if (!event.message.orderId) return;
    const found = entry(event.message.orderId);
    found.outcome = event;
    if (found.order) found.order = applyOrderEvent(found.order, event);
  });
  return {
    /** Keeps an order just placed, with any outcome already seen applied. */
    remember(order: Order): void {
      const found = entry(order.id);
      found.order = found.outcome ? applyOrderEvent(order, found.outcome) : order;
    },
    /** The order as of the latest event, if it was placed here lately by this customer. */
    latest(orderId: string, customerId: string): Order | undefined {
      const found = entries.get(orderId);
      if (!found?.order || found.until < now() || found.order.customerId !== customerId) return undefined;
      return found.order;
    },
  };
}

export type RecentOrders = ReturnType<typeof createRecentOrders>;
