import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "#gen/grpc/health/v1/health_pb.js";
import { meshSessionOptions, type PeerTls } from "./clients.js";

export interface HealthProbe {
  /** The server's grpc.health.v1 status name (e.g. "SERVING"); rejects if it cannot be asked. */
  check(): Promise<string>;
  close(): void;
}

/**
 * A grpc.health.v1 probe over a plain client: no retries and no circuit breaker, because a
 * probe must see every failure as it is, not a policy's verdict on it.
 */
export function createHealthProbe(baseUrl: string, options: { timeoutMs?: number; tls?: PeerTls | undefined } = {}): HealthProbe {
  const timeoutMs = options.timeoutMs ?? 1_000;
  const sessionManager = new Http2SessionManager(baseUrl, undefined, options.tls && meshSessionOptions(options.tls));
  const health = createClient(Health, createConnectTransport({ baseUrl, httpVersion: "2", sessionManager, defaultTimeoutMs: timeoutMs }));
  return {
    check: async () => ServingStatus[(await health.check({})).status] ?? "UNKNOWN",
    close: () => sessionManager.abort(),
  };
}
