/**
 * How promptly the outbox relay picks up a committed event: LISTEN/NOTIFY (with a 1 s
 * fallback poll) against polling alone every 50 ms, side by side on the same Postgres and
 * nats-server. Latency is commit to PubAck-confirmed (published_at - created_at).
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
import { OrderConfirmedSchema } from "../gen/shop/order/v1/order_events_pb.js";
import { connectBus } from "../services/platform/bus/connection.js";
import { startOutboxRelay } from "../services/platform/bus/outbox-relay.js";
import { eventStream } from "../services/platform/bus/streams.js";
import { startLocalNats } from "../services/platform/dev/local-nats.js";
import { startLocalPostgres } from "../services/platform/dev/local-postgres.js";
import { freePort } from "../services/platform/dev/tcp.js";
import { appendToOutbox, createOutboxTable } from "../services/platform/outbox.js";
import { commandLine, progress, quick } from "./report.js";

const events = Number(process.argv[2] ?? (quick ? 60 : 300));
const scratch = mkdtempSync(join(tmpdir(), "meshwork-bench-"));
const pg = await startLocalPostgres({ dataDir: join(scratch, "pg"), port: await freePort(), superuserPassword: randomBytes(18).toString("base64url") });
const nats = await startLocalNats({ port: await freePort(), storeDir: join(scratch, "nats") });
const logger = pino({ level: "silent" });
const sql = postgres(pg.url, { max: 4, onnotice: () => {} });

async function measure(mode: "notify" | "poll"): Promise<number[]> {
  const schemaName = `bench_${mode}`;
  const schema = pgSchema(schemaName);
  const outbox = createOutboxTable(schema);
  for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, outbox }))) await sql.unsafe(statement);
  const db = drizzle(sql);
  const bus = connectBus({ url: nats.url, name: schemaName, logger });
  const relay = startOutboxRelay({ sql, outbox, schemaName, stream: eventStream("order"), source: "bench", bus, logger, pollMs: mode === "notify" ? 1_000 : 50, listen: mode === "notify" });
  await bus.ready;
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (let i = 0; i < events; i++) {
    await db.transaction((tx) => appendToOutbox(tx, outbox, [{ schema: OrderConfirmedSchema, message: create(OrderConfirmedSchema, { orderId: `o${i}` }), aggregateType: "order", aggregateId: `o${i}` }]));
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 10)); // arrivals spread like real traffic
  }
  for (;;) {
    const [row] = await sql.unsafe(`select count(*)::int as n from ${schemaName}.outbox where published_at is null`);
    if (row?.["n"] === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const rows = await sql.unsafe(`select extract(epoch from (published_at - created_at)) * 1000 as ms from ${schemaName}.outbox`);
  await relay.stop();
  await bus.close();
  return rows.map((r) => Number(r["ms"])).sort((a, b) => a - b);
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
try {
  const results = { notify: await measure("notify"), poll: await measure("poll") };
  progress("outbox-latency: done");
  console.log("## Outbox relay wake-up\n");
  console.log(`\`${commandLine("bench/outbox-latency.ts", [events])}\`: ${events} single-event transactions per wake-up mode, arriving every 5–15 ms; latency from commit to PubAck (published_at - created_at).\n`);
  console.log("| wake-up | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|");
  for (const [mode, sorted] of Object.entries(results)) {
    console.log(`| ${mode === "notify" ? "LISTEN/NOTIFY (1 s fallback poll)" : "poll every 50 ms"} | ${[50, 90, 99, 100].map((p) => pct(sorted, p).toFixed(1)).join(" | ")} |`);
  }
  console.log("\nTarget: none set by issue 6 for wake-up latency; shown so a change to the relay's waking can be judged.");
} finally {
  await sql.end();
  await nats.stop();
  await pg.stop();
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(0);
