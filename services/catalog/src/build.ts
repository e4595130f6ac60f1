import { resolve } from "node:path";
import { Counter } from "prom-client";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { openRouteTable, startService, type ServiceRuntime, type ServiceServer } from "#platform";
import { CATALOG_WRITE_ROUTE, catalogRoutes } from "#shop/catalog-router.js";
import { createOldShopCatalog } from "#shop/old-shop-catalog.js";
import { deadLetterStream, eventStream } from "#shop/streams.js";
import { createCatalogStore } from "./app/catalog-store.js";
import { startSyncBack } from "./app/sync-back.js";
import { registerCdcGauges } from "./cdc/metrics.js";
import { startCdcReader, type CdcReaderOptions } from "./cdc/reader.js";
import { DEFAULT_PUBLICATION, DEFAULT_SLOT } from "./cdc/source.js";
import { inbox, outbox, tables } from "./db/schema.js";
import { RouteTableBehindError } from "./domain/errors.js";
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
  /** The old shop's JSON API, for the sync back of writes taken here and DiscardRefusedWrites' read of a product. */
  oldshopUrl: string;
  /** Redelivery delays of the sync back after a failed PUT; tests pass short ones. */
  syncBackBackoffMs?: number[];
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
      // The capture holds a change by its content (against catalog.sync_back), never by the route.
      const store = createCatalogStore(db, slot, deps.logger);
      // Read only: the catalog follows where writes go; the console's user moves them. Only
      // UpdateProduct reads it, as a fence: a write is taken here only while routed here, as
      // the bucket has it now (caughtUp), not as this replica's watch last delivered it, so a
      // gateway that has seen a move is not refused by a catalog that has not, and a move back
      // fences writes here at once. A watch still behind after a second refuses the write
      // (UNAVAILABLE, retried); with NATS away, when no one can move the route, the last known stands.
      const routes = openRouteTable({ bus, routes: catalogRoutes, logger: deps.logger });
      const writesHere = async () => {
        if ((await routes.caughtUp()) === "behind") throw new RouteTableBehindError();
        return routes.route(CATALOG_WRITE_ROUTE).mode === "new";
      };
      const applied = new Counter({ name: "catalog_cdc_applied_changes_total", help: "Source changes applied to the catalog", registers: [metrics.registry] });
      const held = new Counter({
        name: "catalog_cdc_captured_while_writes_here_total",
        help: "Source changes captured but not applied: their SKU had writes taken here not yet seen back, and they were none of them (writes past the facade, or legacy changes meeting a write here)",
        registers: [metrics.registry],
      });
      let capturedWhileWritesHere = 0;
      const reader = startCdcReader({
        store,
        source: { url: deps.cdcSourceUrl, slot, publication: deps.cdcPublication ?? DEFAULT_PUBLICATION },
        logger: deps.logger,
        onApplied: (changes) => applied.inc(changes),
        onHeld: (changes) => {
          capturedWhileWritesHere += changes;
          held.inc(changes);
        },
        ...(deps.cdcBackoff ? { backoff: deps.cdcBackoff } : {}),
      });
      registerCdcGauges(metrics, reader);
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
        routes: createRoutes({ store, syncStatus: () => ({ ...reader.status(), capturedWhileWritesHere }), writesHere, oldShop }),
        async stop() {
          await Promise.all([reader.stop(), syncBack.stop()]);
          routes.close();
          oldShop.close();
        },
      };
    },
  });
}
