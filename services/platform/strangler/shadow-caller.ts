import { Counter } from "prom-client";
import { detachedFromDeadline } from "../rpc-client/deadline.js";
import type { Logger } from "../process/logger.js";
import type { Metrics } from "../process/metrics.js";
import type { Side } from "./route-decision.js";
import type { Comparison, FieldDifference } from "./shadow-compare.js";

export interface ShadowPolicy {
  /** Shadow calls in flight at once (all methods); beyond it a shadow call is skipped, not queued. */
  maxInFlight: number;
  /** How long the new side has to answer a shadow call before it counts as failed. */
  timeoutMs: number;
  /**
   * How long after a difference both sides are asked again; 0: never. The new side trails
   * the old one by its replication lag, so a change in flight shows as a difference for that
   * long: only one that is still there, with the old side's value unchanged, is a mismatch.
   * Set it above the lag you accept (catalog_cdc_lag_seconds).
   */
  recheckAfterMs: number;
}

export const defaultShadowPolicy: ShadowPolicy = { maxInFlight: 32, timeoutMs: 2_000, recheckAfterMs: 1_000 };

export interface ShadowMismatch {
  time: Date;
  differences: FieldDifference[];
  more: number;
}

/** One method's calls per side and shadow comparisons since this process started. */
export interface StranglerStats {
  legacyCalls: number;
  newCalls: number;
  compared: number;
  mismatched: number;
  /** Comparisons whose differences were gone on the recheck: changes still on their way to the new side. */
  converged: number;
  /** Shadow calls whose new side failed or timed out. */
  failed: number;
  /** Shadow calls not made, because maxInFlight were in flight. */
  skipped: number;
  /** The newest mismatch. */
  example?: ShadowMismatch;
}

export type ShadowResult = "match" | "mismatch" | "converged" | "failed" | "skipped";

/** Asks both sides again and compares their answers. */
export type Recheck = (signal: AbortSignal) => Promise<Comparison>;

export interface ShadowCaller {
  /** Counts a call served by `side`. */
  served(method: string, side: Side): void;
  /**
   * Calls the new side in the background and compares its answer with the legacy one the
   * caller already has; returns at once. Whatever the new side does (fails, hangs, answers
   * late) never reaches the caller: it is counted. With `recheck`, a difference is checked
   * again after the policy's recheckAfterMs (see ShadowPolicy). Resolves `settled` for tests.
   */
  shadow<T>(method: string, call: (signal: AbortSignal) => Promise<T>, compare: (answer: T) => Comparison, recheck?: Recheck): { settled: Promise<ShadowResult> };
  stats(method: string): StranglerStats;
  /** Shadow calls in flight now. */
  inFlight(): number;
}

const emptyStats = (): StranglerStats => ({ legacyCalls: 0, newCalls: 0, compared: 0, mismatched: 0, converged: 0, failed: 0, skipped: 0 });

/**
 * The differences of `first` that `second` still shows with the old side's value unchanged:
 * the new side had the recheck's time to catch up and did not. One whose old value moved
 * meanwhile is a moving target, not evidence.
 */
function persisting(first: Comparison, second: Comparison): Comparison {
  const again = new Map(second.differences.map((d) => [d.path, d]));
  return { differences: first.differences.filter((d) => again.get(d.path)?.legacy === d.legacy), more: 0 };
}

/**
 * The strangler's bookkeeping: calls per side, and shadow calls, bounded and on their own
 * timeout, compared and counted per method, with the newest mismatch kept as an example.
 * With `metrics`, also strangler_calls_total{method,side} and strangler_shadow_total{method,result}.
 */
export function createShadowCaller(options: { logger: Logger; metrics?: Metrics; policy?: Partial<ShadowPolicy> }): ShadowCaller {
  const policy = { ...defaultShadowPolicy, ...options.policy };
  const registers = options.metrics ? [options.metrics.registry] : [];
  const calls = new Counter({ name: "strangler_calls_total", help: "Calls of a strangled method, by the side that served them", labelNames: ["method", "side"], registers });
  const shadows = new Counter({ name: "strangler_shadow_total", help: "Shadow calls of a strangled method, by result: match, mismatch, converged (gone on the recheck), failed, skipped", labelNames: ["method", "result"], registers });
  // Keyed by the route table's methods alone (callers pass those), so it stays as small as the table.
  const perMethod = new Map<string, StranglerStats>();
  const statsOf = (method: string) => perMethod.get(method) ?? perMethod.set(method, emptyStats()).get(method)!;
  let inFlight = 0;

  const count = (method: string, result: ShadowResult) => {
    const stats = statsOf(method);
    if (result === "skipped") stats.skipped++;
    else if (result === "failed") stats.failed++;
    else stats.compared++;
    if (result === "mismatch") stats.mismatched++;
    if (result === "converged") stats.converged++;
    shadows.inc({ method, result });
    return result;
  };

  async function run<T>(method: string, call: (signal: AbortSignal) => Promise<T>, compare: (answer: T) => Comparison, recheck?: Recheck): Promise<ShadowResult> {
    let comparison: Comparison;
    try {
      comparison = compare(await call(AbortSignal.timeout(policy.timeoutMs)));
      if (comparison.differences.length === 0) return count(method, "match");
      if (recheck && policy.recheckAfterMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, policy.recheckAfterMs));
        comparison = persisting(comparison, await recheck(AbortSignal.timeout(policy.timeoutMs)));
        if (comparison.differences.length === 0) return count(method, "converged");
      }
    } catch (err) {
      options.logger.debug({ err, method }, "shadow call failed");
      return count(method, "failed");
    }
    statsOf(method).example = { time: new Date(), ...comparison };
    options.logger.warn({ method, differences: comparison.differences.slice(0, 3), more: comparison.more + Math.max(0, comparison.differences.length - 3) }, "shadow mismatch");
    return count(method, "mismatch");
  }

  return {
    served(method, side) {
      const stats = statsOf(method);
      if (side === "legacy") stats.legacyCalls++;
      else stats.newCalls++;
      calls.inc({ method, side });
    },
    shadow(method, call, compare, recheck) {
      if (inFlight >= policy.maxInFlight) return { settled: Promise.resolve(count(method, "skipped")) };
      inFlight++;
      // Its own time, not what is left of the caller's deadline: the caller has its answer already.
      const settled = detachedFromDeadline(() => run(method, call, compare, recheck))
        .catch((err: unknown) => {
          options.logger.warn({ err, method }, "shadow comparison failed");
          return count(method, "failed");
        })
        .finally(() => inFlight--);
      return { settled };
    },
    stats: (method) => ({ ...statsOf(method) }),
    inFlight: () => inFlight,
  };
}
