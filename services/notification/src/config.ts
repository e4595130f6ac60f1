import { serviceConfig, type ServiceConfig, type Env } from "#platform";
import { listenPort } from "#mesh";

export interface NotificationConfig extends ServiceConfig {
  port: number;
}

/** The only place notification reads the environment. */
export function loadConfig(env: Env): NotificationConfig {
  return { ...serviceConfig(env), port: listenPort(env, "notification") };
}
