import { serviceConfig, type ServiceConfig, type Env } from "#platform";
import { listenPort } from "#mesh";

export interface InventoryConfig extends ServiceConfig {
  port: number;
}

/** The only place inventory reads the environment. */
export function loadConfig(env: Env): InventoryConfig {
  return { ...serviceConfig(env), port: listenPort(env, "inventory") };
}
