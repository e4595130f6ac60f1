import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CatalogService, ProductSchema, SyncState } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { toMoney } from "#shop/money.js";
import type { CatalogStore, ProductRow } from "../app/catalog-store.js";
import type { SyncStatus } from "../cdc/sync-status.js";
import { formatLsn } from "../domain/lsn.js";
import { WritesRoutedToOldShopError } from "../domain/errors.js";
import { requireProductWrite } from "#shop/product-write.js";
import { requireSku } from "../domain/product.js";
import { CATALOG_WRITE_ROUTE } from "#shop/catalog-router.js";

export interface CatalogRouteDeps {
  store: CatalogStore;
  /** The change capture's status, and the captured changes held since start because writes were routed here. */
  syncStatus: () => SyncStatus & { capturedWhileWritesHere: number };
  /** Whether the route table has moved catalog writes here. */
  writesHere: () => boolean;
}

const toProduct = (row: ProductRow) => create(ProductSchema, { sku: row.sku, name: row.name, description: row.description, price: toMoney(row.currency, row.priceMinor) });

const stateToWire: Record<SyncStatus["state"], SyncState> = {
  backfilling: SyncState.BACKFILLING,
  streaming: SyncState.STREAMING,
  disconnected: SyncState.DISCONNECTED,
  halted: SyncState.HALTED,
};

const lsnText = (lsn: bigint | undefined) => (lsn === undefined ? "" : formatLsn(lsn));

/** Maps the wire contract onto catalog's reads and its one write; no business rules live here. */
export function createRoutes({ store, syncStatus, writesHere }: CatalogRouteDeps) {
  return (router: ConnectRouter) =>
    router.service(CatalogService, {
      async listProducts(req) {
        req.skus.forEach((sku, i) => requireSku(sku, `skus[${i}]`));
        return { products: (await store.listProducts(req.skus)).map(toProduct) };
      },
      async updateProduct(req) {
        const product = requireProductWrite(req);
        if (!writesHere()) throw new WritesRoutedToOldShopError(CATALOG_WRITE_ROUTE);
        const { row } = await store.updateProduct(product);
        return { product: toProduct(row) };
      },
      async getSyncStatus() {
        const status = syncStatus();
        const [products, syncBackPending] = await Promise.all([store.countProducts(), store.countSyncBackPending()]);
        return {
          slot: status.slot,
          state: stateToWire[status.state],
          appliedLsn: lsnText(status.appliedLsn),
          sourceLsn: lsnText(status.sourceLsn),
          lagBytes: status.lagBytes,
          lagMs: BigInt(status.lagMs),
          ...(status.appliedTime ? { appliedTime: timestampFromDate(status.appliedTime) } : {}),
          products: BigInt(products),
          syncBackPending: BigInt(syncBackPending),
          capturedWhileWritesHere: BigInt(status.capturedWhileWritesHere),
          haltedReason: status.halted ?? "",
        };
      },
    });
}
