import { serviceConfig, integer, oneOf, port, url, type ServiceConfig, type Env } from "../../platform/config.js";
import type { WireProtocol } from "../../platform/clients.js";
import { defaultSagaPolicy, type SagaPolicy } from "../../platform/saga/saga-runner.js";

export interface OrderConfig extends ServiceConfig {
  port: number;
  inventoryUrl: string;
  paymentUrl: string;
  /** Protocol for calls to inventory and payment. */
  clientProtocol: WireProtocol;
  sagaPolicy: SagaPolicy;
}

/** The only place ordering reads the environment. */
export function loadConfig(env: Env): OrderConfig {
  return {
    ...serviceConfig(env),
    port: port(env, "ORDER_PORT", 50051),
    inventoryUrl: url(env, "INVENTORY_URL", "http://127.0.0.1:50052"),
    paymentUrl: url(env, "PAYMENT_URL", "http://127.0.0.1:50053"),
    clientProtocol: oneOf(env, "CLIENT_PROTOCOL", ["connect", "grpc"] as const, "connect"),
    sagaPolicy: {
      ...defaultSagaPolicy,
      stepTimeoutMs: integer(env, "SAGA_STEP_TIMEOUT_MS", defaultSagaPolicy.stepTimeoutMs, { min: 100, max: 600_000 }),
      leaseMs: integer(env, "SAGA_LEASE_MS", defaultSagaPolicy.leaseMs, { min: 1_000, max: 3_600_000 }),
      sweepMs: integer(env, "SAGA_SWEEP_MS", defaultSagaPolicy.sweepMs, { min: 100, max: 600_000 }),
    },
  };
}
