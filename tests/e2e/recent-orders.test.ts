import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { OrderSchema, OrderStatus } from "#gen/shop/order/v1/order_service_pb.js";
import { OrderCancelledSchema, OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import type { OrderEvent, OrderEventFeed } from "#gateway/src/order-watch.js";
import { createRecentOrders } from "#gateway/src/recent-orders.js";

/** A feed whose events the test publishes by hand. */
function handFeed() {
  const byType = new Map<string, ((event: OrderEvent) => void)[]>();
  const feed = {
    listen: () => () => {},
    listenToTypes: (types: readonly string[], listener: (event: OrderEvent) => void) => types.forEach((type) => byType.set(type, [...(byType.get(type) ?? []), listener])),
    close: () => {},
  } as unknown as OrderEventFeed;
  const publish = (event: OrderEvent) => byType.get(event.type)?.forEach((listener) => listener(event));
  return { feed, publish };
}

const pending = (id: string, customerId = "ada") => create(OrderSchema, { id, customerId, status: OrderStatus.PENDING });
const confirmed = (orderId: string): OrderEvent => ({ type: OrderConfirmedSchema.typeName, message: { orderId }, time: new Date("2026-12-01T12:00:00.123Z") });

describe("the gateway's recent orders", () => {
  it("keep an order placed here current from ordering's events, for its customer only", () => {
    const { feed, publish } = handFeed();
    const recent = createRecentOrders(feed);
    recent.remember(pending("o1"));
    expect(recent.latest("o1", "ada")?.status).toBe(OrderStatus.PENDING);
    publish({ type: OrderCancelledSchema.typeName, message: { orderId: "o1", reason: "payment declined" }, time: new Date() });
    expect(recent.latest("o1", "ada")).toMatchObject({ status: OrderStatus.CANCELLED, cancelReason: "payment declined" });
    expect(recent.latest("o1", "eve")).toBeUndefined();
    expect(recent.latest("never-placed", "ada")).toBeUndefined();
  });

  it("apply an outcome that arrived before the order was remembered", () => {
    const { feed, publish } = handFeed();
    const recent = createRecentOrders(feed);
    publish(confirmed("fast"));
    recent.remember(pending("fast"));
    expect(recent.latest("fast", "ada")).toMatchObject({ status: OrderStatus.CONFIRMED, updateTime: { seconds: 1796126400n, nanos: 123_000_000 } });
  });

  it("forget after their time, and hold no more than their bound", () => {
    const { feed } = handFeed();
    let clock = 0;
    const recent = createRecentOrders(feed, { ttlMs: 1_000, maxEntries: 2, now: () => clock });
    recent.remember(pending("a"));
    recent.remember(pending("b"));
    recent.remember(pending("c")); // evicts a, the oldest
    expect([recent.latest("a", "ada"), recent.latest("b", "ada")?.id, recent.latest("c", "ada")?.id]).toEqual([undefined, "b", "c"]);
    clock = 1_001;
    expect(recent.latest("c", "ada")).toBeUndefined();
  });
});
