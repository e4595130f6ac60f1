import { serviceConfig, port, type ServiceConfig, type Env } from "#platform";

export interface InventoryConfig extends ServiceConfig {
  port: number;
}

/** The only place inventory reads the environment. */
export function loadConfig(env: Env): InventoryConfig {
  return { ...serviceConfig(env), port: port(env, "INVENTORY_PORT", 50052) };
}
