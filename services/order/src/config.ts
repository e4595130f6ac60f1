import { listenPort, peerUrlOf } from "#mesh";
import { defaultThreeDsTimeoutMs } from "./app/place-order-saga.js";
import { serviceConfig, integer, oneOf, type ServiceConfig, type Env, type WireProtocol, defaultSagaPolicy, type SagaPolicy } from "#platform";

export interface OrderConfig extends ServiceConfig {
  port: number;
  inventoryUrl: string;
  paymentUrl: string;
  /** The two sides of the catalog route, which prices orders: the old shop's JSON API and CatalogService. */
  oldshopUrl: string;
  catalogUrl: string;
  /** Protocol for calls to inventory, payment and catalog. */
  clientProtocol: WireProtocol;
  sagaPolicy: SagaPolicy;
  /** How long a charge waits for the customer's 3-D Secure confirmation before the order is cancelled. */
  threeDsTimeoutMs: number;
}

/** The only place ordering reads the environment. */
export function loadConfig(env: Env): OrderConfig {
  const service = serviceConfig(env);
  return {
    ...service,
    port: listenPort(env, "order"),
    inventoryUrl: peerUrlOf(env, "inventory", service.meshTls),
    paymentUrl: peerUrlOf(env, "payment", service.meshTls),
    oldshopUrl: peerUrlOf(env, "oldshop", service.meshTls),
    catalogUrl: peerUrlOf(env, "catalog", service.meshTls),
    clientProtocol: oneOf(env, "CLIENT_PROTOCOL", ["connect", "grpc"] as const, "connect"),
    sagaPolicy: {
      ...defaultSagaPolicy,
      stepTimeoutMs: integer(env, "SAGA_STEP_TIMEOUT_MS", defaultSagaPolicy.stepTimeoutMs, { min: 100, max: 600_000 }),
      leaseMs: integer(env, "SAGA_LEASE_MS", defaultSagaPolicy.leaseMs, { min: 1_000, max: 3_600_000 }),
      sweepMs: integer(env, "SAGA_SWEEP_MS", defaultSagaPolicy.sweepMs, { min: 100, max: 600_000 }),
    },
    // At least a second, so a confirmation has a chance; at most an hour, as the reserved stock waits with it.
    threeDsTimeoutMs: integer(env, "THREE_DS_TIMEOUT_MS", defaultThreeDsTimeoutMs, { min: 1_000, max: 3_600_000 }),
  };
}
