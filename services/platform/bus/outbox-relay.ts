import { asc, inArray, isNull } from "drizzle-orm";
import type { Sql } from "postgres";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type { Logger } from "../logger.js";
import { outboxChannel, type OutboxTable } from "../outbox.js";
import type { BusConnection } from "./connection.js";
import { toHeaders } from "./event-headers.js";
import { ensureStream, type StreamSpec } from "./streams.js";

export interface OutboxRelayOptions {
  sql: Sql;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- works on any service's schema
  db: PostgresJsDatabase<any>;
  outbox: OutboxTable;
  schemaName: string;
  /** The stream this service's events go to; created or updated at start. */
  stream: StreamSpec;
  /** ce-source of the events, the emitting service. */
  source: string;
  bus: BusConnection;
  logger: Logger;
  /** Rows published per round, all in flight at once. */
  batchSize?: number;
  /** Fallback poll; NOTIFY normally wakes the relay first. */
  pollMs?: number;
  /** Wake on NOTIFY (default). Off leaves only the poll, for bench/outbox-latency.ts. */
  listen?: boolean;
}

export interface OutboxRelay {
  stop(): Promise<void>;
}

/**
 * Publishes outbox rows to JetStream in `seq` order and stamps each row only after its
 * PubAck, so an event is never marked sent unless the stream has it. A crash between the
 * two republishes the event under the same Nats-Msg-Id, which JetStream drops as a
 * duplicate. One relay per schema runs at a time (a Postgres advisory lock picks it), so
 * rows leave in commit order over one connection, which keeps each aggregate's order.
 */
export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { sql, db, outbox, logger } = options;
  const batchSize = options.batchSize ?? 256;
  const pollMs = options.pollMs ?? 1_000;
  const log = logger.child({ component: "outbox-relay" });
  let stopping = false;
  // Until NATS first answers, there is nothing to wait for on stop.
  let connected = false;
  options.bus.ready.then(() => (connected = true), () => {});
  // A NOTIFY that lands while a batch is in flight must not be lost: it is remembered,
  // and the next sleep returns at once.
  let notified = false;
  let wakeSleeper: (() => void) | undefined;
  const wake = () => {
    notified = true;
    wakeSleeper?.();
  };
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (notified || stopping) {
        notified = false;
        return resolve();
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeSleeper = undefined;
        notified = false;
        resolve();
      }
      wakeSleeper = done;
    });

  async function publishBatch(bus: Awaited<BusConnection["ready"]>): Promise<{ published: number; failed: unknown }> {
    const rows = await db.select().from(outbox).where(isNull(outbox.publishedAt)).orderBy(asc(outbox.seq)).limit(batchSize);
    if (rows.length === 0) return { published: 0, failed: undefined };
    const results = await Promise.allSettled(
      rows.map((row) =>
        bus.js.publish(row.eventType, row.payload, {
          msgID: row.id,
          headers: toHeaders({ id: row.id, type: row.eventType, source: options.source, time: row.createdAt, extra: row.headers }),
        }),
      ),
    );
    const acked = rows.filter((_, i) => results[i]!.status === "fulfilled").map((row) => row.id);
    if (acked.length > 0) await db.update(outbox).set({ publishedAt: new Date() }).where(inArray(outbox.id, acked));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    return { published: acked.length, failed: failure?.reason };
  }

  const running = (async () => {
    const lockKey = `meshwork:outbox-relay:${options.schemaName}`;
    const lock = await sql.reserve();
    let listener: { unlisten(): Promise<void> } | undefined;
    try {
      while (!stopping) {
        const [row] = await lock`select pg_try_advisory_lock(hashtext(${lockKey})) as acquired`;
        if (row?.["acquired"]) break;
        await sleep(pollMs); // another replica relays; take over if it goes away
      }
      if (stopping) return;
      if (options.listen ?? true) listener = await sql.listen(outboxChannel(options.schemaName), () => wake());
      const bus = await options.bus.ready;
      await ensureStream(bus.jsm, options.stream);
      log.info({ stream: options.stream.name }, "relaying outbox");
      let backoffMs = 100;
      while (!stopping) {
        const { published, failed } = await publishBatch(bus).catch((err: unknown) => ({ published: 0, failed: err }));
        if (failed) {
          log.warn({ err: failed, published }, "publishing outbox rows failed; they stay pending and are retried");
          await new Promise((resolve) => setTimeout(resolve, backoffMs)); // notifications cannot hurry a broken broker
          backoffMs = Math.min(backoffMs * 2, 5_000);
        } else {
          backoffMs = 100;
          if (published < batchSize) await sleep(pollMs);
        }
      }
    } finally {
      await listener?.unlisten().catch(() => {});
      await lock`select pg_advisory_unlock(hashtext(${lockKey}))`.catch(() => {});
      lock.release();
    }
  })().catch((err: unknown) => {
    if (!stopping) log.error({ err }, "outbox relay stopped");
  });

  return {
    async stop() {
      stopping = true;
      wake();
      if (connected) await running;
    },
  };
}
