import { serviceConfig, type ServiceConfig, type Env } from "#platform";
import { listenPort } from "#mesh";

export interface PaymentConfig extends ServiceConfig {
  port: number;
}

/** The only place payment reads the environment. */
export function loadConfig(env: Env): PaymentConfig {
  return { ...serviceConfig(env), port: listenPort(env, "payment") };
}
