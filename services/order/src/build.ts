import { resolve } from "node:path";
import { count } from "drizzle-orm";
import { OrderService } from "../../../gen/shop/order/v1/order_service_pb.js";
import { SagaAdminService } from "../../../gen/shop/order/v1/saga_admin_service_pb.js";
import { InventoryService } from "../../../gen/shop/inventory/v1/inventory_service_pb.js";
import { PaymentService } from "../../../gen/shop/payment/v1/payment_service_pb.js";
import { createServiceClient, type WireProtocol } from "../../platform/clients.js";
import { createServiceDirectory } from "../../platform/bus/discovery.js";
import { createSagaRunner, type SagaPolicy } from "../../platform/saga/saga-runner.js";
import { startServer, type RunningServer } from "../../platform/server.js";
import { eventStream } from "../../platform/bus/streams.js";
import { startService, type ServiceRuntime } from "../../platform/service.js";
import { createOrderStore } from "./app/order-store.js";
import { createOrders } from "./app/orders.js";
import { createPlaceOrderSaga } from "./app/place-order-saga.js";
import { createSagaAdmin } from "./app/saga-admin.js";
import { outbox, sagas, sagaSteps, tables } from "./db/schema.js";
import { createRoutes } from "./rpc/routes.js";
import { createSagaAdminRoutes } from "./rpc/saga-admin-routes.js";

export interface OrderDeps extends ServiceRuntime {
  inventoryUrl: string;
  paymentUrl: string;
  clientProtocol: WireProtocol;
  sagaPolicy: Partial<SagaPolicy>;
  /** SagaAdminService's port on 127.0.0.1; unset: a free one, as tests want. */
  adminPort?: number;
}

export interface OrderServer extends RunningServer {
  /** The operators' server: SagaAdminService, on loopback only. */
  readonly admin: RunningServer;
}

/** Only someone on the host reaches the admin port, until operators have an identity (issue 11). */
const ADMIN_HOST = "127.0.0.1";

/**
 * Wires ordering together and starts serving: OrderService on the mesh port, and
 * SagaAdminService on a second server bound to loopback, which neither the mesh port nor
 * the gateway exposes. main.ts and tests both call this.
 */
export async function build(deps: OrderDeps): Promise<OrderServer> {
  let admin: RunningServer | undefined;
  const server = await startService(deps, {
    schemaName: "orders",
    tables,
    migrationsFolder: resolve(import.meta.dirname, "../migrations"),
    outbox: { table: outbox, stream: eventStream("order") },
    services: [OrderService],
    async setup({ db, bus, metrics }) {
      // Instances from the registry; the configured URLs when it knows none.
      const directory = createServiceDirectory({ bus, logger: deps.logger });
      const inventory = createServiceClient(InventoryService, { baseUrl: deps.inventoryUrl, protocol: deps.clientProtocol, directory });
      const payment = createServiceClient(PaymentService, { baseUrl: deps.paymentUrl, protocol: deps.clientProtocol, directory });
      const store = createOrderStore(db);
      metrics.trackClients(() => [inventory.stats(), payment.stats()]);
      metrics.gauge("sagas", "Sagas by state", ["state"], async () =>
        (await db.select({ state: sagas.state, n: count() }).from(sagas).groupBy(sagas.state)).map((row) => ({ labels: { state: row.state }, value: row.n })),
      );
      const saga = createSagaRunner({
        db,
        tables: { sagas, sagaSteps },
        definition: createPlaceOrderSaga({ inventory: inventory.client, payment: payment.client, store }),
        logger: deps.logger,
        policy: deps.sagaPolicy,
      });
      const resumed = await saga.startSweeping();
      if (resumed > 0) deps.logger.info({ resumed }, "resumed unfinished sagas");
      const adminLogger = deps.logger.child({ server: "admin" });
      const adminServer = await startServer(
        {
          logger: adminLogger,
          routes: createSagaAdminRoutes({ admin: createSagaAdmin({ saga, logger: adminLogger }) }),
          services: [SagaAdminService],
          maxRequestBytes: deps.maxRequestBytes,
          shutdownGraceMs: deps.shutdownGraceMs,
        },
        { host: ADMIN_HOST, port: deps.adminPort ?? 0 },
      );
      admin = adminServer;
      return {
        routes: createRoutes({ orders: createOrders({ db, store, inventory: inventory.client, saga }) }),
        async stop() {
          await adminServer.close();
          await saga.stop();
          inventory.close();
          payment.close();
          directory.stop();
        },
      };
    },
  });
  return { ...server, admin: admin! };
}
