import { serviceConfig, port, type ServiceConfig, type Env } from "#platform";

export interface PaymentConfig extends ServiceConfig {
  port: number;
}

/** The only place payment reads the environment. */
export function loadConfig(env: Env): PaymentConfig {
  return { ...serviceConfig(env), port: port(env, "PAYMENT_PORT", 50053) };
}
