import { resolve } from "node:path";
import { NotificationService } from "#gen/shop/notification/v1/notification_service_pb.js";
import { file_shop_order_v1_order_events } from "#gen/shop/order/v1/order_events_pb.js";
import { startEventConsumer, startService, type ServiceRuntime, type ServiceServer } from "#platform";
import { deadLetterStream, eventStream } from "#shop/streams.js";
import { customerAgent } from "#shop/customer-agent.js";
import { createNotificationQueries, orderEventHandlers } from "./app/notifications.js";
import { inbox, tables } from "./db/schema.js";
import { createRoutes } from "./rpc/routes.js";

export interface NotificationDeps extends ServiceRuntime {
  /** Tests shorten the redelivery backoff. */
  consumerBackoffMs?: number[];
}

/** Wires notification together and starts serving; main.ts and tests both call this. */
export function build(deps: NotificationDeps): Promise<ServiceServer> {
  return startService(deps, {
    name: "notification",
    schemaName: "notification",
    tables,
    migrationsFolder: resolve(import.meta.dirname, "../migrations"),
    services: [NotificationService],
    customerAgent,
    retained: { inbox: { table: inbox, consumed: eventStream("order"), deadLetters: deadLetterStream } },
    async setup({ db, bus, metrics }) {
      const consumer = startEventConsumer({
        bus,
        db,
        inbox,
        stream: { ...eventStream("order"), replicas: deps.streamReplicas },
        deadLetters: deadLetterStream,
        contract: file_shop_order_v1_order_events,
        durable: "notification",
        handlers: orderEventHandlers,
        logger: deps.logger,
        ...(deps.consumerBackoffMs ? { backoffMs: deps.consumerBackoffMs } : {}),
      });
      metrics.gauge("event_consumer_lag", "Events not yet received or not yet acked, per durable consumer", ["consumer"], async () => {
        const lag = await consumer.lag();
        return lag === undefined ? [] : [{ labels: { consumer: "notification" }, value: lag }];
      });
      return { routes: createRoutes({ queries: createNotificationQueries(db) }), stop: () => consumer.stop() };
    },
  });
}
