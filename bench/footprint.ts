/**
 * Footprint: how long `npm start` takes until every service reports SERVING, each
 * service's resident memory idle and under load, and each table's size and rows after the
 * load (pg_total_relation_size: heap, indexes and TOAST), with bytes per order placed, so
 * what grows without bound shows, and what the retention sweep keeps in check.
 *
 * The mesh runs twice, one runtime after the other, so the two sit side by side: from its
 * sources under the tsx loader (`npm start`, the edit loop), then compiled as the image runs
 * it (`NODE_ENV=production npm start`: `node --max-semi-space-size=4 dist/run-service.js <name>`, dist/ built first
 * if stale). Each run gets a Postgres and a nats-server of its own; the tables are the compiled run's.
 *
 * `npm start` runs for real, as a newcomer runs it, but on free ports and pointed (through
 * DATABASE_URL and NATS_URL) at a Postgres and a nats-server this script starts in a scratch
 * directory, so it never touches a developer's database or broker; it does issue its
 * certificates into `.data/pki` and write `.data/mesh.json`, as every `npm start` does. The
 * scratch nats-server has no users (NATS_URL given by hand is used as given by every
 * process), which costs nothing measurable here. Their own start-up times are reported too:
 * they are what `npm start` adds when it has to start them itself.
 * Run: npx tsx bench/footprint.ts [load-seconds=15]
 */
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import postgres from "postgres";
import { startLocalNats } from "#tools/infra/local-nats.js";
import { repoRoot } from "#tools/mesh/local-infra.js";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { meshOnFreePorts, portEnv, type MeshService } from "#tools/mesh/topology.js";
import { ensureBuilt, launchArgs, meshRuntime, type MeshRuntime } from "#tools/mesh/runtime.js";
import { meshServiceNames } from "#mesh";
import { freePort } from "#tools/infra/tcp.js";
import { compiledNodeFlags } from "#deploy/bundle-layout.js";
import { runLoad } from "#tools/load/load-runner.js";
import { descendantPids } from "./process-cpu.js";
import { commandLine, progress, quick } from "./report.js";

const loadSeconds = Number(process.argv[2] ?? (quick ? 5 : 15));
/** The goal of issue 13 for the compiled runtime. */
const idleGoalMiB = 90;
const scratch = mkdtempSync(join(tmpdir(), "meshwork-footprint-"));
const timed = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
  const started = performance.now();
  return [await work(), performance.now() - started];
};

/** Resident set size in MiB, from /proc (Linux). */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

/** The service processes under `npm start`: its descendants, keyed by the command line that starts each under `runtime`. */
function servicePids(rootPid: number, services: readonly MeshService[], runtime: MeshRuntime): Map<string, number> {
  const found = new Map<string, number>();
  for (const pid of descendantPids(rootPid)) {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const service = services.find((s) => cmdline.includes(launchArgs(s, runtime).join("\0")));
    if (service) found.set(service.name, pid);
  }
  return found;
}

type Table = { table: string; bytes: number; rows: number };

/** Every table of the services' schemas, its total size and its exact row count. */
async function tableSizes(url: string): Promise<Table[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const found = await sql<{ schema: string; name: string; bytes: string }[]>`
      select schemaname as schema, relname as name, pg_total_relation_size(relid)::text as bytes from pg_stat_user_tables
      where relname <> '__drizzle_migrations' order by pg_total_relation_size(relid) desc`;
    const sized = [];
    for (const { schema, name, bytes } of found) {
      const [counted] = await sql<{ n: string }[]>`select count(*)::text as n from ${sql(`${schema}.${name}`)}`;
      sized.push({ table: `${schema}.${name}`, bytes: Number(bytes), rows: Number(counted?.n ?? 0) });
    }
    return sized;
  } finally {
    await sql.end();
  }
}

interface Run {
  upMs: number;
  pgStartMs: number;
  natsStartMs: number;
  rss: Map<string, { idle: number; load: number }>;
  ordersPerSecond: number;
  placed: number;
  tables: Table[];
}

/** `npm start` under `runtime`, with a Postgres and a nats-server of its own: start-up, memory idle and under load, tables. */
async function measure(runtime: MeshRuntime): Promise<Run> {
  const [pg, pgStartMs] = await timed(async () => startLocalPostgres({ dataDir: join(scratch, `pg-${runtime.kind}`), port: await freePort(), superuserPassword: randomBytes(18).toString("base64url") }));
  const [nats, natsStartMs] = await timed(async () => startLocalNats({ port: await freePort(), storeDir: join(scratch, `nats-${runtime.kind}`) }));
  const services = await meshOnFreePorts();
  const gateway = services.find((s) => s.name === "gateway")!;
  const env: NodeJS.ProcessEnv = { ...process.env, ...portEnv(services), DATABASE_URL: pg.url, NATS_URL: nats.url, LOG_LEVEL: "warn", RATE_LIMIT_PER_SECOND: "100000", RATE_LIMIT_BURST: "100000", WATCH_MAX_PER_CUSTOMER: "100000", WATCH_MAX_PER_ADDRESS: "100000" };
  delete env["NODE_ENV"];
  if (runtime.kind === "compiled") env["NODE_ENV"] = "production";
  const started = performance.now();
  const npmStart = spawn("npm", ["start"], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "inherit"], detached: true });
  try {
    const upMs = await new Promise<number>((done, fail) => {
      createInterface({ input: npmStart.stdout! }).on("line", (line) => line.includes("Meshwork is up") && done(performance.now() - started));
      npmStart.once("exit", (code) => fail(new Error(`npm start exited (${code})`)));
    });
    progress(`${runtime.kind}: npm start: all SERVING after ${(upMs / 1000).toFixed(1)} s`);
    await new Promise((resolve) => setTimeout(resolve, 10_000)); // let start-up garbage be collected
    const pids = servicePids(npmStart.pid!, services, runtime);
    if (pids.size !== services.length) throw new Error(`found ${pids.size} of the ${services.length} service processes under npm start`);
    const rss = new Map([...pids].map(([name, pid]) => [name, { idle: rssMiB(pid), load: 0 }]));
    const sampler = setInterval(() => {
      for (const [name, pid] of pids) rss.get(name)!.load = Math.max(rss.get(name)!.load, rssMiB(pid));
    }, 250);
    const report = await runLoad({ gatewayUrl: `http://127.0.0.1:${gateway.port}`, durationMs: loadSeconds * 1000, concurrency: 16, mix: { good: 8, declined: 1, outOfStock: 1 } });
    clearInterval(sampler);
    progress(`${runtime.kind}: under load: ${report.ordersPerSecond.toFixed(1)} orders/s`);
    return { upMs, pgStartMs, natsStartMs, rss, ordersPerSecond: report.ordersPerSecond, placed: report.placed, tables: await tableSizes(pg.url) };
  } finally {
    if (npmStart.exitCode === null && npmStart.signalCode === null) {
      process.kill(-npmStart.pid!, "SIGINT"); // as Ctrl-C: the supervisor stops the services
      await new Promise((resolve) => npmStart.once("exit", resolve));
    }
    await nats.stop();
    await pg.stop();
  }
}

const sources = meshRuntime({});
const compiled = meshRuntime({ NODE_ENV: "production" });
let tsxRun: Run;
let compiledRun: Run;
try {
  tsxRun = await measure(sources);
  await ensureBuilt(compiled, progress); // just before its run, so no edit in between makes it stale
  compiledRun = await measure(compiled);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const mib = (n: number) => n.toFixed(0);
const total = (run: Run, key: "idle" | "load") => [...run.rss.values()].reduce((sum, r) => sum + r[key], 0);
const cell = (run: Run, name: string, key: "idle" | "load") => mib(run.rss.get(name)?.[key] ?? 0);
const worstIdle = Math.max(...[...compiledRun.rss.values()].map((r) => r.idle));
const { placed, tables } = compiledRun;
console.log(`## Footprint

\`${commandLine("bench/footprint.ts", [loadSeconds])}\`. The mesh runs twice: from its sources under the tsx loader (\`npm start\`),
then compiled as the image runs it (\`NODE_ENV=production npm start\`: \`node ${compiledNodeFlags.join(" ")} dist/run-service.js <name>\`), each with a
Postgres and a nats-server of its own. Start-up is wall time on this machine; memory is each service's resident set (VmRSS), idle 10 s
after start and the peak while ${loadSeconds} s of closed-loop load (16 orders in flight) ran.

| start-up | tsx s | compiled s |
|---|---|---|
| \`npm start\` until every service reports SERVING (Postgres and NATS given) | ${(tsxRun.upMs / 1000).toFixed(1)} | ${(compiledRun.upMs / 1000).toFixed(1)} |
| embedded Postgres, first start (initdb included) | ${(tsxRun.pgStartMs / 1000).toFixed(1)} | ${(compiledRun.pgStartMs / 1000).toFixed(1)} |
| nats-server with JetStream | ${(tsxRun.natsStartMs / 1000).toFixed(1)} | ${(compiledRun.natsStartMs / 1000).toFixed(1)} |

| service | tsx idle RSS MiB | compiled idle RSS MiB | tsx under load RSS MiB | compiled under load RSS MiB |
|---|---|---|---|---|
${meshServiceNames.map((name) => `| ${name} | ${cell(tsxRun, name, "idle")} | ${cell(compiledRun, name, "idle")} | ${cell(tsxRun, name, "load")} | ${cell(compiledRun, name, "load")} |`).join("\n")}
| total | ${mib(total(tsxRun, "idle"))} | ${mib(total(compiledRun, "idle"))} | ${mib(total(tsxRun, "load"))} | ${mib(total(compiledRun, "load"))} |

Under load: ${tsxRun.ordersPerSecond.toFixed(1)} orders/s with tsx, ${compiledRun.ordersPerSecond.toFixed(1)} compiled.

Target: compiled idle RSS ≤ ${idleGoalMiB} MiB per service — ${worstIdle <= idleGoalMiB ? "met" : "missed"} (largest ${mib(worstIdle)})

Tables after the compiled run's load (${placed} orders placed): pg_total_relation_size (heap, indexes, TOAST) and exact rows, per order placed.

| table | size KiB | rows | bytes per order | rows per order |
|---|---|---|---|---|
${tables.map(({ table, bytes, rows }) => `| ${table} | ${(bytes / 1024).toFixed(0)} | ${rows} | ${placed ? (bytes / placed).toFixed(0) : "-"} | ${placed ? (rows / placed).toFixed(2) : "-"} |`).join("\n")}
| total | ${(tables.reduce((sum, t) => sum + t.bytes, 0) / 1024).toFixed(0)} | ${tables.reduce((sum, t) => sum + t.rows, 0)} | ${placed ? (tables.reduce((sum, t) => sum + t.bytes, 0) / placed).toFixed(0) : "-"} | |
`);
process.exit(0);
