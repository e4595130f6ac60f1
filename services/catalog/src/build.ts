import { resolve } from "node:path";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { file_shop_catalog_v1_catalog_events } from "#gen/shop/catalog/v1/catalog_events_pb.js";
import { startEventConsumer, startService, type ServiceRuntime, type ServiceServer } from "#platform";
import { deadLetterStream, eventStream } from "#shop/streams.js";
import { createItems } from "./app/items.js";
import { itemEventHandlers } from "./app/receipts.js";
import { inbox, outbox, tables } from "./db/schema.js";
import { createRoutes } from "./rpc/routes.js";

/** The stream catalog's outbox feeds, and which its own durable consumer reads back. */
const stream = eventStream("catalog");

/** Wires catalog together and starts serving; main.ts and tests both call this. */
export function build(deps: ServiceRuntime): Promise<ServiceServer> {
  return startService(deps, {
    name: "catalog",
    schemaName: "catalog",
    tables,
    migrationsFolder: resolve(import.meta.dirname, "../migrations"),
    outbox: { table: outbox, stream },
    retained: { inbox: { table: inbox, consumed: stream, deadLetters: deadLetterStream } },
    services: [CatalogService],
    async setup({ db, bus }) {
      const consumer = startEventConsumer({
        bus,
        db,
        inbox,
        stream: { ...stream, replicas: deps.streamReplicas },
        deadLetters: deadLetterStream,
        contract: file_shop_catalog_v1_catalog_events,
        durable: "catalog",
        handlers: itemEventHandlers,
        logger: deps.logger,
      });
      return { routes: createRoutes({ items: createItems(db) }), stop: () => consumer.stop() };
    },
  });
}
