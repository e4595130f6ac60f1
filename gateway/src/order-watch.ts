import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import type { Subscription } from "@nats-io/transport-node";
import type { BusConnection } from "#platform";
import { eventStream } from "#shop/streams.js";
import { file_shop_inventory_v1_inventory_events } from "#gen/shop/inventory/v1/inventory_events_pb.js";
import { file_shop_order_v1_order_events } from "#gen/shop/order/v1/order_events_pb.js";
import { file_shop_payment_v1_payment_events } from "#gen/shop/payment/v1/payment_events_pb.js";

const eventSchemas = new Map<string, DescMessage>(
  [file_shop_order_v1_order_events, file_shop_inventory_v1_inventory_events, file_shop_payment_v1_payment_events].flatMap((file) =>
    file.messages.map((message) => [message.typeName, message] as const),
  ),
);

/** An event about one order, decoded once for all its watchers. */
export interface OrderEvent {
  type: string;
  message: { orderId?: string; reason?: string };
  /** When the change it reports was committed (the CloudEvents `ce-time`). */
  time: Date;
}

type Listener = (event: OrderEvent) => void;

/**
 * Every event about any order, read live off the bus (core subscriptions on the subjects of
 * `contexts`' streams: a watch is live, not a replay) and handed to the watchers of that order. One
 * subscription per gateway, not one per watch: each event is decoded once, whatever the
 * number of open watches, so the cost grows with the event rate, not events × watchers.
 */
export function createOrderEventFeed(bus: BusConnection, contexts: readonly string[]) {
  const listeners = new Map<string, Set<Listener>>();
  /** Listeners to every event of some types, whatever the order. */
  const byType = new Map<string, Listener[]>();
  let subscriptions: Subscription[] = [];
  let closed = false;

  function dispatch(type: string, time: string, data: Uint8Array) {
    const schema = eventSchemas.get(type);
    // Decoded only when someone may want it: an open watch, or a listener to its type.
    if (!schema || (listeners.size === 0 && !byType.has(type))) return;
    let message: OrderEvent["message"];
    try {
      message = fromBinary(schema, data) as OrderEvent["message"];
    } catch {
      return; // Not ours to judge; consumers dead-letter undecodable events.
    }
    const watching = (message.orderId && listeners.get(message.orderId)) || [];
    const event = { type, message, time: new Date(time) };
    for (const listener of byType.get(type) ?? []) listener(event);
    for (const listener of watching) listener(event);
  }

  void bus.ready.then(
    ({ nc }) => {
      if (closed) return;
      // One per context, each within what the gateway's NATS user may subscribe to.
      subscriptions = contexts.flatMap((context) => eventStream(context).subjects).map((subject) =>
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (!err) dispatch(msg.headers?.get("ce-type") ?? "", msg.headers?.get("ce-time") ?? "", msg.data);
          },
        }),
      );
    },
    () => {},
  );

  return {
    /** Calls `listener` with each event about `orderId`; returns the unsubscribe. */
    listen(orderId: string, listener: Listener): () => void {
      const set = listeners.get(orderId) ?? new Set<Listener>();
      listeners.set(orderId, set.add(listener));
      return () => {
        set.delete(listener);
        // Only this set: a repeated unsubscribe must not drop a later watcher's set.
        if (set.size === 0 && listeners.get(orderId) === set) listeners.delete(orderId);
      };
    },
    /** Calls `listener` with every event of these types, about any order. */
    listenToTypes(types: readonly string[], listener: Listener): void {
      for (const type of types) byType.set(type, [...(byType.get(type) ?? []), listener]);
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
  const queue: (OrderEvent | "poll")[] = [];
  let wake: (() => void) | undefined;
  const push = (event: OrderEvent | "poll") => {
    queue.push(event);
    wake?.();
  };
  const unlisten = feed.listen(orderId, push);
  const poll = setInterval(() => push("poll"), pollMs);
  return {
    /** The next event about the order ("poll" for a poll tick), or undefined once aborted. */
    async next(signal: AbortSignal): Promise<OrderEvent | "poll" | undefined> {
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
