/**
 * How promptly the outbox relay picks up a committed event: LISTEN/NOTIFY (with a 1 s
 * fallback poll) against polling alone every 50 ms, side by side on the same Postgres and
 * nats-server. Latency is commit to PubAck-confirmed (published_at - created_at). The relay
 * connects as a role of its own, so pg_stat_statements counts its statements (BEGIN and
 * COMMIT included) apart from the writers': statements per event at a trickle, where each
 * wake-up finds one event, is what the relay costs Postgres in a service under light load.
 * Run: npx tsx bench/outbox-latency.ts [events=300, 60 with BENCH_QUICK=1]
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import postgres from "postgres";
import { pino } from "pino";
import { OrderConfirmedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import { connectBus } from "#platform/messaging/connection.js";
import { startOutboxRelay } from "#platform/messaging/outbox-relay.js";
import { eventStream } from "#shop/streams.js";
import { startLocalNats } from "#tools/infra/local-nats.js";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { freePort } from "#tools/infra/tcp.js";
import { appendToOutbox, createOutboxTable } from "#platform/messaging/outbox.js";
import { commandLine, progress, quick } from "./report.js";

const events = Number(process.argv[2] ?? (quick ? 60 : 300));
const scratch = mkdtempSync(join(tmpdir(), "meshwork-bench-"));
const pg = await startLocalPostgres({
  dataDir: join(scratch, "pg"),
  port: await freePort(),
  superuserPassword: randomBytes(18).toString("base64url"),
  settings: { shared_preload_libraries: "pg_stat_statements", "pg_stat_statements.track": "all" },
});
const nats = await startLocalNats({ port: await freePort(), storeDir: join(scratch, "nats") });
const logger = pino({ level: "silent" });
const sql = postgres(pg.url, { max: 4, onnotice: () => {} });
const RELAY_ROLE = "bench_relay";
const relayPassword = randomBytes(18).toString("base64url");
await sql`create extension if not exists pg_stat_statements`;
await sql.unsafe(`create role ${RELAY_ROLE} login superuser password '${relayPassword}'`);
const relayUrl = new URL(pg.url);
relayUrl.username = RELAY_ROLE;
relayUrl.password = relayPassword;

/** Statements the relay's role has run since the last reset, BEGIN and COMMIT included. */
async function relayStatements(): Promise<number> {
  const [row] = await sql`select coalesce(sum(s.calls), 0)::int as n from pg_stat_statements s join pg_roles r on r.oid = s.userid where r.rolname = ${RELAY_ROLE}`;
  return Number(row?.["n"] ?? 0);
}

async function measure(mode: "notify" | "poll"): Promise<{ latencies: number[]; statementsPerEvent: number }> {
  const schemaName = `bench_${mode}`;
  const schema = pgSchema(schemaName);
  const outbox = createOutboxTable(schema);
  for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, outbox }))) await sql.unsafe(statement);
  const db = drizzle(sql);
  const relaySql = postgres(relayUrl.toString(), { max: 2, onnotice: () => {} });
  drizzle(relaySql); // as in a service, whose drizzle instance shares the relay's client
  const bus = connectBus({ url: nats.url, name: schemaName, logger });
  const relay = startOutboxRelay({ sql: relaySql, outbox, schemaName, stream: eventStream("order"), source: "bench", bus, logger, pollMs: mode === "notify" ? 1_000 : 50, listen: mode === "notify" });
  await bus.ready;
  await new Promise((resolve) => setTimeout(resolve, 500));
  await sql`select pg_stat_statements_reset()`;
  for (let i = 0; i < events; i++) {
    await db.transaction((tx) => appendToOutbox(tx, outbox, [{ schema: OrderConfirmedSchema, message: create(OrderConfirmedSchema, { orderId: `o${i}` }), aggregateType: "order", aggregateId: `o${i}` }]));
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 10)); // arrivals spread like real traffic
  }
  for (;;) {
    const [row] = await sql.unsafe(`select count(*)::int as n from ${schemaName}.outbox where published_at is null`);
    if (row?.["n"] === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const statements = await relayStatements();
  const rows = await sql.unsafe(`select extract(epoch from (published_at - created_at)) * 1000 as ms from ${schemaName}.outbox`);
  await relay.stop();
  await bus.close();
  await relaySql.end();
  return { latencies: rows.map((r) => Number(r["ms"])).sort((a, b) => a - b), statementsPerEvent: statements / events };
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
try {
  const results = { notify: await measure("notify"), poll: await measure("poll") };
  progress("outbox-latency: done");
  console.log("## Outbox relay wake-up\n");
  console.log(`\`${commandLine("bench/outbox-latency.ts", [events])}\`: ${events} single-event transactions per wake-up mode, arriving every 5–15 ms; latency from commit to PubAck (published_at - created_at).\n`);
  console.log("| wake-up | p50 ms | p90 ms | p99 ms | max ms | relay statements per event |\n|---|---|---|---|---|---|");
  for (const [mode, { latencies, statementsPerEvent }] of Object.entries(results)) {
    console.log(`| ${mode === "notify" ? "LISTEN/NOTIFY (1 s fallback poll)" : "poll every 50 ms"} | ${[50, 90, 99, 100].map((p) => pct(latencies, p).toFixed(1)).join(" | ")} | ${statementsPerEvent.toFixed(1)} |`);
  }
  console.log("\nTarget: none set by issue 6 for wake-up latency; shown so a change to the relay's waking can be judged.");
} finally {
  await sql.end();
  await nats.stop();
  await pg.stop();
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(0);
