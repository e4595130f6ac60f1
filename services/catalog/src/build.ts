import { resolve } from "node:path";
import { Counter } from "prom-client";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { startService, type Metrics, type ServiceRuntime, type ServiceServer } from "#platform";
import { eventStream } from "#shop/streams.js";
import { createCatalogStore } from "./app/catalog-store.js";
import { startCdcReader, type CdcReader, type CdcReaderOptions } from "./cdc/reader.js";
import { DEFAULT_PUBLICATION, DEFAULT_SLOT } from "./cdc/source.js";
import { outbox, tables } from "./db/schema.js";
import { createRoutes } from "./rpc/routes.js";

export interface CatalogDeps extends ServiceRuntime {
  /** The change capture role's URL on the old shop's database. */
  cdcSourceUrl: string;
  /** Default catalog_from_oldshop. */
  cdcSlot?: string;
  /** Default oldshop_catalog. */
  cdcPublication?: string;
  /** Reconnect delays of the change capture; tests pass short ones. */
  cdcBackoff?: CdcReaderOptions["backoff"];
}

/** The change capture's lag on the ops port's /metrics, read at scrape time. */
function registerLagGauges(metrics: Metrics, reader: CdcReader) {
  metrics.gauge("catalog_cdc_lag_bytes", "WAL bytes between the newest source position heard of and the one applied", [], async () => [{ value: Number(reader.status().lagBytes) }]);
  metrics.gauge("catalog_cdc_lag_seconds", "How long the oldest source change not yet applied has waited; 0 when caught up", [], async () => [{ value: reader.status().lagMs / 1000 }]);
}

/** Wires catalog together and starts serving; main.ts and tests both call this. */
export function build(deps: CatalogDeps): Promise<ServiceServer> {
  return startService(deps, {
    name: "catalog",
    schemaName: "catalog",
    tables,
    migrationsFolder: resolve(import.meta.dirname, "../migrations"),
    outbox: { table: outbox, stream: eventStream("catalog") },
    services: [CatalogService],
    async setup({ db, metrics }) {
      const slot = deps.cdcSlot ?? DEFAULT_SLOT;
      const store = createCatalogStore(db, slot);
      const applied = new Counter({ name: "catalog_cdc_applied_changes_total", help: "Source changes applied to the catalog", registers: [metrics.registry] });
      const reader = startCdcReader({
        store,
        source: { url: deps.cdcSourceUrl, slot, publication: deps.cdcPublication ?? DEFAULT_PUBLICATION },
        logger: deps.logger,
        onApplied: (changes) => applied.inc(changes),
        ...(deps.cdcBackoff ? { backoff: deps.cdcBackoff } : {}),
      });
      registerLagGauges(metrics, reader);
      return { routes: createRoutes({ store, syncStatus: () => reader.status() }), stop: () => reader.stop() };
    },
  });
}
