/**
 * Cost per order: CPU of every mesh process (services, Postgres, nats-server) read from
 * /proc, and SQL statements and transactions per service from pg_stat_statements, divided by
 * the orders placed in a closed loop through the gateway. The mesh runs as `npm start` runs
 * it: durable Postgres, mTLS, authorization and a role and NATS user per service (the scratch
 * mesh). The load generator runs in this process and its CPU is reported apart, not charged.
 * Run: npx tsx bench/cost-per-order.ts [seconds=20] [concurrency=24] [--profile DIR]
 *
 * With `--profile DIR` every service runs under `node --cpu-prof`, and writes its profile to
 * DIR when the mesh stops (warm-up and start-up included); open a .cpuprofile in Chrome's
 * DevTools (Performance) or speedscope to see where an order's CPU goes.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import postgres from "postgres";
import { startScratchMesh } from "#tools/mesh/scratch-mesh.js";
import { meshServiceNames } from "#mesh";
import { runLoad } from "#tools/load/load-runner.js";
import { descendantPids, processCpuMs } from "./process-cpu.js";
import { commandLine, progress, quick, targetLine } from "./report.js";

const profileFlag = process.argv.indexOf("--profile");
const profileDir = profileFlag > 0 ? resolve(process.argv[profileFlag + 1] ?? "profiles") : undefined;
const positional = profileFlag > 0 ? process.argv.slice(2, profileFlag) : process.argv.slice(2);
const [seconds, concurrency] = [Number(positional[0] ?? (quick ? 5 : 20)), Number(positional[1] ?? 24)];
if (profileDir) mkdirSync(profileDir, { recursive: true });
const mix = { good: 8, declined: 1, outOfStock: 1 };

const mesh = await startScratchMesh({
  ...(profileDir ? { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] } : {}),
  env: { LOG_LEVEL: "warn", RATE_LIMIT_PER_SECOND: "100000", RATE_LIMIT_BURST: "100000", WATCH_MAX_PER_CUSTOMER: "100000", WATCH_MAX_PER_ADDRESS: "100000" },
  postgresSettings: { shared_preload_libraries: "pg_stat_statements", "pg_stat_statements.track": "all" },
});
const sql = postgres(mesh.databaseUrl, { max: 1, onnotice: () => {} });

/**
 * Which mesh process a pid is, by its command line: a service's entry point, NATS, or Postgres,
 * split by whom it works for. A backend's title is `postgres: <role> <database> <client> <state>`,
 * and each service connects as its own role; the rest (WAL writer, checkpointer, autovacuum)
 * is Postgres's own.
 */
function processName(pid: number): string | undefined {
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return undefined;
  }
  for (const name of meshServiceNames) if (mesh.pid(name) === pid) return name;
  const role = /^postgres: (\S+) /.exec(cmdline)?.[1];
  if (role && (meshServiceNames as readonly string[]).includes(role)) return `postgres: ${role}'s connections`;
  if (/\/postgres\s/.test(cmdline) || cmdline.startsWith("postgres:")) return "postgres: its own processes";
  if (cmdline.includes("nats-server")) return "nats-server";
  return undefined;
}

/** CPU so far of every mesh process, summed by name; Postgres backends come and go, so each sample walks them all. */
function cpuByProcess(): Map<string, number> {
  const totals = new Map<string, number>();
  for (const pid of descendantPids()) {
    const name = processName(pid);
    if (name) totals.set(name, (totals.get(name) ?? 0) + processCpuMs(pid));
  }
  return totals;
}

try {
  await sql`create extension if not exists pg_stat_statements`;
  progress("warming up");
  await runLoad({ gatewayUrl: mesh.url("gateway"), durationMs: 5_000, concurrency, mix });
  await sql`select pg_stat_statements_reset()`;
  const before = cpuByProcess();
  const selfBefore = process.cpuUsage();
  progress(`measuring: ${seconds} s, ${concurrency} in flight`);
  // The meters stop when the last order is terminal: the load's invariant check, which reads
  // every order back through the gateway, is not an order's cost.
  let after = before;
  let self = process.cpuUsage(selfBefore);
  let statements: { role: string; calls: number; nested: number; transactions: number }[] = [];
  let top: { role: string; calls: number; query: string }[] = [];
  const report = await runLoad({
    gatewayUrl: mesh.url("gateway"),
    durationMs: seconds * 1000,
    concurrency,
    mix,
    async onLoadEnd() {
      after = cpuByProcess();
      self = process.cpuUsage(selfBefore);
      // Each service's role is named after it. A transaction is a BEGIN; statements are what a
      // service sends but BEGIN, COMMIT and ROLLBACK, as a reader counts the work. Postgres's own
      // statements inside them (the foreign-key checks its triggers run) are counted apart.
      statements = await sql`
        select r.rolname as role,
          coalesce(sum(s.calls) filter (where s.toplevel and s.query !~* '^[[:space:]]*(begin|commit|rollback)'), 0)::int as calls,
          coalesce(sum(s.calls) filter (where not s.toplevel), 0)::int as nested,
          coalesce(sum(s.calls) filter (where s.toplevel and s.query ~* '^[[:space:]]*begin'), 0)::int as transactions
        from pg_stat_statements s join pg_roles r on r.oid = s.userid
        where r.rolname = any(${[...meshServiceNames]})
        group by r.rolname`;
      // The statements behind the totals, most frequent first: where a change to the data path shows.
      top = await sql`
        select r.rolname as role, s.calls::int as calls, regexp_replace(s.query, '[[:space:]]+', ' ', 'g') as query
        from pg_stat_statements s join pg_roles r on r.oid = s.userid
        where r.rolname = any(${[...meshServiceNames]}) and s.toplevel and s.query !~* '^[[:space:]]*(commit|rollback)'
        order by s.calls desc limit 20`;
    },
  });
  const orders = report.placed;
  if (!report.invariants.ok || orders === 0) throw new Error(`the load failed its invariant check or placed nothing: ${JSON.stringify(report.invariants)}`);
  const names = [...meshServiceNames, ...meshServiceNames.map((name) => `postgres: ${name}'s connections`), "postgres: its own processes", "nats-server"];
  const cpu = new Map(names.map((name) => [name, ((after.get(name) ?? 0) - (before.get(name) ?? 0)) / orders]));
  const total = [...cpu.values()].reduce((a, b) => a + b, 0);
  const statementsPerOrder = statements.reduce((sum, row) => sum + row.calls, 0) / orders;
  const nestedPerOrder = statements.reduce((sum, row) => sum + row.nested, 0) / orders;

  console.log(`## Cost per order\n`);
  console.log(`\`${commandLine("bench/cost-per-order.ts", [seconds, concurrency])}\`: a closed loop of ${concurrency} orders in flight through the gateway for ${seconds} s`);
  console.log(`(mix 8:1:1), after 5 s of warm-up, metered until the last order is terminal (the load's check that reads every order back is not counted), on a scratch mesh as \`npm start\` runs it: durable Postgres, mTLS, authorization, a role and a NATS user per service.`);
  console.log(`${orders} orders placed, ${report.ordersPerSecond.toFixed(1)} orders/s, accept p50 ${report.acceptMs.p50.toFixed(0)} ms; every invariant held.\n`);
  console.log(`| process | CPU ms per order | SQL statements per order | transactions (BEGIN) per order |`);
  console.log(`|---|---|---|---|`);
  for (const name of names) {
    if (name.endsWith("'s connections") && cpu.get(name) === 0) continue; // the gateway has no database
    const row = statements.find((r) => r.role === name);
    console.log(`| ${name} | ${cpu.get(name)!.toFixed(1)} | ${row ? (row.calls / orders).toFixed(1) : "-"} | ${row ? (row.transactions / orders).toFixed(1) : "-"} |`);
  }
  console.log(`| **whole mesh** | **${total.toFixed(1)}** | **${statementsPerOrder.toFixed(1)}** | |`);
  console.log(`\nBesides these, Postgres ran ${nestedPerOrder.toFixed(1)} statements per order inside them: the foreign-key checks of its triggers.`);
  console.log(`\n<details><summary>The most frequent statements, per order</summary>\n`);
  console.log(`| role | per order | statement (first 140 characters) |`);
  console.log(`|---|---|---|`);
  for (const row of top) console.log(`| ${row.role} | ${(row.calls / orders).toFixed(2)} | \`${row.query.slice(0, 140).replaceAll("|", "\\|")}\` |`);
  console.log(`\n</details>`);
  console.log(`\nThe load generator, in this process, used ${((self.user + self.system) / 1000 / orders).toFixed(1)} ms per order, not counted above.\n`);
  console.log(targetLine("CPU per order ≤ 25 ms (shown as 25 / measured)", 25 / total, 1));
  console.log(targetLine("SQL statements per order ≤ 30 (shown as 30 / measured)", 30 / statementsPerOrder, 1));
} finally {
  await sql.end({ timeout: 5 });
  await mesh.stop();
}
