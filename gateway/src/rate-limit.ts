import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { clientAddressKey } from "#platform";
import { rateLimitedCustomerKey } from "./auth.js";

/**
 * Token buckets: each key may make `perSecond` calls a second, with bursts up to `burst`.
 * By "client", the key is the customer on a method that requires a token, else the address
 * (open methods are limited by address even with a token: auth.ts); by "address",
 * always the address, which limits callers before their token is even checked.
 */
export function createRateLimitInterceptor(guarded: DescService, options: { perSecond: number; burst: number; by: "client" | "address" }): Interceptor {
  const buckets = new Map<string, { tokens: number; at: number }>();
  // Idle buckets are full again anyway: forget them, off the request path.
  setInterval(() => {
    const now = Date.now();
    for (const [key, bucket] of buckets) if (now - bucket.at > 60_000) buckets.delete(key);
  }, 30_000).unref();
  const take = (client: string): boolean => {
    const now = Date.now();
    const bucket = buckets.get(client) ?? { tokens: options.burst, at: now };
    bucket.tokens = Math.min(options.burst, bucket.tokens + ((now - bucket.at) / 1000) * options.perSecond);
    bucket.at = now;
    buckets.set(client, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  };
  return (next) => (req) => {
    if (req.service.typeName !== guarded.typeName) return next(req); // probes are not limited
    const address = `address:${req.contextValues.get(clientAddressKey)}`;
    const client = options.by === "address" ? address : req.contextValues.get(rateLimitedCustomerKey) || address;
    if (!take(client)) throw new ConnectError(`rate limit of ${options.perSecond} calls per second exceeded; retry shortly`, Code.ResourceExhausted);
    return next(req);
  };
}
