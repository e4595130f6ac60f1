/**
 * End to end, side by side in one run: orders per second through the gateway with the full
 * saga (order, inventory and payment services, outbox, JetStream, notification consumer),
 * against the monolith baseline (bench/monolith: the same use cases and outcomes, one
 * process, one transaction per order, done with the same care: short row locks, prepared
 * statements). The mesh runs as `npm start` runs it (the scratch mesh: durable Postgres,
 * mTLS, authorization, a role and a NATS user per service); the monolith sits on the same
 * Postgres server, in a database of its own. Both are driven by the same load generator
 * (tools/load/load-runner.ts, the code behind `npm run load`).
 *
 * Per round and side: peak = closed loop at a fixed concurrency, over which CPU per order is
 * read from /proc for every process of that side (see sideCpuMs); then an open loop at half
 * that peak, whose order latency (accept to terminal) gives p50 and p99. Rounds alternate
 * mesh and monolith; medians are reported.
 * Run: npx tsx bench/end-to-end.ts [rounds=3] [seconds=10] [concurrency=32]
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { resolve } from "node:path";
import postgres from "postgres";
import { startScratchMesh } from "#tools/mesh/scratch-mesh.js";
import { meshServiceNames } from "#mesh";
import { runLoad, type LoadReport } from "#tools/load/load-runner.js";
import { descendantPids, processCpuMs } from "./process-cpu.js";
import { commandLine, median, progress, quick, targetLine } from "./report.js";

const defaults = quick ? [1, 4, 16] : [3, 10, 32];
const [rounds, seconds, concurrency] = defaults.map((fallback, i) => Number(process.argv[2 + i] ?? fallback)) as [number, number, number];
const mix = { good: 8, declined: 1, outOfStock: 1 };
const warmUpSeconds = quick ? 2 : 5;

const monolithDatabase = "monolith";
/** Units given to every plentiful product before the rounds, so no run drains one and orders keep spreading over the same rows. */
const STOCK_PER_PRODUCT = 10_000_000;

const databaseUrl = (base: string, database: string) => Object.assign(new URL(base), { pathname: `/${database}` }).toString();

/** The monolith in a process of its own, as the mesh's services are, on a database of its own. */
async function startMonolith(meshDatabaseUrl: string) {
  const admin = postgres(meshDatabaseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${monolithDatabase}`);
  await admin.end();
  const child = spawn(process.execPath, ["--import", "tsx", resolve(import.meta.dirname, "monolith/main.ts"), databaseUrl(meshDatabaseUrl, monolithDatabase)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const ready = await new Promise<string>((done, fail) => {
    createInterface({ input: child.stdout! }).on("line", (line) => line.startsWith("ready ") && done(line.slice(6)));
    child.once("exit", (code) => fail(new Error(`monolith exited (${code})`)));
  });
  return { url: ready, pid: child.pid!, stop: () => new Promise<void>((done) => (child.once("exit", () => done()), child.kill("SIGTERM"))) };
}

/**
 * Tops up every product the load generator counts as plentiful (more than 100 left), the same
 * on both sides, as an operator's AdjustStock would (its event is not written; nothing reads it).
 */
async function restock(url: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  await sql`update inventory.products set available = ${STOCK_PER_PRODUCT} where available > 100`;
  await sql.end();
}

interface Sample {
  peak: number;
  cpuMsPerOrder: number;
  halfPeakP50: number;
  halfPeakP99: number;
}

// The gateway's per-client limits guard a public API; here they would cap the load generator.
const mesh = await startScratchMesh({ env: { RATE_LIMIT_PER_SECOND: "100000", RATE_LIMIT_BURST: "100000", WATCH_MAX_PER_CUSTOMER: "100000", WATCH_MAX_PER_ADDRESS: "100000" } });
const monolith = await startMonolith(mesh.databaseUrl).catch(async (err: unknown) => {
  await mesh.stop();
  throw err;
});
const sides = { mesh: mesh.url("gateway"), monolith: monolith.url };
type Side = keyof typeof sides;
const admin = postgres(mesh.databaseUrl, { max: 1, onnotice: () => {} });

/** nats-server, the scratch mesh's child: found once by its command line, as it is never restarted here. */
const natsServerPid = descendantPids().find((pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("nats-server");
  } catch {
    return false;
  }
});

/**
 * CPU so far, in ms, of every process that works for a side, by pid: the mesh's services and
 * nats-server, or the monolith's process; the Postgres backends connected to that side's
 * database; and Postgres's own processes (WAL writer, checkpointer, background writer,
 * autovacuum launcher), charged to whichever side is loading, as the other one is idle then.
 * Backends are listed afresh each time, since pools may open new ones.
 */
async function sideCpuMs(side: Side): Promise<Map<number, number>> {
  const backends = await admin<{ pid: number; datname: string | null }[]>`select pid, datname from pg_stat_activity where pid <> pg_backend_pid()`;
  const postgresPids = backends.filter((b) => b.datname === null || (b.datname === monolithDatabase) === (side === "monolith")).map((b) => b.pid);
  const own = side === "mesh" ? [...meshServiceNames.map((name) => mesh.pid(name)), natsServerPid] : [monolith.pid];
  const pids = [...own, ...postgresPids].filter((pid): pid is number => pid !== undefined);
  return new Map(pids.map((pid) => [pid, processCpuMs(pid)]));
}

/** CPU used between two samples; a process born in between counts from 0. */
const cpuBetween = (before: Map<number, number>, after: Map<number, number>) => [...after].reduce((sum, [pid, ms]) => sum + ms - (before.get(pid) ?? 0), 0);

async function measure(side: Side): Promise<Sample> {
  const gatewayUrl = sides[side];
  const checked = (report: LoadReport) => {
    if (!report.invariants.ok || Object.keys(report.errors).length > 0) {
      throw new Error(`${side}: ${JSON.stringify({ errors: report.errors, invariants: report.invariants })}`);
    }
    return report;
  };
  const cpuBefore = await sideCpuMs(side);
  const peak = checked(await runLoad({ gatewayUrl, durationMs: seconds * 1000, concurrency, mix }));
  const cpuMsPerOrder = cpuBetween(cpuBefore, await sideCpuMs(side)) / peak.placed;
  const half = checked(await runLoad({ gatewayUrl, durationMs: seconds * 1000, ratePerSecond: peak.ordersPerSecond / 2, mix }));
  progress(
    `${side}: peak ${peak.ordersPerSecond.toFixed(1)} orders/s, ${cpuMsPerOrder.toFixed(1)} ms CPU per order; at half peak p50 ${half.terminalMs.p50.toFixed(0)} ms, p99 ${half.terminalMs.p99.toFixed(0)} ms`,
  );
  return { peak: peak.ordersPerSecond, cpuMsPerOrder, halfPeakP50: half.terminalMs.p50, halfPeakP99: half.terminalMs.p99 };
}

const samples: Record<Side, Sample[]> = { mesh: [], monolith: [] };
try {
  await Promise.all([restock(mesh.databaseUrl), restock(databaseUrl(mesh.databaseUrl, monolithDatabase))]);
  // JIT, pools and prepared statements warm on each side before anything is measured.
  for (const side of ["mesh", "monolith"] as const) await runLoad({ gatewayUrl: sides[side], durationMs: warmUpSeconds * 1000, concurrency, mix });
  for (let round = 1; round <= rounds; round++) {
    for (const side of ["mesh", "monolith"] as const) samples[side].push(await measure(side));
    progress(`round ${round}/${rounds} done`);
  }
} finally {
  await admin.end();
  await monolith.stop();
  await mesh.stop();
}

const summary = (side: Side) => ({
  peak: median(samples[side].map((s) => s.peak)),
  cpu: median(samples[side].map((s) => s.cpuMsPerOrder)),
  p50: median(samples[side].map((s) => s.halfPeakP50)),
  p99: median(samples[side].map((s) => s.halfPeakP99)),
});
const [m, b] = [summary("mesh"), summary("monolith")];
const row = (label: string, x: ReturnType<typeof summary>) =>
  `| ${label} | ${x.peak.toFixed(1)} | ${x.cpu.toFixed(1)} | ${x.p50.toFixed(0)} | ${x.p99.toFixed(0)} | ${(x.p99 / x.p50).toFixed(1)} |`;
console.log(`## End to end: mesh against a monolith baseline

\`${commandLine("bench/end-to-end.ts", [rounds, seconds, concurrency])}\`: ${rounds} alternating rounds of ${seconds} s per measurement, after ${warmUpSeconds} s of warm-up per side,
order mix good:declined:out-of-stock ${mix.good}:${mix.declined}:${mix.outOfStock}, the load generator of \`npm run load\`. Peak is a closed
loop of ${concurrency} orders in flight; latency is accept to terminal, in an open loop at half that peak. The mesh runs as
\`npm start\` runs it (durable Postgres, mTLS, authorization, a role and a NATS user per service); the monolith shares its
Postgres server (fsync and synchronous_commit on), in a database of its own, and both start each run with the same stock.
Every measurement ended with the load generator's invariant check passing and no errors.

| side | peak orders/s (median) | CPU ms per order at peak | p50 ms at half peak | p99 ms at half peak | p99 / p50 |
|---|---|---|---|---|---|
${row("mesh (gateway, 3 services + notification, saga, outbox, JetStream)", m)}
${row("monolith (same use cases and outcomes, one transaction per order)", b)}

CPU per order is read from /proc over the peak run, for every process working for that side: the
mesh's services, nats-server and its Postgres backends; the monolith's process and its Postgres
backends; and on both, Postgres's own processes (WAL writer, checkpointer…), charged to the side
that is loading. It includes the load generator's invariant check after each run (one
GetOrderDetails per order), as bench/cost-per-order.ts does, which breaks the mesh's figure down by
process and counts its SQL statements. The load generator itself is not counted.

The monolith is the honest "one process, one database transaction per order" design done well: it
reads the catalog and charges the card before its transaction, then writes the order, its lines, the
payment and the notification, and takes the product rows last (one conditional UPDATE per line, in
SKU order), so a row lock lasts that statement and the COMMIT; its statements are prepared
(postgres.js, fixed texts). It has none of the saga's artifacts (reservations held between steps,
outboxes, relays, inboxes) and no RPC hops: what it lacks is what distribution costs.

${targetLine("mesh/monolith peak ≥ 0.50", m.peak / b.peak, 0.5)}
Mesh/monolith CPU per order: ${(m.cpu / b.cpu).toFixed(1)} × (${m.cpu.toFixed(1)} against ${b.cpu.toFixed(1)} ms)
${m.p99 / m.p50 <= 5 ? "Target: mesh p99 ≤ 5 × p50 at half peak — met" : "Target: mesh p99 ≤ 5 × p50 at half peak — missed"} (${(m.p99 / m.p50).toFixed(1)} ×)
`);
process.exit(0);
