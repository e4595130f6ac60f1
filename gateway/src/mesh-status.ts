import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { GetMeshStatusResponse } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { createHealthProbe, type PeerTls, type DependencyStats } from "#platform";
import type { HealthProbe } from "#platform/rpc-client/health-probe.js";
import { expectIdentity } from "#platform/trust/mesh-tls.js";
import { meshDeployables, type Deployable } from "#mesh";

export interface MeshStatus {
  read(): Promise<GetMeshStatusResponse>;
  close(): void;
}

const PROBE_TIMEOUT_MS = 1_000;
const MAX_HEALTH_BODY_BYTES = 4_096;

const isLegacy = (name: string) => (meshDeployables as readonly Deployable[]).some((d) => d.name === name && d.legacy !== undefined);

/**
 * A legacy deployable's health (the old shop speaks no gRPC): GET /healthz on its mesh
 * port, under mTLS as the gateway, answering {"status":"SERVING"} or 503 {"status":"NOT_SERVING"}.
 */
function createHttpHealthProbe(baseUrl: string, tls: PeerTls | undefined): HealthProbe {
  return {
    check: () =>
      new Promise<string>((resolve, reject) => {
        const url = new URL("/healthz", baseUrl);
        const options = { timeout: PROBE_TIMEOUT_MS, ...(tls ? { secureContext: tls.credentials.context(), checkServerIdentity: expectIdentity(tls.peer) } : {}) };
        const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, options, (res) => {
          let body = "";
          res.setEncoding("utf8").on("data", (chunk: string) => {
            body += chunk;
            if (body.length > MAX_HEALTH_BODY_BYTES) req.destroy(new Error("health answer too large"));
          });
          res.on("end", () => {
            try {
              const { status } = JSON.parse(body) as { status?: unknown };
              resolve(typeof status === "string" ? status : "UNKNOWN");
            } catch {
              resolve("UNKNOWN");
            }
          });
        });
        req.on("timeout", () => req.destroy(new Error("health probe timed out")));
        req.on("error", reject);
        req.end();
      }),
    close: () => {},
  };
}

/**
 * Health of every service (grpc.health.v1 probes; GET /healthz for a legacy deployable) and
 * the state of the gateway's own circuit breakers. Served anonymously on the public port, so
 * it names services and never says where they are: ServiceHealth.address stays empty.
 */
export function createMeshStatus(services: { name: string; url: string }[], breakers: () => DependencyStats[], tls: (peer: string) => PeerTls | undefined): MeshStatus {
  const probes = services.map((service) => ({
    ...service,
    probe: isLegacy(service.name) ? createHttpHealthProbe(service.url, tls(service.name)) : createHealthProbe(service.url, { tls: tls(service.name) }),
  }));
  return {
    async read() {
      const health = await Promise.all(
        probes.map(async (probe) => {
          const status = await probe.probe.check().catch(() => "UNREACHABLE");
          return { $typeName: "shop.gateway.v1.ServiceHealth" as const, name: probe.name, address: "", status };
        }),
      );
      return {
        $typeName: "shop.gateway.v1.GetMeshStatusResponse",
        services: health,
        breakers: breakers().map((b) => ({
          $typeName: "shop.gateway.v1.BreakerStatus" as const,
          dependency: b.dependency,
          state: b.breaker,
          calls: BigInt(b.calls),
          failures: BigInt(b.failures),
          rejected: BigInt(b.rejected),
          retries: BigInt(b.retries),
        })),
      };
    },
    close() {
      for (const { probe } of probes) probe.close();
    },
  };
}
