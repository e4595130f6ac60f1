/**
 * Past the peak: overload control (issue 12). On a scratch mesh as `npm start` runs it
 * (durable Postgres, mTLS, authorization; the gateway's per-client rate limits lifted, since
 * they would cap the load generator), it measures the closed-loop peak and the latency at
 * half of it, then offers three times the peak through the gateway as paced open-loop
 * arrivals, then half the peak again, and checks that admission control held: the orders it
 * admitted finished in time, goodput stayed near the peak, retries stayed within their
 * budget, every accepted order ended with the invariants holding, and latency came back.
 * Run: npx tsx bench/overload.ts [overload seconds=20] [peak seconds=10]
 */
import { startScratchMesh } from "#tools/mesh/scratch-mesh.js";
import { meshServiceNames } from "#mesh";
import { runLoad } from "#tools/load/load-runner.js";
import { GOODPUT_SHARE, P99_FACTOR, RECOVERY_MS, RETRY_SHARE, runOverload } from "#tools/load/overload-run.js";
import { commandLine, progress, quick, targetLine } from "./report.js";

const [overloadSeconds, peakSeconds] = [Number(process.argv[2] ?? (quick ? 10 : 20)), Number(process.argv[3] ?? (quick ? 5 : 10))];
const [concurrency, factor, afterSeconds] = [32, 3, 10];
const mix = { good: 8, declined: 1, outOfStock: 1 };

const mesh = await startScratchMesh({ env: { RATE_LIMIT_PER_SECOND: "100000", RATE_LIMIT_BURST: "100000", WATCH_MAX_PER_CUSTOMER: "100000", WATCH_MAX_PER_ADDRESS: "100000" } });
let report;
try {
  // A short closed loop first, so the peak is not measured on a cold mesh (JIT, pools, connections).
  progress("warming up");
  await runLoad({ gatewayUrl: mesh.url("gateway"), durationMs: 5_000, concurrency, mix });
  report = await runOverload({
    gatewayUrl: mesh.url("gateway"),
    opsUrls: meshServiceNames.map((name) => mesh.opsUrl(name)),
    mix,
    peakMs: peakSeconds * 1000,
    concurrency,
    halfPeakMs: peakSeconds * 1000,
    overloadMs: overloadSeconds * 1000,
    factor,
    afterMs: afterSeconds * 1000,
    onProgress: progress,
  });
} finally {
  await mesh.stop();
}

const r = report;
const shed = Object.entries(r.shed).map(([reason, n]) => `${n} by the ${reason} limit`).join(", ") || "none";
const ratio = r.calls === 0 ? 0 : r.retries / r.calls;
console.log(`## Past the peak: overload control

\`${commandLine("bench/overload.ts", [overloadSeconds, peakSeconds])}\`: on a scratch mesh as \`npm start\` runs it, the closed-loop peak
(${concurrency} clients, ${peakSeconds} s), the latency at half of it (open loop, ${peakSeconds} s), then ${factor} × the peak offered for ${overloadSeconds} s as paced
open-loop arrivals through the gateway, then half the peak for ${afterSeconds} s (mix 8:1:1). Latency is accept to terminal.

| measure | value |
|---|---|
| peak (closed loop) | ${r.peak.toFixed(1)} orders/s |
| at half peak, p50 / p99 | ${r.halfPeak.p50.toFixed(0)} / ${r.halfPeak.p99.toFixed(0)} ms |
| offered during the overload | ${r.offered.toFixed(1)} orders/s |
| accepted / refused (RESOURCE_EXHAUSTED at PlaceOrder) | ${r.accepted} / ${r.refused} |
| goodput (accepted during the overload and ended terminal) | ${r.goodput.toFixed(1)} orders/s |
| admitted orders' p99 | ${r.admittedP99.toFixed(0)} ms |
| admitted orders' p99, second by second of the overload | ${r.admittedP99BySecond.map((ms) => ms.toFixed(0)).join(" ")} ms |
| refused by the services' admission control | ${shed} |
| retries / calls across the mesh's clients | ${r.retries} / ${r.calls} (${(ratio * 100).toFixed(1)}%), ${r.retriesRefused} refused by the budgets |
| latency normal again after the overload | ${r.recoveredAfterMs === undefined ? `not within ${afterSeconds} s` : `${(r.recoveredAfterMs / 1000).toFixed(0)} s`} |
| load generator's own CPU | ${r.generatorCpuMsPerSecond.toFixed(0)} ms per second (${((r.generatorCpuMsPerSecond / 1000) * 100).toFixed(0)}% of a core) |
| errors of accepted orders | ${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none"} |
| invariants (every accepted order terminal, stock and payments agree) | ${r.invariants.ok ? "hold" : `VIOLATED ${JSON.stringify(r.invariants)}`} |

"Normal again" is the first second after the overload from which every second's orders have a p90 within 1.5 × the p99 at half peak.

${targetLine(`admitted p99 ≤ ${P99_FACTOR} × p99 at half peak (shown as ${P99_FACTOR} × p99 at half peak / admitted p99)`, (P99_FACTOR * r.halfPeak.p99) / Math.max(r.admittedP99, 1), 1)}
${targetLine(`goodput ≥ ${GOODPUT_SHARE.toFixed(2)} × peak`, r.goodput / r.peak, GOODPUT_SHARE)}
${targetLine(`retries ≤ ${RETRY_SHARE * 100}% of calls (shown as ${RETRY_SHARE} / retries per call)`, Math.min(RETRY_SHARE / Math.max(ratio, 1e-9), 99), 1)}
${targetLine("every accepted order terminal, invariants holding (1 = yes)", r.invariants.ok && Object.keys(r.errors).length === 0 ? 1 : 0, 1)}
${targetLine(`latency normal within ${RECOVERY_MS / 1000} s after the load (shown as ${RECOVERY_MS / 1000} s / measured)`, r.recoveredAfterMs === undefined ? 0 : Math.min(RECOVERY_MS / Math.max(r.recoveredAfterMs, 1), 99), 1)}
`);
process.exit(0);
