import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import type { GetMeshStatusResponse } from "../../gen/shop/gateway/v1/storefront_service_pb.js";
import type { DependencyStats } from "../../services/platform/resilience.js";

export interface MeshStatus {
  read(): Promise<GetMeshStatusResponse>;
  close(): void;
}

/**
 * Health of every service (grpc.health.v1, through plain clients: a probe must see the
 * truth, not a breaker's verdict) and the state of the gateway's own circuit breakers.
 */
export function createMeshStatus(services: { name: string; url: string }[], breakers: () => DependencyStats[]): MeshStatus {
  const probes = services.map((service) => {
    const sessionManager = new Http2SessionManager(service.url);
    return { ...service, sessionManager, health: createClient(Health, createConnectTransport({ baseUrl: service.url, httpVersion: "2", sessionManager, defaultTimeoutMs: 1_000 })) };
  });
  return {
    async read() {
      const health = await Promise.all(
        probes.map(async (probe) => {
          const status = await probe.health.check({}).then(
            (r) => ServingStatus[r.status] ?? "UNKNOWN",
            () => "UNREACHABLE",
          );
          return { $typeName: "shop.gateway.v1.ServiceHealth" as const, name: probe.name, address: probe.url, status };
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
      for (const probe of probes) probe.sessionManager.abort();
    },
  };
}
