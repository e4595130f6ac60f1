import { serviceConfig, integer, oneOf, peerUrl, port, type ServiceConfig, type Env, type WireProtocol, defaultSagaPolicy, type SagaPolicy } from "#platform";

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
  const service = serviceConfig(env);
  return {
    ...service,
    port: port(env, "ORDER_PORT", 50051),
    inventoryUrl: peerUrl(env, "INVENTORY_URL", 50052, service.meshTls),
    paymentUrl: peerUrl(env, "PAYMENT_URL", 50053, service.meshTls),
    clientProtocol: oneOf(env, "CLIENT_PROTOCOL", ["connect", "grpc"] as const, "connect"),
    sagaPolicy: {
      ...defaultSagaPolicy,
      stepTimeoutMs: integer(env, "SAGA_STEP_TIMEOUT_MS", defaultSagaPolicy.stepTimeoutMs, { min: 100, max: 600_000 }),
      leaseMs: integer(env, "SAGA_LEASE_MS", defaultSagaPolicy.leaseMs, { min: 1_000, max: 3_600_000 }),
      sweepMs: integer(env, "SAGA_SWEEP_MS", defaultSagaPolicy.sweepMs, { min: 100, max: 600_000 }),
    },
  };
}
