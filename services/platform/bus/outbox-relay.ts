import { asc, inArray, isNull, sql } from "drizzle-orm";
import type { Sql } from "postgres";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type { Logger } from "../logger.js";
import { outboxChannel, type OutboxTable } from "../outbox.js";
import type { Bus, BusConnection } from "./connection.js";
import { toHeaders } from "./event-headers.js";
import { contextFromHeaders, currentTraceHeaders, SpanKind, withSpan } from "../telemetry.js";
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
 * duplicate.
 *
 * Each round is one Postgres transaction holding a transaction-scoped advisory lock, so one
 * replica relays at a time, and a crashed or disconnected one lets go at once. A round
 * takes at most one row per aggregate, so a failed publish never lets a later event of the
 * same aggregate overtake it. Any error restarts the loop after a backoff; the relay never
 * stops while the service runs.
 */
export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { db, outbox, logger } = options;
  const batchSize = options.batchSize ?? 256;
  const pollMs = options.pollMs ?? 1_000;
  const lockKey = `meshwork:outbox-relay:${options.schemaName}`;
  const log = logger.child({ component: "outbox-relay" });
  let stopping = false;
  // Until NATS first answers, there is nothing to wait for on stop.
  let connected = false;
  options.bus.ready.then(() => (connected = true), () => {});
  // A NOTIFY that lands while a round is in flight must not be lost: it is remembered,
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
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** One round: lead, pick rows, publish them all at once, stamp the acked ones. */
  async function round(bus: Bus): Promise<{ leader: boolean; published: number; failed?: unknown }> {
    return db.transaction(async (tx) => {
      const [lock] = await tx.execute<{ acquired: boolean }>(sql`select pg_try_advisory_xact_lock(hashtext(${lockKey})) as acquired`);
      if (!lock?.acquired) return { leader: false, published: 0 };
      const candidates = await tx.select().from(outbox).where(isNull(outbox.publishedAt)).orderBy(asc(outbox.seq)).limit(batchSize);
      const seen = new Set<string>();
      const rows = candidates.filter((row) => {
        const key = `${row.aggregateType}/${row.aggregateId}`;
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      });
      if (rows.length === 0) return { leader: true, published: 0 };
      const results = await Promise.allSettled(
        rows.map((row) =>
          // A PRODUCER span in the trace of the change that wrote the row.
          withSpan(`publish ${row.eventType}`, SpanKind.PRODUCER, contextFromHeaders(row.headers), { "messaging.system": "nats", "messaging.destination.name": row.eventType }, () =>
            bus.js.publish(row.eventType, row.payload, {
              msgID: row.id,
              headers: toHeaders({ id: row.id, type: row.eventType, source: options.source, time: row.createdAt, extra: { ...row.headers, ...currentTraceHeaders() } }),
            }),
          ),
        ),
      );
      const acked = rows.filter((_, i) => results[i]!.status === "fulfilled").map((row) => row.id);
      if (acked.length > 0) await tx.update(outbox).set({ publishedAt: new Date() }).where(inArray(outbox.id, acked));
      const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      return { leader: true, published: acked.length, failed: failure?.reason };
    });
  }

  async function relay(): Promise<void> {
    const listener = options.listen ?? true ? await options.sql.listen(outboxChannel(options.schemaName), () => wake()) : undefined;
    try {
      const bus = await options.bus.ready;
      await ensureStream(bus.jsm, options.stream);
      log.info({ stream: options.stream.name }, "relaying outbox");
      let backoffMs = 100;
      while (!stopping) {
        const { leader, published, failed } = await round(bus);
        if (failed) {
          log.warn({ err: failed, published }, "publishing outbox rows failed; they stay pending and are retried");
          await pause(backoffMs); // notifications cannot hurry a broken broker
          backoffMs = Math.min(backoffMs * 2, 5_000);
          await ensureStream(bus.jsm, options.stream).catch(() => {}); // NATS may be back with an empty store
        } else {
          backoffMs = 100;
          if (!leader || published === 0) await sleep(pollMs); // another replica relays, or nothing to do
        }
      }
    } finally {
      await listener?.unlisten().catch(() => {});
    }
  }

  const running = (async () => {
    let backoffMs = 200;
    while (!stopping) {
      try {
        await relay();
      } catch (err) {
        if (stopping) break;
        log.warn({ err, retryInMs: backoffMs }, "outbox relay interrupted; restarting");
        await pause(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 5_000);
      }
    }
  })();

  return {
    async stop() {
      stopping = true;
      wake();
      if (connected) await running;
    },
  };
}
