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

/**
 * Wakes a watcher whenever an event about one order crosses the bus, and every `pollMs`
 * regardless, so a watch keeps moving while NATS is away. Events are read as they are
 * published (a core subscription on the streams' subjects): a watch is live, not a replay.
 */
export function watchOrderEvents(bus: BusConnection, orderId: string, pollMs: number) {
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  const push = (eventType: string) => {
    queue.push(eventType);
    wake?.();
  };
  let subscription: Subscription | undefined;
  void bus.ready.then(({ nc }) => {
    if (closed) return;
    subscription = nc.subscribe("shop.*.v1.>", {
      callback: (err, msg) => {
        const type = msg.headers?.get("ce-type") ?? "";
        const schema = eventSchemas.get(type);
        if (err || !schema) return;
        try {
          if ((fromBinary(schema, msg.data) as { orderId?: string }).orderId === orderId) push(type);
        } catch {
          // Not ours to judge; consumers dead-letter undecodable events.
        }
      },
    });
  }, () => {});
  const poll = setInterval(() => push(""), pollMs);
  let closed = false;
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
      closed = true;
      clearInterval(poll);
      subscription?.unsubscribe();
    },
  };
}
