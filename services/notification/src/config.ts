import { serviceConfig, port, type ServiceConfig, type Env } from "#platform";

export interface NotificationConfig extends ServiceConfig {
  port: number;
}

/** The only place notification reads the environment. */
export function loadConfig(env: Env): NotificationConfig {
  return { ...serviceConfig(env), port: port(env, "NOTIFICATION_PORT", 50054) };
}
