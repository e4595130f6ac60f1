import type { WatchLimits } from "./watch-slots.js";
import { deployable, meshServices, listenPort, peerUrlOf } from "#mesh";
import { ConfigError, commonConfig, integer, optionalString, requiredOneOf, url, type CommonConfig, type Env } from "#platform";
import { defaultMaxTokenLifetimeSeconds } from "./auth.js";

const gatewayEntry = deployable("gateway");
const statusOrder = [...gatewayEntry.calls, ...meshServices.flatMap(({ name }) => ((gatewayEntry.calls as readonly string[]).includes(name) ? [] : [name]))];

export type AuthConfig = ({ mode: "local"; secret: string } | { mode: "jwks"; jwksUrl: string; issuer: string; audience: string }) & {
  /** The longest a token may live, from its iat (or from now, without one) to its exp; unset: 24 h. */
  maxTokenLifetimeSeconds?: number;
};

/** Public in this source: whoever holds it can mint a token for any customer. */
const BUILT_IN_LOCAL_SECRET = "meshwork-local-development-secret-not-for-production";
const MIN_LOCAL_SECRET_LENGTH = 32;
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * The built-in secret only where nobody else can reach the gateway; a secret of one's own
 * long enough that it cannot be guessed offline from a single token.
 */
function localSecret(env: Env, host: string): string {
  const secret = optionalString(env, "AUTH_LOCAL_SECRET", BUILT_IN_LOCAL_SECRET);
  if (secret === BUILT_IN_LOCAL_SECRET && !LOOPBACK_HOSTS.has(host)) {
    throw new ConfigError(`AUTH_LOCAL_SECRET must be set when HOST is "${host}": the built-in secret is public and only serves a gateway bound to loopback (127.0.0.1, ::1, localhost)`);
  }
  if (secret.length < MIN_LOCAL_SECRET_LENGTH) throw new ConfigError(`AUTH_LOCAL_SECRET must be at least ${MIN_LOCAL_SECRET_LENGTH} characters, got ${secret.length}`);
  return secret;
}

/** Where every other deployable listens, by name: the peers the gateway calls, and those whose health it reports. */
export type MeshUrls = Record<(typeof gatewayEntry)["calls"][number], string> & Record<string, string>;

export interface GatewayConfig extends CommonConfig {
  port: number;
  /** Where every other deployable listens: the gateway calls some and reports the health of all. */
  meshUrls: MeshUrls;
  auth: AuthConfig;
  /** Sustained calls per second per client, and the burst above it. */
  rateLimit: { perSecond: number; burst: number };
  corsOrigins: string[];
  /** The longest deadline a public caller may ask for. */
  maxTimeoutMs: number;
  /** Open WatchOrder streams per customer and per client address. */
  watchLimits: WatchLimits;
}

/** The only place the gateway reads the environment. */
export function loadConfig(env: Env): GatewayConfig {
  // No default: demo tokens for anyone must be asked for, never fallen into.
  const mode = requiredOneOf(env, "AUTH_MODE", ["local", "jwks"] as const);
  const common = commonConfig(env);
  const maxTokenLifetimeSeconds = integer(env, "AUTH_MAX_TOKEN_LIFETIME_SECONDS", defaultMaxTokenLifetimeSeconds, { min: 60, max: 30 * 24 * 60 * 60 });
  return {
    ...common,
    // The public edge gets a tighter body limit than the internal services.
    maxRequestBytes: integer(env, "MAX_REQUEST_BYTES", 64 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
    port: listenPort(env, "gateway"),
    // The peers it calls first, then the rest: the order the mesh status lists them in.
    meshUrls: Object.fromEntries(statusOrder.map((name) => [name, peerUrlOf(env, name, common.meshTls)])) as MeshUrls,
    auth:
      mode === "local"
        ? { mode, secret: localSecret(env, common.host), maxTokenLifetimeSeconds }
        : { mode, jwksUrl: url(env, "AUTH_JWKS_URL"), issuer: optionalString(env, "AUTH_ISSUER", ""), audience: optionalString(env, "AUTH_AUDIENCE", "meshwork"), maxTokenLifetimeSeconds },
    rateLimit: {
      perSecond: integer(env, "RATE_LIMIT_PER_SECOND", 20, { min: 1, max: 100_000 }),
      burst: integer(env, "RATE_LIMIT_BURST", 40, { min: 1, max: 100_000 }),
    },
    corsOrigins: optionalString(env, "CORS_ORIGINS", "*").split(",").map((o) => o.trim()).filter(Boolean),
    maxTimeoutMs: integer(env, "MAX_TIMEOUT_MS", 10_000, { min: 100, max: 120_000 }),
    // A customer follows the few orders it just placed; an address may carry many customers
    // (an office behind NAT; the chaos load holds about 120 watches from 127.0.0.1).
    watchLimits: {
      perCustomer: integer(env, "WATCH_MAX_PER_CUSTOMER", 16, { min: 1, max: 1_000_000 }),
      perAddress: integer(env, "WATCH_MAX_PER_ADDRESS", 256, { min: 1, max: 1_000_000 }),
    },
  };
}
