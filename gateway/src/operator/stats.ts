import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BreakerPointSchema, GetStatsResponseSchema, StatsPointSchema, type BreakerPoint, type GetStatsResponse, type StatsPoint } from "#gen/shop/gateway/v1/operator_service_pb.js";
import type { DependencyStats } from "#platform";

/** Ten minutes of seconds: what GetStats can show at most. */
export const STATS_SECONDS = 600;
/**
 * Latency samples kept per second. Past this, each new sample replaces a random kept one
 * (reservoir sampling), so the percentiles stay unbiased and a burst costs no more memory.
 */
const SAMPLES_PER_SECOND = 4096;

export interface GatewayStats {
  /** Counts the public server's calls; it must be outermost, to see the status the caller gets (admission's refusals included). */
  readonly interceptor: Interceptor;
  /** The last `windowSeconds` complete seconds, oldest first. */
  read(windowSeconds: number): GetStatsResponse;
  close(): void;
}

/** "ResourceExhausted" as the contract's code names read: "resource_exhausted". */
const codeName = (code: Code) => (Code[code] ?? "Unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();

/** The q-quantile of ascending `sorted` (nearest rank); 0 for none. */
function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** What one second gathers before it is summed up. */
interface Second {
  orders: number;
  latencies: number[];
  seen: number;
  errors: Map<string, number>;
}
const emptySecond = (): Second => ({ orders: 0, latencies: [], seen: 0, errors: new Map() });

/**
 * The console's live charts, sampled in the gateway itself, so they need no metrics backend:
 * each second, PlaceOrder's successes and latency percentiles (exact over that second's
 * samples), failed public calls by code, and each dependency's breaker state with its calls
 * and failures in that second (from the clients' cumulative counts). Bounded: 600 points of
 * each, and at most SAMPLES_PER_SECOND latencies in the second being gathered.
 */
export function createGatewayStats(options: { service: { typeName: string }; placeOrder: string; dependencies: () => DependencyStats[]; now?: () => number }): GatewayStats {
  const now = options.now ?? Date.now;
  const points: StatsPoint[] = [];
  const breakers: BreakerPoint[][] = [];
  let current = emptySecond();
  let previous = new Map(options.dependencies().map((d) => [d.dependency, d]));

  const sample = (latencyMs: number) => {
    current.seen++;
    if (current.latencies.length < SAMPLES_PER_SECOND) current.latencies.push(latencyMs);
    else {
      const slot = Math.floor(Math.random() * current.seen);
      if (slot < SAMPLES_PER_SECOND) current.latencies[slot] = latencyMs;
    }
  };
  const failed = (err: unknown) => {
    const code = codeName(ConnectError.from(err).code);
    current.errors.set(code, (current.errors.get(code) ?? 0) + 1);
  };

  const interceptor: Interceptor = (next) => async (req) => {
    if (req.service.typeName !== options.service.typeName) return next(req);
    const startedAt = performance.now();
    try {
      const res = await next(req);
      if (req.method.name === options.placeOrder) {
        current.orders++;
        sample(performance.now() - startedAt);
      }
      return res;
    } catch (err) {
      failed(err);
      throw err;
    }
  };

  const tick = () => {
    const second = current;
    current = emptySecond();
    const time = timestampFromMs(Math.floor(now() / 1000) * 1000 - 1000);
    const sorted = Float64Array.from(second.latencies).sort();
    points.push(create(StatsPointSchema, { time, ordersPerSecond: second.orders, p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99), errorsPerSecond: Object.fromEntries(second.errors) }));
    const dependencies = options.dependencies();
    breakers.push(
      dependencies.map((d) => {
        const before = previous.get(d.dependency);
        return create(BreakerPointSchema, { time, dependency: d.dependency, state: d.breaker, calls: d.calls - (before?.calls ?? 0), failures: d.failures - (before?.failures ?? 0) });
      }),
    );
    previous = new Map(dependencies.map((d) => [d.dependency, d]));
    if (points.length > STATS_SECONDS) points.shift();
    if (breakers.length > STATS_SECONDS) breakers.shift();
  };
  // On the second's boundary, so each point covers one wall-clock second.
  let timer: NodeJS.Timeout | undefined;
  const align = setTimeout(() => {
    tick();
    timer = setInterval(tick, 1000);
    timer.unref();
  }, 1000 - (now() % 1000));
  align.unref();

  return {
    interceptor,
    read(windowSeconds) {
      return create(GetStatsResponseSchema, { points: points.slice(-windowSeconds), breakers: breakers.slice(-windowSeconds).flat() });
    },
    close() {
      clearTimeout(align);
      clearInterval(timer);
    },
  };
}
