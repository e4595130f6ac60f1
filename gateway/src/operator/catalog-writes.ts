import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ProductSchema, type CatalogService, type Product } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import type { DiscardRefusedWritesRequest, DiscardRefusedWritesResponse, UpdateProductRequest } from "#gen/shop/gateway/v1/operator_service_pb.js";
import type { Logger } from "#platform";
import type { RouteMode, RouteTable } from "#platform/strangler/route-table.js";
import type { ShadowCaller } from "#platform/strangler/shadow-caller.js";
import { CATALOG_WRITE_ROUTE } from "#shop/catalog-router.js";
import { toMoney } from "#shop/money.js";
import { requireProductWrite, requireSku } from "#shop/product-write.js";
import type { OldShopCatalog } from "#shop/old-shop-catalog.js";
import { fromBackend } from "./backend-errors.js";

export interface CatalogWritesDeps {
  /** The route table SetRoute writes (the console's view): a write follows a move at once. */
  routes: RouteTable;
  /** The old shop's adapter, presenting the console's certificate (the old shop admits it as a writer). */
  oldShop: Pick<OldShopCatalog, "putProduct">;
  /** CatalogService with the console's certificate: UpdateProduct, DiscardRefusedWrites, and GetSyncStatus for the sync back's backlog. */
  catalog: Client<typeof CatalogService>;
  /** The writes each side took, counted beside the reads (ListRoutes, strangler_calls_total). */
  calls: Pick<ShadowCaller, "served">;
  logger: Logger;
}

/** SetRoute waits this long for the sync back's backlog, then refuses: unknown is not safe. */
const SYNC_STATUS_TIMEOUT_MS = 2_000;

/** The write checked field by field, as the contract says, before either side is asked. */
function validProduct(req: UpdateProductRequest): Product {
  const { sku, name, description, currency, priceMinor } = requireProductWrite(req);
  return create(ProductSchema, { sku, name, description, price: toMoney(currency, priceMinor) });
}

/**
 * The operator's catalog writes (OperatorService.UpdateProduct), which go to one side alone as
 * the write route says, the mode alone (a write is not sticky to anyone): `legacy`, the old
 * shop through its adapter, whose change capture brings it to the catalog; `new`, the
 * catalog, whose sync back writes it to the old shop. And the one guard on moving that route:
 * back to legacy only once the sync back has nothing left to write, and the operator's way
 * out when the old shop refuses one of them for good (DiscardRefusedWrites).
 */
export function createCatalogWrites(deps: CatalogWritesDeps) {
  return {
    /** `operator` is the signed-in operator, whom the audit line names. */
    async update(req: UpdateProductRequest, operator: string, signal: AbortSignal): Promise<{ product: Product; side: "legacy" | "new" }> {
      const product = validProduct(req);
      const side = deps.routes.route(CATALOG_WRITE_ROUTE).mode === "new" ? "new" : "legacy";
      const stored =
        side === "legacy"
          ? await fromBackend("the old shop", () => deps.oldShop.putProduct(product, signal))
          : (await fromBackend("the catalog", () => deps.catalog.updateProduct({ sku: product.sku, name: product.name, description: product.description, ...(product.price ? { price: product.price } : {}) }, { signal }))).product;
      if (!stored) throw new ConnectError("the catalog answered UpdateProduct without the product", Code.Unavailable);
      deps.calls.served(CATALOG_WRITE_ROUTE, side);
      deps.logger.info({ audit: "product-update", operator, sku: stored.sku, side, currency: stored.price?.currencyCode, minorUnits: String(stored.price?.minorUnits ?? "") }, "product updated by an operator");
      return { product: stored, side };
    },

    /**
     * Gives up the product's writes the old shop refused for good, as the catalog does it (it
     * holds them, and takes the product again from the old shop); the catalog's NOT_FOUND (no
     * refused write of it) and its other refusals reach the operator as it answered them.
     */
    async discard(req: DiscardRefusedWritesRequest, operator: string, signal: AbortSignal): Promise<Omit<DiscardRefusedWritesResponse, "$typeName">> {
      const sku = requireSku(req.sku);
      const { discarded, resynced, product } = await fromBackend("the catalog", () => deps.catalog.discardRefusedWrites({ sku }, { signal }));
      deps.logger.info({ audit: "refused-writes-discard", operator, sku, discarded, resynced }, "refused catalog writes discarded by an operator");
      return { discarded, resynced, ...(product ? { product } : {}) };
    },

    /**
     * Refuses (FAILED_PRECONDITION, naming the count) moving the write route back to legacy
     * while the catalog holds writes its sync back has not written to the old shop: a write
     * taken there next could be overwritten by one of them. A catalog that does not answer
     * is refused too.
     */
    async checkMove(method: string, mode: RouteMode, signal: AbortSignal): Promise<void> {
      if (method !== CATALOG_WRITE_ROUTE || mode !== "legacy") return;
      let pending: bigint;
      try {
        pending = (await deps.catalog.getSyncStatus({}, { signal, timeoutMs: SYNC_STATUS_TIMEOUT_MS })).syncBackPending;
      } catch (err) {
        const cause = ConnectError.from(err);
        throw new ConnectError(`mode: catalog writes stay on the new side: the catalog did not say whether its sync back to the old shop is done (${Code[cause.code]}: ${cause.rawMessage}); try again once it answers`, Code.FailedPrecondition);
      }
      if (pending > 0n) throw new ConnectError(`mode: catalog writes stay on the new side: sync_back_pending is ${pending} (writes not yet written back to the old shop); try again once it is 0`, Code.FailedPrecondition);
    },
  };
}

export type CatalogWrites = ReturnType<typeof createCatalogWrites>;
