import { resolve } from "node:path";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { startService, type ServiceRuntime, type ServiceServer } from "#platform";
import { eventStream } from "#shop/streams.js";
import { customerAgent } from "#shop/customer-agent.js";
import { createInventory } from "./app/inventory.js";
import { outbox, tables } from "./db/schema.js";
import { demoCatalog, type CatalogEntry } from "./domain/demo-catalog.js";
import { createRoutes } from "./rpc/routes.js";

export interface InventoryDeps extends ServiceRuntime {
  /** Seeded when the catalog is empty; tests pass their own. */
  catalog?: readonly CatalogEntry[];
}

/** Wires inventory together and starts serving; main.ts and tests both call this. */
export function build(deps: InventoryDeps): Promise<ServiceServer> {
  return startService(deps, {
    name: "inventory",
    schemaName: "inventory",
    tables,
    migrationsFolder: resolve(import.meta.dirname, "../migrations"),
    outbox: { table: outbox, stream: eventStream("inventory") },
    services: [InventoryService],
    customerAgent,
    async setup({ db }) {
      const inventory = createInventory(db);
      const seeded = await inventory.seed(deps.catalog ?? demoCatalog);
      if (seeded > 0) deps.logger.info({ products: seeded }, "seeded catalog");
      return { routes: createRoutes({ inventory }) };
    },
  });
}
