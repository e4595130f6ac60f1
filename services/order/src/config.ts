import { listenPort, peerUrlOf } from "#mesh";
import { serviceConfig, integer, oneOf, type ServiceConfig, type Env, type WireProtocol, defaultSagaPolicy, type SagaPolicy } from "#platform";

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
    port: listenPort(env, "order"),
    inventoryUrl: peerUrlOf(env, "inventory", service.meshTls),
    paymentUrl: peerUrlOf(env, "payment", service.meshTls),
    clientProtocol: oneOf(env, "CLIENT_PROTOCOL", ["connect", "grpc"] as const, "connect"),
    sagaPolicy: {
      ...defaultSagaPolicy,
      stepTimeoutMs: integer(env, "SAGA_STEP_TIMEOUT_MS", defaultSagaPolicy.stepTimeoutMs, { min: 100, max: 600_000 }),
      leaseMs: integer(env, "SAGA_LEASE_MS", defaultSagaPolicy.leaseMs, { min: 1_000, max: 3_600_000 }),
      sweepMs: integer(env, "SAGA_SWEEP_MS", defaultSagaPolicy.sweepMs, { min: 100, max: 600_000 }),
    },
  };
}
