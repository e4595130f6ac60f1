import { OperatorService } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { SagaAdminService } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { connectBus, createServiceClient, exportSpansInProcess, loadMeshCredentials, startServer, type createServiceDirectory, type Logger, type MeshCredentials, type Metrics, type ServiceServer } from "#platform";
import { openRouteTable, type RouteDeclaration, type RouteTable } from "#platform/strangler/route-table.js";
import type { ShadowCaller } from "#platform/strangler/shadow-caller.js";
import type { OperatorConfig } from "../config.js";
import { loadConsoleAssets, operatorPage } from "../console-assets.js";
import { createOperatorDeadLetters } from "./dead-letters.js";
import { createOperatorAuthInterceptor, createOperatorVerifier } from "./operator-auth.js";
import { createOperatorRoutes } from "./operator-routes.js";
import { createRouteAdmin } from "./route-admin.js";
import { createCatalogWrites } from "./catalog-writes.js";
import { createOldShopCatalog } from "#shop/old-shop-catalog.js";
import { createOtlpReceiver } from "./otlp-receiver.js";
import { createStoreExporter } from "./span-exporter.js";
import type { GatewayStats } from "./stats.js";
import { createTraceStore } from "./trace-store.js";

export interface OperatorListenerDeps {
  config: OperatorConfig;
  /** The gateway's own mesh certificate, which the listener serves where config.serveTls says so. */
  meshCredentials: MeshCredentials | undefined;
  logger: Logger;
  /** Where order serves SagaAdminService (its mesh port). */
  orderUrl: string;
  /** Where the catalog serves GetSyncStatus and UpdateProduct (its mesh port), for ListRoutes, SetRoute and the operator's catalog writes. */
  catalogUrl: string;
  /** Where the old shop serves its JSON API, for the operator's catalog writes while they stay there. */
  oldshopUrl: string;
  /**
   * The strangler fig's routes as the gateway follows them: their defaults, the gateway's own
   * table (read with its NATS user, which may not write it: ListRoutes reads it where the
   * console has no NATS user), and its calls per side and shadow comparisons.
   */
  strangler: { defaults: Readonly<Record<string, RouteDeclaration>>; table: RouteTable; calls: Pick<ShadowCaller, "stats" | "served"> };
  directory: ReturnType<typeof createServiceDirectory>;
  stats: GatewayStats;
  metrics: Metrics;
  shutdownGraceMs: number;
}

export type OperatorListener = Pick<ServiceServer, "port" | "url" | "close">;

/**
 * The operator listener, in the gateway process but apart from its public port (loopback
 * unless OPERATOR_HOST says otherwise; over TLS where OPERATOR_TLS is on, asking for the
 * operator's client certificate): OperatorService for a verified operator, the
 * operator console's page, and, where the dev trace store is on, the OTLP receiver that
 * every process of `npm start` sends its spans to. The gateway is the process that
 * receives the other processes' spans; its own reach the store in-process.
 */
export async function startOperatorListener(deps: OperatorListenerDeps): Promise<OperatorListener> {
  const logger = deps.logger.child({ server: "operator" });
  const { config } = deps;
  const serverTls = config.serveTls ? deps.meshCredentials : undefined;
  if (config.serveTls && !serverTls) throw new Error("the operator listener serves TLS with the gateway's mesh certificate, and has none");
  // The console's certificate (spiffe://meshwork/console), presented to order's mesh port,
  // whose saga admin RPCs admit it beside the operator's; the server must still prove it is
  // order. The routes name the signed-in operator in x-operator, for order's audit.
  const credentials = config.tls && loadMeshCredentials(config.tls, { logger });
  const sagaAdmin = createServiceClient(SagaAdminService, { baseUrl: deps.orderUrl, name: "order-admin", directory: deps.directory, ...(credentials ? { tls: { credentials, peer: "order" } } : {}) });
  const catalog = createServiceClient(CatalogService, { baseUrl: deps.catalogUrl, name: "catalog-console", directory: deps.directory, ...(credentials ? { tls: { credentials, peer: "catalog" } } : {}) });
  // The old shop admits the console's certificate as a writer: the operator's catalog writes while they stay there.
  const oldShop = createOldShopCatalog({ baseUrl: deps.oldshopUrl, ...(credentials ? { tls: { credentials, peer: "oldshop" } } : {}) });
  // The console's NATS user, whose permissions the dead letters and the route table's writes need.
  const consoleBus = config.natsUrl ? connectBus({ url: config.natsUrl, name: "gateway-console", logger }) : undefined;
  const deadLetters = createOperatorDeadLetters({ connection: consoleBus, logger });
  // Its own view of the table, so a SetRoute's answer and the next ListRoutes agree at once.
  const consoleRoutes = consoleBus && openRouteTable({ bus: consoleBus, routes: deps.strangler.defaults, logger });
  const table = consoleRoutes ?? deps.strangler.table;
  const catalogWrites = createCatalogWrites({ routes: table, oldShop, catalog: catalog.client, calls: deps.strangler.calls, logger });
  const routes = createRouteAdmin({ table, writable: consoleRoutes !== undefined, strangler: deps.strangler.calls, catalog: catalog.client, checkMove: catalogWrites.checkMove, logger });
  const traces = config.traceIngestToken === undefined ? undefined : createTraceStore();
  const stopExporting = traces && exportSpansInProcess(createStoreExporter(traces));
  const receive = traces && config.traceIngestToken ? createOtlpReceiver({ store: traces, token: config.traceIngestToken }) : undefined;
  const release = async () => {
    stopExporting?.();
    sagaAdmin.close();
    catalog.close();
    oldShop.close();
    consoleRoutes?.close();
    credentials?.close();
    await consoleBus?.close();
  };
  try {
    const page = await loadConsoleAssets(operatorPage);
    const server = await startServer(
      {
        logger,
        services: [OperatorService],
        ...(serverTls ? { tls: serverTls } : {}),
        maxRequestBytes: 64 * 1024,
        shutdownGraceMs: deps.shutdownGraceMs,
        // Its calls counted beside the public ones (by method); no admission control of its
        // own: a few operators' calls, and the public port's limit is the one that matters.
        metrics: deps.metrics,
        admission: false,
        // The console polls every second or two: traced, its calls would evict the mesh's
        // traces from the bounded dev trace store it is there to show.
        tracing: false,
        interceptors: [createOperatorAuthInterceptor(createOperatorVerifier(config.auth), OperatorService)],
        routes: createOperatorRoutes({ sagaAdmin: sagaAdmin.client, deadLetters, routes, catalogWrites, stats: deps.stats, traces, watch: { maxMs: 5 * 60_000, pollMs: 1_000, maxOpen: 64 } }),
        fallback: (req, res) => {
          if (receive?.(req, res)) return;
          page(req, res);
        },
      },
      { host: config.host, port: config.port },
    );
    let closing: Promise<void> | undefined;
    return { port: server.port, url: server.url, close: () => (closing ??= server.close().then(release)) };
  } catch (err) {
    await release();
    throw err;
  }
}
