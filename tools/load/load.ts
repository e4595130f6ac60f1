/**
 * `npm run load -- [options]`: places orders through the gateway and reports how the mesh
 * held up. Each order is placed, then followed to a terminal state (WatchOrder).
 *
 *   --gateway URL        default http://127.0.0.1:8080 (what `npm start` runs)
 *   --rate N             orders started per second (open loop), or
 *   --concurrency N      orders in flight at once (closed loop); default concurrency 8
 *   --duration S         seconds of load, default 20
 *   --mix G:D:O[:T]      weights of good, declined, out-of-stock and tok_3ds orders, default 8:1:1:0;
 *                        half the tok_3ds ones are confirmed, half left to time out, so give
 *                        T only against a mesh whose order runs with a THREE_DS_TIMEOUT_MS of
 *                        seconds (npm start keeps the 10-minute default)
 *   --out DIR            where results go, default bench/results
 *
 * Only 127.0.0.1 is a sensible target here. Results: a progress line while it runs; at the
 * end throughput, accept and terminal latency percentiles, errors by code, and an invariant
 * check through the public API (every order terminal, charges match confirmed orders,
 * stock conserved), written as JSON and a markdown table.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { deployable } from "#mesh";
import { runLoad, renderMarkdown } from "./load-runner.js";

const { values } = parseArgs({
  options: {
    gateway: { type: "string", default: `http://127.0.0.1:${deployable("gateway").port.default}` },
    rate: { type: "string" },
    concurrency: { type: "string" },
    duration: { type: "string", default: "20" },
    mix: { type: "string", default: "8:1:1" },
    out: { type: "string", default: resolve(import.meta.dirname, "../../bench/results") },
  },
});
const [good = 8, declined = 1, outOfStock = 1, threeDs = 0] = values.mix!.split(":").map(Number);
const report = await runLoad({
  gatewayUrl: values.gateway!,
  durationMs: Number(values.duration) * 1000,
  ...(values.rate ? { ratePerSecond: Number(values.rate) } : { concurrency: Number(values.concurrency ?? 8) }),
  mix: { good, declined, outOfStock, threeDs },
  onProgress: (line) => process.stdout.write(`\r${line}   `),
});
process.stdout.write("\n");
mkdirSync(values.out!, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
writeFileSync(join(values.out!, `load-${stamp}.json`), JSON.stringify(report, null, 2));
const markdown = renderMarkdown(report);
writeFileSync(join(values.out!, `load-${stamp}.md`), markdown);
console.log(markdown);
process.exit(report.invariants.ok ? 0 : 1);
