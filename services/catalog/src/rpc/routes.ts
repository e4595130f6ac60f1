import type { ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CatalogService, ProductSchema, SyncState, type Product } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { toMoney } from "#shop/money.js";
import type { OldShopCatalog } from "#shop/old-shop-catalog.js";
import type { CatalogStore, OldShopProductReader, ProductRow } from "../app/catalog-store.js";
import type { SyncStatus } from "../cdc/sync-status.js";
import { formatLsn } from "../domain/lsn.js";
import { WritesRoutedToOldShopError } from "../domain/errors.js";
import { requireProductWrite, requireSku } from "#shop/product-write.js";
import type { CatalogProduct } from "../domain/product.js";
import { CATALOG_WRITE_ROUTE } from "#shop/catalog-router.js";

export interface CatalogRouteDeps {
  store: CatalogStore;
  /** The change capture's status, and the captured changes held since start because writes were routed here. */
  syncStatus: () => SyncStatus & { capturedWhileWritesHere: number };
  /** Whether the route table has moved catalog writes here. */
  writesHere: () => Promise<boolean>;
  /** The old shop's JSON API, read by DiscardRefusedWrites. */
  oldShop: Pick<OldShopCatalog, "client">;
}

const toProduct = (row: ProductRow) => create(ProductSchema, { sku: row.sku, name: row.name, description: row.description, price: toMoney(row.currency, row.priceMinor) });

/** The old shop's product as the adapter maps it, every field checked and a price always set, in the catalog's terms. */
const fromProduct = ({ sku, name, description, price }: Product): CatalogProduct => ({ sku, name, description, priceMinor: Number(price!.minorUnits), currency: price!.currencyCode });

/** GetSyncStatusResponse.refused_writes: the contract's bound. */
const REFUSED_WRITES_LISTED = 20;

/**
 * The old shop's product now, through the adapter (its timeouts, retries and breaker): a SKU it
 * does not know is absent from its list. It gives up when `signal` does (the store's bound, or the caller).
 */
const oldShopReader =
  (oldShop: CatalogRouteDeps["oldShop"]): OldShopProductReader =>
  async (sku, signal) => {
    const { products } = await oldShop.client.listProducts({ skus: [sku] }, { signal });
    return products[0] && fromProduct(products[0]);
  };

const stateToWire: Record<SyncStatus["state"], SyncState> = {
  backfilling: SyncState.BACKFILLING,
  streaming: SyncState.STREAMING,
  disconnected: SyncState.DISCONNECTED,
  halted: SyncState.HALTED,
};

const lsnText = (lsn: bigint | undefined) => (lsn === undefined ? "" : formatLsn(lsn));

/** Maps the wire contract onto catalog's reads and its writes; no business rules live here. */
export function createRoutes({ store, syncStatus, writesHere, oldShop }: CatalogRouteDeps) {
  return (router: ConnectRouter) =>
    router.service(CatalogService, {
      async listProducts(req) {
        req.skus.forEach((sku, i) => requireSku(sku, `skus[${i}]`));
        return { products: (await store.listProducts(req.skus)).map(toProduct) };
      },
      async updateProduct(req) {
        const product = requireProductWrite(req);
        if (!(await writesHere())) throw new WritesRoutedToOldShopError(CATALOG_WRITE_ROUTE);
        const { row } = await store.updateProduct(product);
        return { product: toProduct(row) };
      },
      async getSyncStatus() {
        const status = syncStatus();
        const [products, syncBackPending, syncBackRefused, refusedWrites] = await Promise.all([
          store.countProducts(),
          store.countSyncBackPending(),
          store.countSyncBackRefused(),
          store.listRefusedWrites(REFUSED_WRITES_LISTED),
        ]);
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
          syncBackRefused: BigInt(syncBackRefused),
          refusedWrites: refusedWrites.map(({ sku, refusal, writtenAt }) => ({ sku, refusal, writtenTime: timestampFromDate(writtenAt) })),
        };
      },
      async discardRefusedWrites(req, ctx) {
        const sku = requireSku(req.sku);
        const { discarded, resynced, product } = await store.discardRefusedWrites(sku, oldShopReader(oldShop), ctx.signal);
        return { discarded, resynced, ...(product ? { product: toProduct(product) } : {}) };
      },
    });
}
