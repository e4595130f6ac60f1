import { commonConfig, optionalString, port, type CommonConfig, type Env } from "../../platform/config.js";

export interface InventoryConfig extends CommonConfig {
  host: string;
  port: number;
}

/** The only place inventory reads the environment. */
export function loadConfig(env: Env): InventoryConfig {
  return { ...commonConfig(env), host: optionalString(env, "HOST", "127.0.0.1"), port: port(env, "INVENTORY_PORT", 50052) };
}
