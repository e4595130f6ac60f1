import type { OldShopOptions } from "./server.js";

/** A setting the old shop cannot start with; main.ts prints it and exits 2. */
export class ConfigError extends Error {}

const DEFAULT_READERS = "spiffe://meshwork/gateway,spiffe://meshwork/order,spiffe://meshwork/operator";
/** The operator; the console (the gateway's operator listener, writing here while catalog writes are legacy); the catalog's sync back once they are not. */
const DEFAULT_WRITERS = "spiffe://meshwork/operator,spiffe://meshwork/console,spiffe://meshwork/catalog";

function portOf(env: NodeJS.ProcessEnv, names: readonly string[], fallback: number): number {
  const name = names.find((n) => env[n]?.trim());
  if (!name) return fallback;
  const value = Number(env[name]);
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new ConfigError(`${name} must be a port number (1 to 65535), got "${env[name]}"`);
  return value;
}

const list = (env: NodeJS.ProcessEnv, name: string, fallback: string) =>
  (env[name] ?? fallback)
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");

/** The old shop's settings from its environment (the README's table lists them). */
export function loadConfig(env: NodeJS.ProcessEnv): Omit<OldShopOptions, "logger"> {
  const databaseUrl = env["DATABASE_URL"];
  if (!databaseUrl) throw new ConfigError("DATABASE_URL is required: the old shop's own role on its own cluster");
  const tlsOff = env["MESH_TLS"] === "off";
  const [certFile, keyFile, caFile] = [env["TLS_CERT_FILE"], env["TLS_KEY_FILE"], env["TLS_CA_FILE"]];
  if (!tlsOff && !(certFile && keyFile && caFile)) throw new ConfigError("TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE are required unless MESH_TLS=off");
  const trustedProxies = list(env, "TRUSTED_PROXIES", "");
  if (tlsOff && trustedProxies.length === 0) throw new ConfigError("MESH_TLS=off needs TRUSTED_PROXIES naming the sidecar proxy whose x-forwarded-client-cert names the callers");
  const readers = list(env, "OLDSHOP_READERS", DEFAULT_READERS);
  const writers = list(env, "OLDSHOP_WRITERS", DEFAULT_WRITERS);
  for (const [name, entries] of [["OLDSHOP_READERS", readers], ["OLDSHOP_WRITERS", writers]] as const) {
    const bad = entries.find((entry) => !entry.startsWith("spiffe://"));
    if (bad) throw new ConfigError(`${name} must list spiffe:// URIs, got "${bad}"`);
  }
  return {
    databaseUrl,
    host: env["HOST"]?.trim() || "127.0.0.1",
    port: portOf(env, ["OLDSHOP_PORT", "PORT"], 50060),
    opsPort: portOf(env, ["OPS_PORT", "OLDSHOP_OPS_PORT"], 51060),
    ...(tlsOff ? { trustedProxies } : { tls: { certFile: certFile!, keyFile: keyFile!, caFile: caFile! } }),
    readers,
    writers,
  };
}
