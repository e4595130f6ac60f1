import { ConfigError, optionalString, serviceConfig, url, type ServiceConfig, type Env } from "#platform";
import { listenPort, peerUrlOf } from "#mesh";
import { DEFAULT_PUBLICATION, DEFAULT_SLOT, SLOT_NAME } from "./cdc/source.js";

export interface CatalogConfig extends ServiceConfig {
  port: number;
  /** The change capture role's URL on the old shop's own database (OLDSHOP_CDC_URL). */
  cdcSourceUrl: string;
  /** The permanent logical replication slot on that database (CDC_SLOT). */
  cdcSlot: string;
  /** The publication of the old shop's products (CDC_PUBLICATION). */
  cdcPublication: string;
  /** The old shop's JSON API (OLDSHOP_URL), which the sync back writes to. */
  oldshopUrl: string;
}

/** Slot and publication names go into replication commands: plain lower-case identifiers only. */
function identifier(env: Env, name: string, fallback: string): string {
  const value = optionalString(env, name, fallback);
  if (!SLOT_NAME.test(value)) throw new ConfigError(`${name} must be 1 to 63 of a-z, 0-9 and _, got "${value}"`);
  return value;
}

/** The only place catalog reads the environment. */
export function loadConfig(env: Env): CatalogConfig {
  const service = serviceConfig(env);
  return {
    ...service,
    port: listenPort(env, "catalog"),
    cdcSourceUrl: url(env, "OLDSHOP_CDC_URL"),
    cdcSlot: identifier(env, "CDC_SLOT", DEFAULT_SLOT),
    cdcPublication: identifier(env, "CDC_PUBLICATION", DEFAULT_PUBLICATION),
    oldshopUrl: peerUrlOf(env, "oldshop", service.meshTls),
  };
}
