import { context, propagation, SpanStatusCode, trace } from "@opentelemetry/api";
import { and, asc, gt, isNull, sql } from "drizzle-orm";
import type { Sql } from "postgres";
import type { PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type { Logger } from "../logger.js";
import { outboxChannel, type OutboxTable } from "../outbox.js";
import type { Bus, BusConnection } from "./connection.js";
import { toHeaders } from "./event-headers.js";
import { contextFromHeaders, SpanKind } from "../telemetry.js";
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
  /**
   * Rows fetched per query; up to two batches are in flight at once. Large batches keep
   * Postgres's per-query cost small and the broker busy while the next batch is fetched.
   */
  batchSize?: number;
  /** Batches per round (one transaction): bounds how long a round holds its lock and what a crash mid-round republishes. */
  batchesPerRound?: number;
  /** Fallback poll; NOTIFY normally wakes the relay first. */
  pollMs?: number;
  /** Wake on NOTIFY (default). Off leaves only the poll, for bench/outbox-latency.ts. */
  listen?: boolean;
}

type OutboxRow = OutboxTable["$inferSelect"];

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
 * replica relays at a time, and a crashed or disconnected one lets go at once; its stamps
 * commit with it, so a crash mid-round republishes at most one round (batchSize ×
 * batchesPerRound events), well inside the stream's duplicate window. Within a round each
 * aggregate's events are published one after another, each after its predecessor's PubAck,
 * so a failed publish never lets a later event of the same aggregate overtake it. Any error
 * restarts the loop after a backoff; the relay never stops while the service runs.
 *
 * Throughput against raw windowed publishing is measured by bench/outbox-throughput.ts.
 */
export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { db, outbox, logger } = options;
  const batchSize = options.batchSize ?? 1024;
  const batchesPerRound = options.batchesPerRound ?? 8;
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

  // The tracer name services/platform/telemetry.ts uses, so relay spans sit with the others.
  const tracer = trace.getTracer("meshwork");

  /**
   * Publishes one row; resolves true once JetStream has acked it, false if the publish failed.
   * Its PRODUCER span continues the trace of the change that wrote the row, and its context
   * travels in the headers. The span is never entered as the active context, unlike withSpan:
   * nothing under a publish opens spans, and entering a context per publish cost about 10 µs
   * of CPU per event in bench/outbox-throughput.ts.
   */
  const publish = (bus: Bus, row: OutboxRow, onFailure: (err: unknown) => void): Promise<boolean> => {
    const span = tracer.startSpan(`publish ${row.eventType}`, { kind: SpanKind.PRODUCER, attributes: { "messaging.system": "nats", "messaging.destination.name": row.eventType } }, contextFromHeaders(row.headers));
    const extra = { ...row.headers };
    propagation.inject(trace.setSpan(context.active(), span), extra);
    let acked: Promise<unknown>;
    try {
      acked = bus.js.publish(row.eventType, row.payload, { msgID: row.id, headers: toHeaders({ id: row.id, type: row.eventType, source: options.source, time: row.createdAt, extra }) });
    } catch (err) {
      acked = Promise.reject(err); // e.g. a header value NATS refuses: a failed publish like any other
    }
    return acked.then(
      () => {
        span.end();
        return true;
      },
      (err: unknown) => {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
        onFailure(err);
        return false;
      },
    );
  };

  /**
   * One round, one transaction: lead, then walk the pending rows in `seq` order, batch by
   * batch. The next batch is fetched while the current one is published, and a batch is
   * published once the one before the previous is acked, so the broker has one to two batches
   * to work on while Postgres answers. Each batch's acked rows are stamped as
   * soon as the whole batch has settled.
   *
   * An aggregate's events are chained: each is published only after its predecessor's
   * PubAck, so one that fails holds back every later event of its aggregate until the next
   * round, which starts again from the oldest pending row.
   */
  async function round(bus: Bus): Promise<{ leader: boolean; published: number; failed?: unknown }> {
    return db.transaction(async (tx) => {
      const [lock] = await tx.execute<{ acquired: boolean }>(sql`select pg_try_advisory_xact_lock(hashtext(${lockKey})) as acquired`);
      if (!lock?.acquired) return { leader: false, published: 0 };
      const fetchAfter = (after: bigint | undefined) => {
        const pending = isNull(outbox.publishedAt);
        const rows = tx.select().from(outbox).where(after === undefined ? pending : and(pending, gt(outbox.seq, after))).orderBy(asc(outbox.seq)).limit(batchSize).execute();
        rows.catch(() => {}); // a fetch that fails is reported where it is awaited, or not at all once the round has failed
        return rows;
      };
      // Resolves true once the aggregate's latest event so far is acked, false if any of its events failed.
      const lastOfAggregate = new Map<string, Promise<boolean>>();
      const batchesAcked: Promise<boolean[]>[] = [];
      const stampings: Promise<void>[] = [];
      let published = 0;
      let failed: unknown;
      const fail = (err: unknown) => (failed ??= err);
      let fetching = fetchAfter(undefined);
      for (let batch = 0; batch < batchesPerRound && failed === undefined; batch++) {
        const rows = await fetching;
        if (rows.length === 0) break;
        const more = rows.length === batchSize && batch + 1 < batchesPerRound;
        if (more) fetching = fetchAfter(rows.at(-1)!.seq);
        if (batchesAcked.length >= 2) await batchesAcked[batchesAcked.length - 2];
        if (failed !== undefined) break;
        const acked = Promise.all(
          rows.map((row) => {
            const aggregate = `${row.aggregateType}/${row.aggregateId}`;
            const predecessor = lastOfAggregate.get(aggregate);
            const rowAcked = predecessor ? predecessor.then((predecessorAcked) => predecessorAcked && publish(bus, row, fail)) : publish(bus, row, fail);
            lastOfAggregate.set(aggregate, rowAcked);
            return rowAcked;
          }),
        );
        batchesAcked.push(acked);
        const stamping = acked.then(async (results) => {
          const ackedIds = rows.filter((_, i) => results[i]).map((row) => row.id);
          // One array parameter: the same prepared statement whatever the count, and no per-id parameter to build.
          if (ackedIds.length > 0) await tx.update(outbox).set({ publishedAt: new Date() }).where(sql`${outbox.id} = any(${sql.param(ackedIds)}::uuid[])`);
          published += ackedIds.length;
        });
        stamping.catch(() => {}); // a failed stamp is reported by the Promise.all below, not as an unhandled rejection
        stampings.push(stamping);
        if (!more) break;
      }
      await Promise.all(stampings);
      return { leader: true, published, failed };
    });
  }

  /**
   * LISTEN for committed rows, or undefined if it cannot: NOTIFY only hurries the relay, the
   * poll is what guarantees progress. postgres.js keeps a channel whose LISTEN failed (say,
   * its connection was cut by a Postgres restart) and answers every later listen on it with
   * that same error, so failing here would stop the relay for good.
   */
  async function listenForCommits() {
    try {
      return await options.sql.listen(outboxChannel(options.schemaName), () => wake());
    } catch (err) {
      log.warn({ err, pollMs }, "LISTEN failed; relaying on the poll alone");
      return undefined;
    }
  }

  async function relay(): Promise<void> {
    const listener = options.listen ?? true ? await listenForCommits() : undefined;
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
