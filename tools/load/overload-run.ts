/**
 * The overload scenario of issue 12, shared by the bench (bench/overload.ts) and the chaos
 * command: measure the mesh's closed-loop peak and its latency at half that peak, then offer
 * `factor` times the peak for a while as paced open-loop arrivals through the gateway, and
 * half the peak after it, and check what overload control promises.
 */
import { runLoad, type LoadOptions, type LoadReport } from "./load-runner.js";

export interface OverloadOptions {
  gatewayUrl: string;
  /** Every service's ops port, whose /metrics count the calls, retries and refusals. */
  opsUrls: string[];
  mix: LoadOptions["mix"];
  peakMs: number;
  /** Closed-loop clients while measuring the peak. */
  concurrency: number;
  halfPeakMs: number;
  overloadMs: number;
  /** Offered load during the overload, as a multiple of the measured peak. */
  factor: number;
  /** The load after the overload (half the peak), in which latency must come back. */
  afterMs: number;
  onProgress?: (line: string) => void;
}

/** What the scenario promises; each check is its goal, its measured value and whether it holds. */
export interface OverloadReport {
  peak: number;
  halfPeak: { p50: number; p99: number };
  offered: number;
  /** Orders accepted during the overload, refused (RESOURCE_EXHAUSTED at PlaceOrder), and accepted per second that ended terminal. */
  accepted: number;
  refused: number;
  goodput: number;
  /** Accept to terminal of the orders accepted during the overload, in ms: over all of it, and second by second. */
  admittedP99: number;
  admittedP99BySecond: number[];
  /** Across every service's clients, over the overload and the load after it. */
  calls: number;
  retries: number;
  retriesRefused: number;
  /** Calls the services' admission control refused, by reason, across the mesh. */
  shed: Record<string, number>;
  /** From the end of the overload until latency was normal again and stayed so; undefined if it never did. */
  recoveredAfterMs: number | undefined;
  /** The load generator's own CPU during the overload run, in ms per second. */
  generatorCpuMsPerSecond: number;
  invariants: LoadReport["invariants"];
  errors: Record<string, number>;
  violations: string[];
}

/** The ratio of retries to calls the issue allows, and how long latency may take to come back. */
export const RETRY_SHARE = 0.2;
export const RECOVERY_MS = 5_000;
/** The admitted orders' p99 may be this many times the p99 at half peak, and goodput must reach this share of the peak. */
export const P99_FACTOR = 3;
export const GOODPUT_SHARE = 0.8;
/** A second after the overload is back to normal when its orders' p90 is within this many times the p99 at half peak. */
const NORMAL_P90_FACTOR = 1.5;

/** Sums of the Prometheus samples named, across every ops port, read from /metrics text. */
async function scrape(opsUrls: string[]): Promise<Map<string, number>> {
  const totals = new Map<string, number>();
  for (const url of opsUrls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const line of text.split("\n")) {
      const match = /^(rpc_client_calls|rpc_client_retries|rpc_client_retries_refused|admission_shed)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
      if (!match) continue;
      const reason = match[1] === "admission_shed" ? /reason="([^"]+)"/.exec(match[2] ?? "")?.[1] : undefined;
      const key = reason ? `admission_shed:${reason}` : match[1]!;
      totals.set(key, (totals.get(key) ?? 0) + Number(match[3]));
    }
  }
  return totals;
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : 0;
};

export async function runOverload(options: OverloadOptions): Promise<OverloadReport> {
  const progress = options.onProgress ?? (() => {});
  const load = (shape: Pick<LoadOptions, "durationMs" | "concurrency" | "ratePerSecond" | "phases" | "timeline">) =>
    runLoad({ gatewayUrl: options.gatewayUrl, mix: options.mix, ...shape, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });

  const peakRun = await load({ durationMs: options.peakMs, concurrency: options.concurrency });
  const peak = peakRun.ordersPerSecond;
  progress(`peak ${peak.toFixed(1)} orders/s (closed loop of ${options.concurrency}, ${peakRun.rejected} refused)`);
  const halfRun = await load({ durationMs: options.halfPeakMs, ratePerSecond: peak / 2 });
  const halfPeak = { p50: halfRun.terminalMs.p50, p99: halfRun.terminalMs.p99 };
  progress(`at half peak: p50 ${halfPeak.p50.toFixed(0)} ms, p99 ${halfPeak.p99.toFixed(0)} ms`);

  const before = await scrape(options.opsUrls);
  const offered = options.factor * peak;
  progress(`offering ${offered.toFixed(1)} orders/s for ${options.overloadMs / 1000} s, then ${(peak / 2).toFixed(1)} for ${options.afterMs / 1000} s`);
  const run = await load({
    durationMs: options.overloadMs + options.afterMs,
    phases: [
      { durationMs: options.overloadMs, ratePerSecond: offered },
      { durationMs: options.afterMs, ratePerSecond: peak / 2 },
    ],
    timeline: true,
  });
  const after = await scrape(options.opsUrls);
  const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);

  const orders = run.orders ?? [];
  const during = orders.filter((o) => o.startedMs < options.overloadMs);
  const admittedP99 = percentile(during.flatMap((o) => (o.terminalMs === undefined ? [] : [o.terminalMs])), 0.99);
  const bySecond = Array.from({ length: Math.ceil(options.overloadMs / 1000) }, (_, s) =>
    percentile(during.filter((o) => o.startedMs >= s * 1000 && o.startedMs < (s + 1) * 1000).map((o) => o.terminalMs ?? Infinity), 0.99),
  );
  const goodput = during.filter((o) => o.terminalMs !== undefined).length / (options.overloadMs / 1000);
  const refused = run.rejected; // all during the overload, unless the mesh sheds at half its peak too
  // Each second after the overload, by when its orders were placed: normal once its p90 is.
  const normalMs = NORMAL_P90_FACTOR * halfPeak.p99;
  const seconds = Math.floor(options.afterMs / 1000);
  const normal = Array.from({ length: seconds }, (_, s) => {
    const inSecond = orders.filter((o) => o.startedMs >= options.overloadMs + s * 1000 && o.startedMs < options.overloadMs + (s + 1) * 1000);
    return percentile(inSecond.map((o) => o.terminalMs ?? Infinity), 0.9) <= normalMs;
  });
  const firstOfTheRest = normal.findIndex((_, s) => normal.slice(s).every(Boolean));
  const recoveredAfterMs = firstOfTheRest < 0 ? undefined : firstOfTheRest * 1000;
  const calls = delta("rpc_client_calls");
  const retries = delta("rpc_client_retries");
  const shed = Object.fromEntries([...after.keys()].filter((key) => key.startsWith("admission_shed:")).map((key) => [key.slice("admission_shed:".length), delta(key)]));

  const violations = [
    ...(admittedP99 > P99_FACTOR * halfPeak.p99 ? [`admitted orders' accept-to-terminal p99 ${admittedP99.toFixed(0)} ms is over ${P99_FACTOR} × the ${halfPeak.p99.toFixed(0)} ms at half peak`] : []),
    ...(goodput < GOODPUT_SHARE * peak ? [`goodput ${goodput.toFixed(1)} orders/s is under ${GOODPUT_SHARE} × the ${peak.toFixed(1)} orders/s peak`] : []),
    ...(retries > RETRY_SHARE * calls ? [`${retries} retries in ${calls} calls, over ${RETRY_SHARE * 100}%`] : []),
    ...(!run.invariants.ok ? [`invariants violated: ${JSON.stringify(run.invariants)}`] : []),
    ...(Object.keys(run.errors).length > 0 ? [`accepted orders failed: ${JSON.stringify(run.errors)}`] : []),
    ...(recoveredAfterMs === undefined || recoveredAfterMs > RECOVERY_MS ? [`latency back to normal ${recoveredAfterMs === undefined ? "never" : `only ${recoveredAfterMs / 1000} s`} after the overload (bound ${RECOVERY_MS / 1000} s)`] : []),
  ];
  return {
    peak,
    halfPeak,
    offered,
    accepted: during.length,
    refused,
    goodput,
    admittedP99,
    admittedP99BySecond: bySecond,
    calls,
    retries,
    retriesRefused: delta("rpc_client_retries_refused"),
    shed,
    recoveredAfterMs,
    generatorCpuMsPerSecond: run.generatorCpuMs / ((options.overloadMs + options.afterMs) / 1000),
    invariants: run.invariants,
    errors: run.errors,
    violations,
  };
}
