import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { PaymentService } from "#gen/shop/payment/v1/payment_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { openRouteTable } from "#platform/strangler/route-table.js";
import { createShadowCaller } from "#platform/strangler/shadow-caller.js";
import { connectBus, createServiceDirectory, createServiceClient, type Logger, startServer, createMeshSecurity, startOpsServer, type ServiceServer, createMetrics } from "#platform";
import { cachingVerifications, createAuthenticator, createAuthInterceptor } from "./auth.js";
import type { GatewayConfig } from "./config.js";
import { loadConsoleAssets } from "./console-assets.js";
import { createMeshStatus } from "./mesh-status.js";
import { createRateLimitInterceptor } from "./rate-limit.js";
import { createOrderEventFeed } from "./order-watch.js";
import { createRecentOrders } from "./recent-orders.js";
import { anonymousMethods, createRoutes } from "./routes.js";
import { createWatchSlots } from "./watch-slots.js";
import { deployable } from "#mesh";
import { catalogRoutes, createCatalogRouter } from "#shop/catalog-router.js";
import { createOldShopCatalog } from "#shop/old-shop-catalog.js";
import { startOperatorListener, type OperatorListener } from "./operator/operator-listener.js";
import { createGatewayStats } from "./operator/stats.js";

/** The connection limits, trusted proxies and operator listener may be left out (the kit's defaults, none, none). */
export type GatewayDeps = Omit<GatewayConfig, "logLevel" | "otlpEndpoint" | "devTraces" | "advertiseUrl" | "version" | "connectionLimits" | "trustedProxies" | "operator"> &
  Partial<Pick<GatewayConfig, "connectionLimits" | "trustedProxies" | "operator">> & { logger: Logger };

/** The public port, its ops port, and the operator listener where there is one. */
export interface GatewayServer extends ServiceServer {
  readonly operator: OperatorListener | undefined;
}

/** Wires the gateway together and starts serving; main.ts and tests both call this. */
export async function build(deps: GatewayDeps): Promise<GatewayServer> {
  const mesh = createMeshSecurity(deps);
  const bus = connectBus({ url: deps.natsUrl, name: "gateway", logger: deps.logger });
  const directory = createServiceDirectory({ bus, logger: deps.logger });
  // The contexts whose events WatchOrder reports, as the manifest says (its NATS user may follow those alone).
  const orderEvents = createOrderEventFeed(bus, deployable("gateway").watches);
  const recentOrders = createRecentOrders(orderEvents);
  const order = createServiceClient(OrderService, { baseUrl: deps.meshUrls.order, name: "order", directory, tls: mesh.peerTls("order") });
  const inventory = createServiceClient(InventoryService, { baseUrl: deps.meshUrls.inventory, name: "inventory", directory, tls: mesh.peerTls("inventory") });
  const payment = createServiceClient(PaymentService, { baseUrl: deps.meshUrls.payment, name: "payment", directory, tls: mesh.peerTls("payment") });
  // The strangler fig's two sides of the catalog: the old shop through its anti-corruption adapter, and the catalog service.
  const oldShopTls = mesh.peerTls("oldshop");
  const oldShop = createOldShopCatalog({ baseUrl: deps.meshUrls.oldshop, ...(oldShopTls ? { tls: oldShopTls } : {}) });
  const catalog = createServiceClient(CatalogService, { baseUrl: deps.meshUrls.catalog, name: "catalog", directory, tls: mesh.peerTls("catalog") });
  const clients = [order, inventory, payment, oldShop, catalog];
  const meshStatus = createMeshStatus(
    Object.entries(deps.meshUrls).map(([name, url]) => ({ name, url })),
    () => clients.map((client) => client.stats()),
    mesh.peerTls,
  );
  const authenticator = cachingVerifications(createAuthenticator(deps.auth));
  const metrics = createMetrics("gateway");
  metrics.trackClients(() => clients.map((client) => client.stats()));
  // The strangler fig's routes, followed with the gateway's NATS user (which may read the table, not write it).
  const routeTable = openRouteTable({ bus, routes: catalogRoutes, logger: deps.logger });
  const strangler = createShadowCaller({ logger: deps.logger, metrics });
  const catalogRouter = createCatalogRouter({ routes: routeTable, oldShop: oldShop.client, catalog: catalog.client, shadow: strangler });
  const watchSlots = createWatchSlots(deps.watchLimits);
  metrics.gauge("watch_order_streams", "Open WatchOrder streams", [], async () => [{ value: watchSlots.open() }]);
  const stats = createGatewayStats({ service: StorefrontService, placeOrder: "PlaceOrder", dependencies: () => clients.map((client) => client.stats()) });
  let operator: OperatorListener | undefined;
  const stop = async () => {
    stats.close();
    routeTable.close();
    meshStatus.close();
    for (const client of clients) client.close();
    directory.stop();
    orderEvents.close();
    await bus.close();
    mesh.close();
  };
  try {
    const server = await startServer(
      {
        logger: deps.logger,
        services: [StorefrontService],
        maxRequestBytes: deps.maxRequestBytes,
        shutdownGraceMs: deps.shutdownGraceMs,
        maxTimeoutMs: deps.maxTimeoutMs,
        cors: { origins: deps.corsOrigins },
        ...(deps.connectionLimits ? { connectionLimits: deps.connectionLimits } : {}),
        ...(deps.trustedProxies ? { trustedProxies: deps.trustedProxies } : {}),
        // The console's stats outermost of all, beside the metrics: they count what callers get.
        metrics: { ...metrics, interceptor: (next) => stats.interceptor(metrics.interceptor(next)) },
        fallback: await loadConsoleAssets(),
        interceptors: [
          // A looser per-address limit first, so bad tokens cannot be tried without bound.
          createRateLimitInterceptor(StorefrontService, { perSecond: deps.rateLimit.perSecond * 10, burst: deps.rateLimit.burst * 10, by: "address" }),
          createAuthInterceptor(authenticator, StorefrontService, anonymousMethods),
          createRateLimitInterceptor(StorefrontService, { ...deps.rateLimit, by: "client" }),
        ],
        routes: createRoutes({ order: order.client, inventory: inventory.client, catalog: catalogRouter, payment: payment.client, authenticator, meshStatus, orderEvents, recentOrders, maxWatchMs: 5 * 60_000, watchSlots }),
      },
      { host: deps.host, port: deps.port },
    );
    const ops = await startOpsServer({ logger: deps.logger, health: server.health, metrics, shutdownGraceMs: deps.shutdownGraceMs }, { host: deps.host, port: deps.opsPort }).catch(async (err: unknown) => {
      await server.close();
      throw err;
    });
    try {
      operator =
        deps.operator &&
        (await startOperatorListener({ config: deps.operator, meshCredentials: mesh.credentials, logger: deps.logger, orderUrl: deps.meshUrls.order, catalogUrl: deps.meshUrls.catalog, oldshopUrl: deps.meshUrls.oldshop, strangler: { defaults: catalogRoutes, table: routeTable, calls: strangler }, directory, stats, metrics, shutdownGraceMs: deps.shutdownGraceMs }));
    } catch (err) {
      await server.close();
      await ops.close();
      throw err;
    }
    let closing: Promise<void> | undefined;
    return {
      ...server,
      ops,
      operator,
      close: () => (closing ??= server.close().then(() => operator?.close()).then(() => ops.close()).then(stop)),
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
