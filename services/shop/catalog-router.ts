import type { Client } from "@connectrpc/connect";
import { ListProductsResponseSchema, type CatalogService, type ListProductsResponse, type Product } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { compareMessages, decideSide, type RouteTable, type ShadowCaller, type Side } from "#platform";
import type { RouteDeclaration } from "#platform/strangler/route-table.js";

/**
 * The one catalog route: the storefront's ListProducts. Order's pricing follows it too, so
 * the price a customer is shown and the price they are charged come from the same side.
 */
export const CATALOG_ROUTE = "shop.gateway.v1.StorefrontService/ListProducts";

/** Where the catalog is served until an operator moves the route. */
const CATALOG_ROUTE_DEFAULT = "legacy" as const;

/**
 * Catalog writes: the operator's UpdateProduct. The old shop takes them (change capture brings
 * each to the catalog) until this route moves them to the catalog, whose sync back then
 * writes each to the old shop. Only `legacy` and `new`: a write goes to one side alone.
 */
export const CATALOG_WRITE_ROUTE = "shop.gateway.v1.OperatorService/UpdateProduct";

/** The write route's modes: one side or the other, never both. */
const CATALOG_WRITE_MODES = ["legacy", "new"] as const;

/** The route table's routes as the catalog's callers open it. */
export const catalogRoutes = { [CATALOG_ROUTE]: CATALOG_ROUTE_DEFAULT, [CATALOG_WRITE_ROUTE]: { mode: "legacy", modes: CATALOG_WRITE_MODES } } as const satisfies Record<string, RouteDeclaration>;

export interface CatalogAnswer {
  /** By SKU; unknown SKUs are absent. */
  products: Product[];
  side: Side;
}

export interface CatalogRouter {
  /**
   * The products of `skus` (all of them when empty) from the side the route says for
   * `stickyKey` (customer:<id>, else address:<client address>). Under `shadow` the old shop
   * answers, and, with a shadow caller, the catalog is asked too and compared in the
   * background; its failures never reach the caller.
   */
  listProducts(skus: readonly string[], stickyKey: string, signal?: AbortSignal): Promise<CatalogAnswer>;
}

/**
 * The strangler fig's catalog route: the old shop (through its anti-corruption adapter,
 * old-shop-catalog.ts) or CatalogService, as the route table says. Without `shadow` the
 * shadow mode is served by the old shop alone and nothing is counted (order prices that way
 * unless given one).
 */
export function createCatalogRouter(deps: { routes: RouteTable; oldShop: Client<typeof CatalogService>; catalog: Client<typeof CatalogService>; shadow?: ShadowCaller }): CatalogRouter {
  const { routes, oldShop, catalog, shadow } = deps;
  return {
    async listProducts(skus, stickyKey, signal) {
      const decision = decideSide(routes.route(CATALOG_ROUTE), stickyKey);
      const request = { skus: [...skus] };
      const options = signal ? { signal } : {};
      const answer = await (decision.serve === "new" ? catalog : oldShop).listProducts(request, options);
      shadow?.served(CATALOG_ROUTE, decision.serve);
      if (decision.shadow && shadow) {
        const compare = (fromOld: ListProductsResponse, fromNew: ListProductsResponse) => compareMessages(ListProductsResponseSchema, fromOld, fromNew, { keyBy: { products: "sku" } });
        shadow.shadow(
          CATALOG_ROUTE,
          (shadowSignal) => catalog.listProducts(request, { signal: shadowSignal }),
          (fromNew) => compare(answer, fromNew),
          // A difference is asked again of both sides: a change the capture has not applied yet converges.
          async (recheckSignal) => {
            const [fromOld, fromNew] = await Promise.all([oldShop.listProducts(request, { signal: recheckSignal }), catalog.listProducts(request, { signal: recheckSignal })]);
            return compare(fromOld, fromNew);
          },
        );
      }
      return { products: answer.products, side: decision.serve };
    },
  };
}
