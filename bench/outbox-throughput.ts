/**
 * Outbox relay throughput against raw windowed JetStream publishing of the same events, in
 * alternating rounds on one private Postgres and one private nats-server; medians and ratio.
 *
 * The events are realistic order traffic: each order emits OrderCreated and then
 * OrderConfirmed (or, one in ten, OrderCancelled), with 128 orders in flight at once, so an
 * order's two events sit about 250 rows apart in the outbox, as they interleave under load.
 * The events are written inside a span, as a service writes them inside its RPC's span, so
 * each row carries a traceparent; the tracer provider is registered as in a service.
 *
 *   relay  The events are committed in one transaction while the relay idles, then the real
 *          startOutboxRelay drains them. The clock runs from just before that COMMIT to the
 *          last row's published_at (each row is stamped only after its PubAck). One commit
 *          for all makes the backlog visible at once, so the figure is the relay's own rate
 *          (select, publish, PubAck, stamp) and not how fast writers can insert: the services
 *          pay for their inserts with or without a relay, and the raw side has none.
 *   raw    The same rows (subjects, payloads, headers, Nats-Msg-Id), read back from the
 *          outbox, published with `js.publish` keeping `window` in flight; the clock runs from
 *          the first publish to the last PubAck.
 *
 * Each side starts on a freshly created stream, so Nats-Msg-Id dedupe never drops an event
 * of the other side, and each round checks that the stream holds exactly every event.
 * Run: npx tsx bench/outbox-throughput.ts [events=30000, 3000 with BENCH_QUICK=1] [rounds=3] [window=256] [--profile DIR]
 *
 * With `--profile DIR` this process's CPU is profiled (node:inspector) over each side's
 * measured window only, from the COMMIT or first publish to the last PubAck, and written as
 * DIR/relay-<round>.cpuprofile and DIR/raw-<round>.cpuprofile; open one in Chrome's DevTools.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { create, type DescMessage } from "@bufbuild/protobuf";
import { context } from "@opentelemetry/api";
import { asc } from "drizzle-orm";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import postgres from "postgres";
import { pino } from "pino";
import { MoneySchema } from "#gen/shop/common/v1/money_pb.js";
import { OrderCancelledSchema, OrderConfirmedSchema, OrderCreatedSchema } from "#gen/shop/order/v1/order_events_pb.js";
import { OrderLineSchema } from "#gen/shop/order/v1/order_service_pb.js";
import { connectBus, type Bus } from "#platform/messaging/connection.js";
import { toHeaders } from "#platform/messaging/event-headers.js";
import { startOutboxRelay } from "#platform/messaging/outbox-relay.js";
import { ensureStream } from "#platform/messaging/streams.js";
import { eventStream } from "#shop/streams.js";
import { startLocalNats } from "#tools/infra/local-nats.js";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { freePort } from "#tools/infra/tcp.js";
import { appendToOutbox, createOutboxTable, type DomainEvent } from "#platform/messaging/outbox.js";
import { initTelemetry, SpanKind, withSpan } from "#platform/process/telemetry.js";
import { descendantsCpuMs, processCpuMs } from "./process-cpu.js";
import { commandLine, median, progress, quick, targetLine } from "./report.js";

const profileFlag = process.argv.indexOf("--profile");
const profileDir = profileFlag > 0 ? resolve(process.argv[profileFlag + 1] ?? "profiles") : undefined;
const positional = profileFlag > 0 ? process.argv.slice(2, profileFlag) : process.argv.slice(2);
const [events = quick ? 3_000 : 30_000, rounds = 3, window = 256] = positional.map(Number);
const ORDERS_IN_FLIGHT = 128;
const INSERT_CHUNK = 1_000; // rows per INSERT statement, well under Postgres's 65535 parameters
const schemaName = "bench_throughput";
const stream = eventStream("order");
const source = "bench-order";

/** Order events in the order a busy order service would write them; a fixed seed keeps runs alike. */
function orderTraffic(count: number): DomainEvent<DescMessage>[] {
  let seed = 42;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const money = (minorUnits: number) => create(MoneySchema, { currencyCode: "USD", minorUnits: BigInt(minorUnits) });
  const traffic: DomainEvent<DescMessage>[] = [];
  const awaitingOutcome: string[] = [];
  let nextOrder = 0;
  while (traffic.length < count) {
    const startNew = awaitingOutcome.length < ORDERS_IN_FLIGHT && traffic.length + awaitingOutcome.length < count;
    if (startNew) {
      const orderId = `order-${nextOrder++}`;
      const items = [create(OrderLineSchema, { sku: "SKU-1", name: "Widget", quantity: 2, unitPrice: money(1999), lineTotal: money(3998) })];
      traffic.push({ schema: OrderCreatedSchema, message: create(OrderCreatedSchema, { orderId, customerId: "customer-1", items, total: money(3998) }), aggregateType: "order", aggregateId: orderId });
      awaitingOutcome.push(orderId);
    } else {
      const [orderId] = awaitingOutcome.splice(Math.floor(random() * awaitingOutcome.length), 1) as [string];
      traffic.push(
        random() < 0.1
          ? { schema: OrderCancelledSchema, message: create(OrderCancelledSchema, { orderId, customerId: "customer-1", reason: "payment declined" }), aggregateType: "order", aggregateId: orderId }
          : { schema: OrderConfirmedSchema, message: create(OrderConfirmedSchema, { orderId, customerId: "customer-1", total: money(3998) }), aggregateType: "order", aggregateId: orderId },
      );
    }
  }
  return traffic;
}

const scratch = mkdtempSync(join(tmpdir(), "meshwork-bench-"));
const pg = await startLocalPostgres({ dataDir: join(scratch, "pg"), port: await freePort(), superuserPassword: randomBytes(18).toString("base64url") });
const nats = await startLocalNats({ port: await freePort(), storeDir: join(scratch, "nats") });
const natsPid = nats.process.pid!;
const telemetry = await initTelemetry({ serviceName: source });
const logger = pino({ level: "silent" });
const sql = postgres(pg.url, { max: 8, onnotice: () => {} });
const db = drizzle(sql);
const schema = pgSchema(schemaName);
const outbox = createOutboxTable(schema);
for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, outbox }))) await sql.unsafe(statement);
const traffic = orderTraffic(events);
const busConnection = connectBus({ url: nats.url, name: "bench-outbox-throughput", logger });
const bus = await busConnection.ready;

/** Deletes the stream if it is there, so a side starts with no stored Nats-Msg-Ids. */
async function dropStream(): Promise<void> {
  await bus.jsm.streams.delete(stream.name).catch(() => {});
}

async function expectStreamHoldsEveryEvent(): Promise<void> {
  const held = (await bus.jsm.streams.info(stream.name)).state.messages;
  if (held !== events) throw new Error(`stream holds ${held} events, expected ${events}`);
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Sample {
  eventsPerSecond: number;
  /** CPU per event in this process (the relay or the raw publisher), in µs. */
  benchCpuMicros: number;
  /** CPU per event in Postgres, in µs. */
  postgresCpuMicros: number;
  /** CPU per event in nats-server, in µs. */
  natsCpuMicros: number;
}

/** With --profile, starts this process's CPU profiler; the returned function writes the profile as DIR/<name>.cpuprofile. */
async function profiler(name: string): Promise<() => Promise<void>> {
  if (!profileDir) return async () => {};
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  return async () => {
    const { profile } = await session.post("Profiler.stop");
    session.disconnect();
    mkdirSync(profileDir, { recursive: true });
    writeFileSync(join(profileDir, `${name}.cpuprofile`), JSON.stringify(profile));
  };
}

/** Starts counting CPU; the returned function turns what was used since into per-event figures. */
function cpuMeter(): () => Omit<Sample, "eventsPerSecond"> {
  const bench = process.cpuUsage();
  const nats = processCpuMs(natsPid);
  const servers = descendantsCpuMs();
  return () => {
    const used = process.cpuUsage(bench);
    const natsMs = processCpuMs(natsPid) - nats;
    const postgresMs = descendantsCpuMs() - servers - natsMs; // every other child process is Postgres
    return { benchCpuMicros: (used.user + used.system) / events, postgresCpuMicros: (postgresMs * 1000) / events, natsCpuMicros: (natsMs * 1000) / events };
  };
}

/** Events per second from the COMMIT of the backlog to the last PubAck-stamped row. */
async function relayRound(round: number): Promise<Sample> {
  await dropStream();
  await sql.unsafe(`truncate ${schemaName}.outbox`);
  const relay = startOutboxRelay({ sql, outbox, schemaName, stream, source, bus: busConnection, logger });
  while (!(await bus.jsm.streams.info(stream.name).then(() => true, () => false))) await pause(20);
  await pause(300); // the relay has made its empty first round and sleeps until NOTIFY
  let committing = 0;
  await withSpan("bench write orders", SpanKind.SERVER, context.active(), {}, () =>
    db.transaction(async (tx) => {
      for (let i = 0; i < traffic.length; i += INSERT_CHUNK) await appendToOutbox(tx, outbox, traffic.slice(i, i + INSERT_CHUNK));
      committing = Date.now();
    }),
  );
  const cpu = cpuMeter();
  const profiled = await profiler(`relay-${round + 1}`);
  // Watched through the stream until every event is in, then Postgres until every row is stamped: a
  // query on pending rows walks the dead index entries of stamped ones, which would load Postgres while the relay works.
  while ((await bus.jsm.streams.info(stream.name)).state.messages < events) await pause(50);
  while ((await sql.unsafe(`select 1 from ${schemaName}.outbox where published_at is null limit 1`)).length > 0) await pause(20);
  const used = cpu();
  await profiled();
  await relay.stop();
  const [last] = await sql.unsafe(`select (extract(epoch from max(published_at)) * 1000)::float8 as ms from ${schemaName}.outbox`);
  await expectStreamHoldsEveryEvent();
  return { eventsPerSecond: events / ((Number(last?.["ms"]) - committing) / 1000), ...used };
}

/** Events per second publishing the stored rows with `window` publishes in flight, to the last PubAck. */
async function rawRound(round: number, rows: (typeof outbox.$inferSelect)[]): Promise<Sample> {
  await dropStream();
  await ensureStream(bus.jsm, stream);
  let next = 0;
  const profiled = await profiler(`raw-${round + 1}`);
  const cpu = cpuMeter();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (next < rows.length) {
        const row = rows[next++]!;
        await publishAsTheRelayDoes(bus, row);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = cpu();
  await profiled();
  await expectStreamHoldsEveryEvent();
  return { eventsPerSecond: events / seconds, ...used };
}

/** The same subject, payload and headers, including Nats-Msg-Id, that the relay sends for a row. */
function publishAsTheRelayDoes(bus: Bus, row: typeof outbox.$inferSelect) {
  return bus.js.publish(row.eventType, row.payload, {
    msgID: row.id,
    headers: toHeaders({ id: row.id, type: row.eventType, source, time: row.createdAt, extra: row.headers }),
  });
}

try {
  const samples: Record<"relay" | "raw", Sample[]> = { relay: [], raw: [] };
  for (let round = 0; round < rounds; round++) {
    samples.relay.push(await relayRound(round));
    samples.raw.push(await rawRound(round, await db.select().from(outbox).orderBy(asc(outbox.seq))));
    progress(`outbox-throughput: round ${round + 1}/${rounds}: relay ${samples.relay.at(-1)!.eventsPerSecond.toFixed(0)}/s, raw ${samples.raw.at(-1)!.eventsPerSecond.toFixed(0)}/s`);
  }
  const medianOf = (side: Sample[], measure: keyof Sample) => median(side.map((sample) => sample[measure]));
  const orders = new Set(traffic.map((event) => event.aggregateId)).size;
  console.log("## Outbox relay throughput\n");
  console.log(
    `\`${commandLine("bench/outbox-throughput.ts", [events, rounds, window])}\`: ${events} events of ${orders} orders (OrderCreated, then OrderConfirmed or OrderCancelled; ${ORDERS_IN_FLIGHT} orders in flight, so an order's events interleave with others'), ` +
      `${rounds} alternating rounds, medians. Relay: the events are committed in one transaction while the relay idles; clock from that COMMIT to the last row's published_at. ` +
      `Raw: the same subjects, payloads and headers (with Nats-Msg-Id) through \`js.publish\`, ${window} in flight; clock from the first publish to the last PubAck. ` +
      "Fresh file-store stream per side; each round checks the stream holds every event once. Postgres and nats-server are private, on the same 2 cores; CPU per event is split between this process (relay or publisher), Postgres and nats-server.\n",
  );
  console.log("| side | events/s (median) | rounds | CPU µs/event: this process | Postgres | nats-server |\n|---|---|---|---|---|---|");
  for (const [name, side] of [["outbox relay (startOutboxRelay)", samples.relay], [`raw \`js.publish\`, ${window} in flight`, samples.raw]] as const) {
    console.log(`| ${name} | ${medianOf(side, "eventsPerSecond").toFixed(0)} | ${side.map((s) => s.eventsPerSecond.toFixed(0)).join(", ")} | ${medianOf(side, "benchCpuMicros").toFixed(0)} | ${medianOf(side, "postgresCpuMicros").toFixed(0)} | ${medianOf(side, "natsCpuMicros").toFixed(0)} |`);
  }
  console.log();
  console.log(targetLine("outbox relay ≥ 0.70 × raw windowed publish", medianOf(samples.relay, "eventsPerSecond") / medianOf(samples.raw, "eventsPerSecond"), 0.7));
} finally {
  await busConnection.close();
  await telemetry.shutdown();
  await sql.end();
  await nats.stop();
  await pg.stop();
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(0);
