import type { GetMeshStatusResponse } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { createHealthProbe, type PeerTls, type DependencyStats } from "#platform";

export interface MeshStatus {
  read(): Promise<GetMeshStatusResponse>;
  close(): void;
}

/**
 * Health of every service (grpc.health.v1 probes) and the state of the gateway's own
 * circuit breakers. Served anonymously on the public port, so it names services and never
 * says where they are: ServiceHealth.address stays empty.
 */
export function createMeshStatus(services: { name: string; url: string }[], breakers: () => DependencyStats[], tls: (peer: string) => PeerTls | undefined): MeshStatus {
  const probes = services.map((service) => ({ ...service, probe: createHealthProbe(service.url, { tls: tls(service.name) }) }));
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
