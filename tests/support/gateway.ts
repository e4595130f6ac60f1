import type { Interceptor } from "@connectrpc/connect";
import { build as buildGateway, type GatewayServer } from "#gateway/src/build.js";
import type { OperatorConfig } from "#gateway/src/config.js";
import { mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
import { loadConfig as oldShopConfig } from "../../legacy/oldshop/src/config.js";
import { startOldShop, type OldShop } from "../../legacy/oldshop/src/server.js";
import { createLegacyDatabase } from "./legacy-databases.js";
import type { InProcessMesh } from "./services.js";
import { silentLogger } from "./silent-logger.js";

/** The secret the test gateways sign demo tokens with. */
/** Sends `token` as the bearer of every call, as a signed-in storefront client does. */
export const bearer =
  (token: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };

export const testAuthSecret = "test-secret-test-secret-test-secret";

/** The secret the test gateways' operator listeners verify operator tokens with (not testAuthSecret: demo tokens must fail there). */
export const testOperatorSecret = "test-operator-secret-test-operator-secret";
/** The dev trace store's write token on the test gateways' operator listeners. */
export const testTraceToken = "test-trace-token-test-trace-token-0123";

/** An operator's token for the test gateways' operator listeners, as `npm start` prints one. */
export const testOperatorToken = (operator = "test-operator") => mintLocalOperatorToken(testOperatorSecret, operator, 60 * 60);

/**
 * The operator listener's settings for a gateway in front of `mesh`: on a free loopback port,
 * the console's certificate and NATS user (never the operator's), the dev trace store on (testTraceToken).
 */
export const testOperatorConfig = (mesh: InProcessMesh): OperatorConfig => ({
  host: "127.0.0.1",
  port: 0,
  auth: { mode: "local", secret: testOperatorSecret, rolesClaim: "roles", role: "operator", maxTokenLifetimeSeconds: 12 * 60 * 60 },
  tls: mesh.pki.console,
  serveTls: false,
  natsUrl: mesh.nats.urlFor(CONSOLE),
  traceIngestToken: testTraceToken,
});

/**
 * Where a test gateway finds the old shop and the catalog, which the in-process mesh does not
 * run. Without an old shop of the suite's, startGateway starts one of its own (the demo
 * catalog, the route's default side); without a catalog, a closed loopback port (a call
 * there is UNAVAILABLE).
 */
export interface StranglerSides {
  catalog: string;
  oldshop: string;
}
const absentSide = "https://127.0.0.1:1";

/** The old shop on a fresh legacy database, with its mesh certificate, admitting its default readers and writers. */
export async function startTestOldShop(mesh: InProcessMesh): Promise<OldShop> {
  const database = await createLegacyDatabase();
  const tls = mesh.pki.files("oldshop");
  const config = oldShopConfig({ DATABASE_URL: database.oldshopUrl, TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, TLS_CA_FILE: tls.caFile });
  return startOldShop({ ...config, port: 0, opsPort: 0, logger: silentLogger });
}

type GatewayOverrides = { sides?: Partial<StranglerSides>; rateLimit?: { perSecond: number; burst: number }; watchLimits?: { perCustomer: number; perAddress: number }; maxRequestBytes?: number; maxTimeoutMs?: number; operator?: OperatorConfig };

/**
 * The gateway in front of an in-process mesh, on a free port, in local auth mode; with an
 * operator listener only if `overrides.operator` says so (see startGatewayWithOperator).
 */
export async function startGateway(mesh: InProcessMesh, overrides: GatewayOverrides = {}): Promise<GatewayServer> {
  const ownOldShop = overrides.sides?.oldshop === undefined ? await startTestOldShop(mesh) : undefined;
  const gateway = await buildGateway({
    logger: silentLogger,
    host: "127.0.0.1",
    port: 0,
    opsPort: 0,
    meshTls: mesh.pki.files("gateway"),
    natsUrl: mesh.nats.urlFor("gateway"),
    streamReplicas: 1,
    maxRequestBytes: overrides.maxRequestBytes ?? 64 * 1024,
    shutdownGraceMs: 1_000,
    maxTimeoutMs: overrides.maxTimeoutMs ?? 10_000,
    meshUrls: {
      order: mesh.order.url,
      inventory: mesh.inventory.url,
      payment: mesh.payment.url,
      notification: mesh.notification.url,
      catalog: overrides.sides?.catalog ?? absentSide,
      oldshop: overrides.sides?.oldshop ?? ownOldShop!.url,
    },
    auth: { mode: "local", secret: testAuthSecret },
    rateLimit: overrides.rateLimit ?? { perSecond: 1_000, burst: 1_000 },
    watchLimits: overrides.watchLimits ?? { perCustomer: 100_000, perAddress: 100_000 },
    corsOrigins: ["http://console.example"],
    ...(overrides.operator ? { operator: overrides.operator } : {}),
  }).catch(async (err: unknown) => {
    await ownOldShop?.close();
    throw err;
  });
  return ownOldShop ? { ...gateway, close: () => gateway.close().then(() => ownOldShop.close()) } : gateway;
}

/**
 * The gateway with its operator listener (gateway.operator!.url), whose calls need
 * `authorization: Bearer ${await testOperatorToken()}`; OTLP/JSON posted to
 * `${gateway.operator!.url}/v1/traces` with `Bearer ${testTraceToken}` lands in its trace store.
 */
export async function startGatewayWithOperator(mesh: InProcessMesh, overrides: Omit<GatewayOverrides, "operator"> = {}): Promise<GatewayServer & { operator: NonNullable<GatewayServer["operator"]> }> {
  const gateway = await startGateway(mesh, { ...overrides, operator: testOperatorConfig(mesh) });
  return gateway as GatewayServer & { operator: NonNullable<GatewayServer["operator"]> };
}
