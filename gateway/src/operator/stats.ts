import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
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
 * each second, PlaceOrder's successes, its latency percentiles over every PlaceOrder that
 * second, failed ones included (a DEADLINE_EXCEEDED is the latency that matters most),
 * failed public calls by code, and each dependency's breaker state with the calls it sent and
 * their failures in that second (from the clients' cumulative counts). Per gateway replica:
 * each replica counts the calls it served. Bounded: 600 points of each, and at most
 * SAMPLES_PER_SECOND latencies in the second being gathered.
 */
export function createGatewayStats(options: { service: { typeName: string }; placeOrder: string; dependencies: () => DependencyStats[]; now?: () => number }): GatewayStats {
  const now = options.now ?? Date.now;
  const points: StatsPoint[] = [];
  const breakers: BreakerPoint[][] = [];
  let current = emptySecond();
  let previous = new Map(options.dependencies().map((d) => [d.dependency, d]));
  /** The start of the first second the calls being gathered belong to. */
  let since = Math.floor(now() / 1000) * 1000;

  const sample = (latencyMs: number) => {
    current.seen++;
    if (current.latencies.length < SAMPLES_PER_SECOND) current.latencies.push(latencyMs);
    else {
      const slot = Math.floor(Math.random() * current.seen);
      if (slot < SAMPLES_PER_SECOND) current.latencies[slot] = latencyMs;
    }
  };
  const failed = (err: unknown) => {
    // As the contract names codes ("resource_exhausted"): the Connect protocol's spelling, the
    // page's legend. The metrics' `code` label stays the enum's ("ResourceExhausted"), which
    // dashboards already read.
    const code = codeToString(ConnectError.from(err).code);
    current.errors.set(code, (current.errors.get(code) ?? 0) + 1);
  };

  const interceptor: Interceptor = (next) => async (req) => {
    if (req.service.typeName !== options.service.typeName) return next(req);
    const placeOrder = req.method.name === options.placeOrder;
    const startedAt = performance.now();
    try {
      const res = await next(req);
      if (placeOrder) current.orders++;
      return res;
    } catch (err) {
      failed(err);
      throw err;
    } finally {
      if (placeOrder) sample(performance.now() - startedAt);
    }
  };

  /**
   * Sums up what was gathered since `since`, up to the second boundary just passed. A late
   * timer (a busy or stalled event loop) covers several seconds at once: it writes a point
   * for each of them, every one with the average rate over the real elapsed seconds. Not
   * zeros and then the whole count in the last second: a stalled loop completes no call
   * while it stalls, so which second the calls belong to is unknowable, and a spike at n
   * times the rate would be one that never happened; the averages keep the total and the
   * time axis without holes.
   */
  const tick = () => {
    const boundary = Math.floor(now() / 1000) * 1000;
    const seconds = (boundary - since) / 1000;
    // Fired before the boundary by the clocks' disagreement: the second is not over yet.
    if (seconds < 1) return;
    const second = current;
    current = emptySecond();
    const sorted = Float64Array.from(second.latencies).sort();
    const p50Ms = quantile(sorted, 0.5);
    const p99Ms = quantile(sorted, 0.99);
    const errorsPerSecond = Object.fromEntries([...second.errors].map(([code, count]) => [code, count / seconds]));
    const dependencies = options.dependencies();
    // What the dependency was sent: the breaker's (and bulkhead's) refusals are counted in
    // `calls` too, and BreakerPoint has no field for them, so an open breaker would read as
    // many calls and no failures.
    const sent = (d: DependencyStats | undefined) => (d ? d.calls - d.rejected : 0);
    const deltas = dependencies.map((d) => {
      const before = previous.get(d.dependency);
      return { d, calls: (sent(d) - sent(before)) / seconds, failures: (d.failures - (before?.failures ?? 0)) / seconds };
    });
    previous = new Map(dependencies.map((d) => [d.dependency, d]));
    // Points older than the window would be dropped at once.
    for (let s = Math.max(0, seconds - STATS_SECONDS); s < seconds; s++) {
      const time = timestampFromMs(since + s * 1000);
      points.push(create(StatsPointSchema, { time, ordersPerSecond: second.orders / seconds, p50Ms, p99Ms, errorsPerSecond }));
      breakers.push(deltas.map(({ d, calls, failures }) => create(BreakerPointSchema, { time, dependency: d.dependency, state: d.breaker, calls, failures })));
    }
    since = boundary;
    points.splice(0, Math.max(0, points.length - STATS_SECONDS));
    breakers.splice(0, Math.max(0, breakers.length - STATS_SECONDS));
  };
  // Armed afresh for each next second boundary: an interval's delays add up, and a point
  // labelled by when its timer fired would skip a second once they pass one.
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => {
      tick();
      arm();
    }, 1000 - (now() % 1000));
    timer.unref();
  };
  arm();

  return {
    interceptor,
    read(windowSeconds) {
      return create(GetStatsResponseSchema, { points: points.slice(-windowSeconds), breakers: breakers.slice(-windowSeconds).flat() });
    },
    close() {
      clearTimeout(timer);
    },
  };
}
