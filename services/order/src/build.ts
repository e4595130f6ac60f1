import { resolve } from "node:path";
import { count } from "drizzle-orm";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { SagaAdminService } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { PaymentService } from "#gen/shop/payment/v1/payment_service_pb.js";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { createServiceClient, type WireProtocol, createServiceDirectory, createSagaRunner, openRouteTable, type SagaPolicy, startService, type ServiceRuntime, type ServiceServer } from "#platform";
import { eventStream } from "#shop/streams.js";
import { customerAgent } from "#shop/customer-agent.js";
import { catalogRoutes, createCatalogRouter } from "#shop/catalog-router.js";
import { createOldShopCatalog } from "#shop/old-shop-catalog.js";
import { createOrderStore } from "./app/order-store.js";
import { createOrders } from "./app/orders.js";
import { createPlaceOrderSaga, defaultThreeDsTimeoutMs } from "./app/place-order-saga.js";
import { createSagaAdmin } from "./app/saga-admin.js";
import { outbox, sagaAudit, sagas, sagaSteps, sagaTables, tables } from "./db/schema.js";
import { createRoutes } from "./rpc/routes.js";
import { createSagaAdminRoutes } from "./rpc/saga-admin-routes.js";

export interface OrderDeps extends ServiceRuntime {
  inventoryUrl: string;
  paymentUrl: string;
  /** The catalog route's sides, which price each order: the old shop, and CatalogService. */
  oldshopUrl: string;
  catalogUrl: string;
  clientProtocol: WireProtocol;
  sagaPolicy: Partial<SagaPolicy>;
  /** How long a charge waits for the customer's 3-D Secure confirmation; 10 minutes by default. */
  threeDsTimeoutMs?: number;
}

/**
 * Wires ordering together and starts serving OrderService and, for operators only (the
 * contract's access option), SagaAdminService on the mesh port. main.ts and tests both call
 * this.
 */
export async function build(deps: OrderDeps): Promise<ServiceServer> {
  return startService(deps, {
    name: "order",
    schemaName: "orders",
    tables,
    migrationsFolder: resolve(import.meta.dirname, "../migrations"),
    outbox: { table: outbox, stream: eventStream("order") },
    retained: { sagas: { sagas, sagaSteps }, audit: [{ table: sagaAudit, column: sagaAudit.at }] },
    services: [OrderService, SagaAdminService],
    customerAgent,
    async setup({ db, bus, metrics, mesh }) {
      // Instances from the registry; the configured URLs when it knows none.
      const directory = createServiceDirectory({ bus, logger: deps.logger });
      const inventory = createServiceClient(InventoryService, { baseUrl: deps.inventoryUrl, protocol: deps.clientProtocol, directory, tls: mesh.peerTls("inventory") });
      const payment = createServiceClient(PaymentService, { baseUrl: deps.paymentUrl, protocol: deps.clientProtocol, directory, tls: mesh.peerTls("payment") });
      // Prices follow the storefront's catalog route (the route table in NATS KV), without a
      // shadow of their own: the gateway compares the sides.
      const oldShop = createOldShopCatalog({ baseUrl: deps.oldshopUrl, tls: mesh.peerTls("oldshop") });
      const catalog = createServiceClient(CatalogService, { baseUrl: deps.catalogUrl, protocol: deps.clientProtocol, directory, tls: mesh.peerTls("catalog") });
      const routes = openRouteTable({ bus, routes: catalogRoutes, logger: deps.logger });
      const catalogRouter = createCatalogRouter({ routes, oldShop: oldShop.client, catalog: catalog.client });
      const store = createOrderStore(db);
      metrics.trackClients(() => [inventory.stats(), payment.stats(), oldShop.stats(), catalog.stats()]);
      metrics.gauge("sagas", "Sagas by state", ["state"], async () =>
        (await db.select({ state: sagas.state, n: count() }).from(sagas).groupBy(sagas.state)).map((row) => ({ labels: { state: row.state }, value: row.n })),
      );
      const saga = createSagaRunner({
        db,
        tables: sagaTables,
        definition: createPlaceOrderSaga({
          inventory: inventory.client,
          payment: payment.client,
          store,
          threeDsTimeoutMs: deps.threeDsTimeoutMs ?? defaultThreeDsTimeoutMs,
        }),
        logger: deps.logger,
        policy: deps.sagaPolicy,
      });
      const resumed = await saga.startSweeping();
      if (resumed > 0) deps.logger.info({ resumed }, "resumed unfinished sagas");
      return {
        routes: (router) => {
          createRoutes({ orders: createOrders({ store, catalog: catalogRouter, saga }) })(router);
          createSagaAdminRoutes({ admin: createSagaAdmin({ saga, logger: deps.logger }) })(router);
        },
        // CreateOrder answers before its saga runs: admission control weighs the sagas under way too.
        backlog: () => saga.backlog(),
        async stop() {
          await saga.stop();
          inventory.close();
          payment.close();
          routes.close();
          oldShop.close();
          catalog.close();
          directory.stop();
        },
      };
    },
  });
}
