import { serviceConfig, type ServiceConfig, type Env } from "#platform";
import { listenPort } from "#mesh";

export interface CatalogConfig extends ServiceConfig {
  port: number;
}

/** The only place catalog reads the environment. */
export function loadConfig(env: Env): CatalogConfig {
  return { ...serviceConfig(env), port: listenPort(env, "catalog") };
}
