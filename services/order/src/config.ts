import { commonConfig, oneOf, port, url, type CommonConfig, type Env } from "../../platform/config.js";
import type { WireProtocol } from "../../platform/clients.js";

export interface OrderConfig extends CommonConfig {
  port: number;
  inventoryUrl: string;
  paymentUrl: string;
  /** Protocol for calls to inventory and payment. */
  clientProtocol: WireProtocol;
}

/** The only place ordering reads the environment. */
export function loadConfig(env: Env): OrderConfig {
  return {
    ...commonConfig(env),
    port: port(env, "ORDER_PORT", 50051),
    inventoryUrl: url(env, "INVENTORY_URL", "http://127.0.0.1:50052"),
    paymentUrl: url(env, "PAYMENT_URL", "http://127.0.0.1:50053"),
    clientProtocol: oneOf(env, "CLIENT_PROTOCOL", ["connect", "grpc"] as const, "connect"),
  };
}
