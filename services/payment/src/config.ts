import { commonConfig, port, type CommonConfig, type Env } from "../../platform/config.js";

export interface PaymentConfig extends CommonConfig {
  port: number;
}

/** The only place payment reads the environment. */
export function loadConfig(env: Env): PaymentConfig {
  return { ...commonConfig(env), port: port(env, "PAYMENT_PORT", 50053) };
}
