import { commonConfig, port, type CommonConfig, type Env } from "../../platform/config.js";

export interface NotificationConfig extends CommonConfig {
  port: number;
}

/** The only place notification reads the environment. */
export function loadConfig(env: Env): NotificationConfig {
  return { ...commonConfig(env), port: port(env, "NOTIFICATION_PORT", 50054) };
}
