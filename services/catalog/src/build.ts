import { resolve } from "node:path";
import { Counter } from "prom-client";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { openRouteTable, startService, type Metrics, type ServiceRuntime, type ServiceServer } from "#platform";
import { CATALOG_WRITE_ROUTE, catalogRoutes } from "#shop/catalog-router.js";
import { createOldShopCatalog } from "#shop/old-shop-catalog.js";
import { deadLetterStream, eventStream } from "#shop/streams.js";
import { createCatalogStore } from "./app/catalog-store.js";
import { startSyncBack } from "./app/sync-back.js";
import { startCdcReader, type CdcReader, type CdcReaderOptions } from "./cdc/reader.js";
import { DEFAULT_PUBLICATION, DEFAULT_SLOT } from "./cdc/source.js";
import { inbox, outbox, tables } from "./db/schema.js";
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
  /** The old shop's JSON API, for the sync back of writes taken here. */
  oldshopUrl: string;
  /** Redelivery delays of the sync back after a failed PUT; tests pass short ones. */
  syncBackBackoffMs?: number[];
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
    retained: { inbox: { table: inbox, consumed: eventStream("catalog"), deadLetters: deadLetterStream } },
    async setup({ db, bus, metrics, mesh }) {
      const slot = deps.cdcSlot ?? DEFAULT_SLOT;
      const store = createCatalogStore(db, slot);
      // Read only: the catalog follows where writes go; the console's user moves them.
      const routes = openRouteTable({ bus, routes: catalogRoutes, logger: deps.logger });
      const writesHere = () => routes.route(CATALOG_WRITE_ROUTE).mode === "new";
      // A legacy write committed before the route moved, captured after, is still the old shop's
      // to give: applied. Only changes committed since (echoes, writes past the facade) are held.
      // Both times are to the millisecond; one in the move's own millisecond counts as before it
      // (no echo comes back that fast: it needs a write here, its relay and its PUT first).
      const writesHereAt = (committedAt: Date) => {
        const route = routes.route(CATALOG_WRITE_ROUTE);
        return route.mode === "new" && !(route.changeTime !== "" && committedAt.getTime() <= Date.parse(route.changeTime));
      };
      const applied = new Counter({ name: "catalog_cdc_applied_changes_total", help: "Source changes applied to the catalog", registers: [metrics.registry] });
      const held = new Counter({
        name: "catalog_cdc_captured_while_writes_here_total",
        help: "Source changes captured but not applied because catalog writes were routed here (the sync back's echoes, or writes past the facade)",
        registers: [metrics.registry],
      });
      let capturedWhileWritesHere = 0;
      const reader = startCdcReader({
        store,
        source: { url: deps.cdcSourceUrl, slot, publication: deps.cdcPublication ?? DEFAULT_PUBLICATION },
        logger: deps.logger,
        onApplied: (changes) => applied.inc(changes),
        writesHere: writesHereAt,
        onHeld: (changes) => {
          capturedWhileWritesHere += changes;
          held.inc(changes);
        },
        ...(deps.cdcBackoff ? { backoff: deps.cdcBackoff } : {}),
      });
      registerLagGauges(metrics, reader);
      const oldShopTls = mesh.peerTls("oldshop");
      const oldShop = createOldShopCatalog({ baseUrl: deps.oldshopUrl, ...(oldShopTls ? { tls: oldShopTls } : {}) });
      const syncBack = startSyncBack({
        bus,
        db,
        oldShop,
        streamReplicas: deps.streamReplicas,
        logger: deps.logger,
        ...(deps.syncBackBackoffMs ? { backoffMs: deps.syncBackBackoffMs } : {}),
      });
      return {
        routes: createRoutes({ store, syncStatus: () => ({ ...reader.status(), capturedWhileWritesHere }), writesHere }),
        async stop() {
          await Promise.all([reader.stop(), syncBack.stop()]);
          routes.close();
          oldShop.close();
        },
      };
    },
  });
}
