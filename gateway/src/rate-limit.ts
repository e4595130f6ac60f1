import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { clientAddressKey } from "../../services/platform/node-handler.js";
import { customerKey } from "./auth.js";

/**
 * Per-client token buckets: each client may make `perSecond` calls a second, with bursts
 * up to `burst`. A client is its customer id when authenticated, else its address. Idle
 * buckets are dropped, so the map cannot grow without bound.
 */
export function createRateLimitInterceptor(guarded: DescService, options: { perSecond: number; burst: number }): Interceptor {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const take = (client: string): boolean => {
    const now = Date.now();
    const bucket = buckets.get(client) ?? { tokens: options.burst, at: now };
    bucket.tokens = Math.min(options.burst, bucket.tokens + ((now - bucket.at) / 1000) * options.perSecond);
    bucket.at = now;
    buckets.set(client, bucket);
    if (buckets.size > 10_000) for (const [key, b] of buckets) if (now - b.at > 60_000) buckets.delete(key);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  };
  return (next) => (req) => {
    if (req.service.typeName !== guarded.typeName) return next(req); // probes are not limited
    const client = req.contextValues.get(customerKey) || `address:${req.contextValues.get(clientAddressKey)}`;
    if (!take(client)) throw new ConnectError(`rate limit of ${options.perSecond} calls per second exceeded; retry shortly`, Code.ResourceExhausted);
    return next(req);
  };
}
