import { commonConfig, port, type CommonConfig, type Env } from "../../platform/config.js";

export interface InventoryConfig extends CommonConfig {
  port: number;
}

/** The only place inventory reads the environment. */
export function loadConfig(env: Env): InventoryConfig {
  return { ...commonConfig(env), port: port(env, "INVENTORY_PORT", 50052) };
}
