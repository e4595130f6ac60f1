import type { Interceptor } from "@connectrpc/connect";
import { build as buildGateway, type GatewayServer } from "#gateway/src/build.js";
import type { OperatorConfig } from "#gateway/src/config.js";
import { mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
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

type GatewayOverrides = { rateLimit?: { perSecond: number; burst: number }; watchLimits?: { perCustomer: number; perAddress: number }; maxRequestBytes?: number; maxTimeoutMs?: number; operator?: OperatorConfig };

/**
 * The gateway in front of an in-process mesh, on a free port, in local auth mode; with an
 * operator listener only if `overrides.operator` says so (see startGatewayWithOperator).
 */
export function startGateway(mesh: InProcessMesh, overrides: GatewayOverrides = {}): Promise<GatewayServer> {
  return buildGateway({
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
      catalog: mesh.catalog.url,
      oldshop: mesh.oldShop.url,
    },
    auth: { mode: "local", secret: testAuthSecret },
    rateLimit: overrides.rateLimit ?? { perSecond: 1_000, burst: 1_000 },
    watchLimits: overrides.watchLimits ?? { perCustomer: 100_000, perAddress: 100_000 },
    corsOrigins: ["http://console.example"],
    ...(overrides.operator ? { operator: overrides.operator } : {}),
  });
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
