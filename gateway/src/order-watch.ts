import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import type { Subscription } from "@nats-io/transport-node";
import type { BusConnection } from "../../services/platform/bus/connection.js";
import { file_shop_inventory_v1_inventory_events } from "../../gen/shop/inventory/v1/inventory_events_pb.js";
import { file_shop_order_v1_order_events } from "../../gen/shop/order/v1/order_events_pb.js";
import { file_shop_payment_v1_payment_events } from "../../gen/shop/payment/v1/payment_events_pb.js";

const eventSchemas = new Map<string, DescMessage>(
  [file_shop_order_v1_order_events, file_shop_inventory_v1_inventory_events, file_shop_payment_v1_payment_events].flatMap((file) =>
    file.messages.map((message) => [message.typeName, message] as const),
  ),
);

type Listener = (eventType: string) => void;

/**
 * Every event about any order, read live off the bus (core subscriptions on the subjects of
 * `contexts`' streams: a watch is live, not a replay) and handed to the watchers of that order. One
 * subscription per gateway, not one per watch: each event is decoded once, whatever the
 * number of open watches, so the cost grows with the event rate, not events × watchers.
 */
export function createOrderEventFeed(bus: BusConnection, contexts: readonly string[]) {
  const listeners = new Map<string, Set<Listener>>();
  let subscriptions: Subscription[] = [];
  let closed = false;

  function dispatch(eventType: string, data: Uint8Array) {
    const schema = eventSchemas.get(eventType);
    if (!schema) return;
    let orderId: string | undefined;
    try {
      orderId = (fromBinary(schema, data) as { orderId?: string }).orderId;
    } catch {
      return; // Not ours to judge; consumers dead-letter undecodable events.
    }
    for (const listener of (orderId && listeners.get(orderId)) || []) listener(eventType);
  }

  void bus.ready.then(
    ({ nc }) => {
      if (closed) return;
      // One per context, each within what the gateway's NATS user may subscribe to.
      subscriptions = contexts.map((context) =>
        nc.subscribe(`shop.${context}.v1.>`, {
          callback: (err, msg) => {
            if (!err && listeners.size > 0) dispatch(msg.headers?.get("ce-type") ?? "", msg.data);
          },
        }),
      );
    },
    () => {},
  );

  return {
    /** Calls `listener` with the type of each event about `orderId`; returns the unsubscribe. */
    listen(orderId: string, listener: Listener): () => void {
      const set = listeners.get(orderId) ?? new Set<Listener>();
      listeners.set(orderId, set.add(listener));
      return () => {
        set.delete(listener);
        // Only this set: a repeated unsubscribe must not drop a later watcher's set.
        if (set.size === 0 && listeners.get(orderId) === set) listeners.delete(orderId);
      };
    },
    close() {
      closed = true;
      for (const subscription of subscriptions) subscription.unsubscribe();
    },
  };
}

export type OrderEventFeed = ReturnType<typeof createOrderEventFeed>;

/**
 * Wakes a watcher whenever an event about one order crosses the bus, and every `pollMs`
 * regardless, so a watch keeps moving while NATS is away.
 */
export function watchOrderEvents(feed: OrderEventFeed, orderId: string, pollMs: number) {
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  const push = (eventType: string) => {
    queue.push(eventType);
    wake?.();
  };
  const unlisten = feed.listen(orderId, push);
  const poll = setInterval(() => push(""), pollMs);
  return {
    /** The next event type about the order ("" for a poll tick), or undefined once aborted. */
    async next(signal: AbortSignal): Promise<string | undefined> {
      while (queue.length === 0) {
        if (signal.aborted) return undefined;
        await new Promise<void>((resolve) => {
          const onAbort = () => resolve();
          wake = () => {
            signal.removeEventListener("abort", onAbort);
            resolve();
          };
          signal.addEventListener("abort", onAbort, { once: true });
        });
        wake = undefined;
      }
      return queue.shift();
    },
    close() {
      clearInterval(poll);
      unlisten();
    },
  };
}
