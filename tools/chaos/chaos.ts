/**
 * `npm run chaos [-- --quick] [--out DIR]`: faults under load, each scenario ending in an
 * invariant check read from the services' schemas. It starts its own disposable mesh
 * (embedded Postgres, nats-server, every service under the supervisor) on 127.0.0.1, so it
 * needs nothing running and touches neither `.data/` nor a running `npm start`.
 *
 * Prints a table, scenario by row, writes JSON and markdown results (and the services' log)
 * to bench/results/, and exits 1 if any invariant was violated.
 */
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fullPlan, quickPlan } from "./chaos-plans.js";
import { runChaos, type ChaosRun } from "./run-chaos.js";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    out: { type: "string", default: resolve(import.meta.dirname, "../../bench/results") },
  },
});

/** The run as a markdown table, each scenario's violations in full below it. */
function renderChaosTable(run: ChaosRun): string {
  const seconds = (ms: number | undefined) => (ms === undefined ? `not within ${run.bounds.terminalAfterFaultMs / 1000} s` : `${(ms / 1000).toFixed(1)} s`);
  const codes = (errors: Record<string, number>) => Object.entries(errors).map(([code, n]) => `${code} ${n}`).join(", ") || "none";
  const rows = run.results.map((r) => `| ${r.scenario} | ${r.accepted} | ${r.terminal} | ${codes(r.errors)} | ${seconds(r.recoveredMs)} | ${r.violations.length ? `${r.violations.length} VIOLATED` : "ok"} |`);
  const details = run.results.flatMap((r) => r.violations.map((v) => `- ${r.scenario}: ${v}`));
  return [
    `## Chaos run (${run.plan}) ${run.startedAt}`,
    "",
    `Load per scenario: ${run.load.ratePerSecond} orders/s for ${run.load.durationMs / 1000} s (good:declined:out-of-stock:3-D Secure ${run.load.mix.good}:${run.load.mix.declined}:${run.load.mix.outOfStock}:${run.load.mix.threeDs ?? 0}; half the 3-D Secure ones confirmed, the rest left to time out), fault at ${run.load.faultAfterMs / 1000} s.`,
    `Bounds: every order terminal within ${run.bounds.terminalAfterFaultMs / 1000} s of the fault ending; stock and events settled within ${run.bounds.settleAfterTerminalMs / 1000} s after that.`,
    `Time to recover: from the fault's end (the kill itself for a SIGKILL) until every service is ready and every order placed before it is terminal.`,
    "",
    "| scenario | orders accepted | terminal | errors during load by code | time to recover | violations |",
    "|---|---|---|---|---|---|",
    ...rows,
    "",
    ...(details.length ? ["Violations:", ...details, ""] : []),
    `Mesh started in ${(run.meshStartMs / 1000).toFixed(1)} s; whole run ${(run.durationMs / 1000).toFixed(0)} s.`,
    "",
  ].join("\n");
}

mkdirSync(values.out!, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const serviceLog = createWriteStream(join(values.out!, `chaos-${stamp}.log`));
const run = await runChaos(values.quick ? quickPlan : fullPlan, {
  onProgress: (line) => console.error(line),
  log: (line) => serviceLog.write(`${line}\n`),
});
serviceLog.end();
writeFileSync(join(values.out!, `chaos-${stamp}.json`), JSON.stringify(run, null, 2));
const markdown = renderChaosTable(run);
writeFileSync(join(values.out!, `chaos-${stamp}.md`), markdown);
console.log(markdown);
process.exit(run.results.some((r) => r.violations.length > 0) ? 1 : 0);
