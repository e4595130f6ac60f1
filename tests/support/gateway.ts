import type { Interceptor } from "@connectrpc/connect";
import { build as buildGateway } from "#gateway/src/build.js";
import type { ServiceServer } from "#platform/service.js";
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

/** The gateway in front of an in-process mesh, on a free port, in local auth mode. */
export function startGateway(mesh: InProcessMesh, overrides: { rateLimit?: { perSecond: number; burst: number }; watchLimits?: { perCustomer: number; perAddress: number }; maxRequestBytes?: number; maxTimeoutMs?: number } = {}): Promise<ServiceServer> {
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
    meshUrls: { order: mesh.order.url, inventory: mesh.inventory.url, payment: mesh.payment.url, notification: mesh.notification.url },
    auth: { mode: "local", secret: testAuthSecret },
    rateLimit: overrides.rateLimit ?? { perSecond: 1_000, burst: 1_000 },
    watchLimits: overrides.watchLimits ?? { perCustomer: 100_000, perAddress: 100_000 },
    corsOrigins: ["http://console.example"],
  });
}
