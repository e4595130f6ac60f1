import { commonConfig, optionalString, port, type CommonConfig, type Env } from "../../platform/config.js";

export interface PaymentConfig extends CommonConfig {
  host: string;
  port: number;
}

/** The only place payment reads the environment. */
export function loadConfig(env: Env): PaymentConfig {
  return { ...commonConfig(env), host: optionalString(env, "HOST", "127.0.0.1"), port: port(env, "PAYMENT_PORT", 50053) };
}
