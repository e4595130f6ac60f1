import type { WatchLimits } from "./watch-slots.js";
import { commonConfig, integer, optionalString, port, requiredOneOf, url, type CommonConfig, type Env } from "../../services/platform/config.js";

export type AuthConfig = { mode: "local"; secret: string } | { mode: "jwks"; jwksUrl: string; issuer: string; audience: string };

export interface GatewayConfig extends CommonConfig {
  port: number;
  orderUrl: string;
  inventoryUrl: string;
  paymentUrl: string;
  notificationUrl: string;
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
  return {
    ...commonConfig(env),
    // The public edge gets a tighter body limit than the internal services.
    maxRequestBytes: integer(env, "MAX_REQUEST_BYTES", 64 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
    port: port(env, "GATEWAY_PORT", 8080),
    orderUrl: url(env, "ORDER_URL", "http://127.0.0.1:50051"),
    inventoryUrl: url(env, "INVENTORY_URL", "http://127.0.0.1:50052"),
    paymentUrl: url(env, "PAYMENT_URL", "http://127.0.0.1:50053"),
    notificationUrl: url(env, "NOTIFICATION_URL", "http://127.0.0.1:50054"),
    auth:
      mode === "local"
        ? { mode, secret: optionalString(env, "AUTH_LOCAL_SECRET", "meshwork-local-development-secret-not-for-production") }
        : { mode, jwksUrl: url(env, "AUTH_JWKS_URL"), issuer: optionalString(env, "AUTH_ISSUER", ""), audience: optionalString(env, "AUTH_AUDIENCE", "meshwork") },
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
