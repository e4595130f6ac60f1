import { context, propagation, SpanStatusCode, trace } from "@opentelemetry/api";
import { getTableConfig } from "drizzle-orm/pg-core";
import type { Sql, TransactionSql } from "postgres";
import type { Logger } from "../process/logger.js";
import { outboxChannel, type OutboxTable } from "./outbox.js";
import type { Bus, BusConnection } from "./connection.js";
import { toHeaders } from "./event-headers.js";
import { contextFromHeaders, SpanKind } from "../process/telemetry.js";
import { ensureStream, type StreamSpec } from "./streams.js";

export interface OutboxRelayOptions {
  sql: Sql;
  outbox: OutboxTable;
  schemaName: string;
  /** The stream this service's events go to; created or updated at start. */
  stream: StreamSpec;
  /** ce-source of the events, the emitting service. */
  source: string;
  bus: BusConnection;
  logger: Logger;
  /** Rows fetched per statement. Large batches keep Postgres's per-statement cost small. */
  batchSize?: number;
  /** Batches per round (one transaction): bounds how long a round holds its lock and what a crash mid-round republishes. */
  batchesPerRound?: number;
  /**
   * Publishes awaiting their PubAck at most. The broker works on these while Postgres fetches
   * the next batch; a wider window only adds live objects for the garbage collector (in
   * bench/outbox-throughput.ts, 2048 cost 15 µs more CPU per event than 256, and no speed).
   */
  window?: number;
  /** Fallback poll; NOTIFY normally wakes the relay first. */
  pollMs?: number;
  /** Wake on NOTIFY (default). Off leaves only the poll, for bench/outbox-latency.ts. */
  listen?: boolean;
}

/**
 * An outbox row as the relay reads it. seq stays the int8's text; created_at comes as epoch
 * milliseconds, since a drizzle instance on the same client turns postgres.js's date parsing off.
 */
interface PendingRow {
  id: string;
  seq: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: Buffer;
  headers: Record<string, string>;
  created_ms: number;
}

/** Rows acked since the last stamp, and when they were collected. */
interface Acked {
  ids: string[];
  atMs: number;
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
 * replica relays at a time, and a crashed or disconnected one lets go at once; its stamps
 * commit with it, so a crash mid-round republishes at most one round (batchSize ×
 * batchesPerRound events), well inside the stream's duplicate window. Within a round each
 * aggregate's events are published one after another, each after its predecessor's PubAck,
 * so a failed publish never lets a later event of the same aggregate overtake it. Any error
 * restarts the loop after a backoff; the relay never stops while the service runs.
 *
 * A round costs few statements, whatever its size: one takes the lock and fetches the first
 * batch, each further one stamps what has been acked so far and fetches the next batch, and
 * a last one stamps the rest; a woken relay that finds a handful of events runs BEGIN, two
 * statements and COMMIT. They are postgres.js tagged templates, so each is prepared once per
 * connection.
 *
 * Throughput against raw windowed publishing is measured by bench/outbox-throughput.ts.
 */
export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { sql, logger } = options;
  const batchSize = options.batchSize ?? 1024;
  const batchesPerRound = options.batchesPerRound ?? 8;
  const window = options.window ?? 256;
  const pollMs = options.pollMs ?? 1_000;
  const lockKey = `meshwork:outbox-relay:${options.schemaName}`;
  const { schema, name } = getTableConfig(options.outbox);
  const outbox = sql(schema ? `${schema}.${name}` : name);
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

  // The statements of a round. A stamp is the time its PubAcks were collected, in epoch ms
  // (a drizzle instance on the same client turns postgres.js's Date parameters off), not the
  // round transaction's now().
  const pendingColumns = sql`id, seq, aggregate_type, aggregate_id, event_type, payload, headers, (extract(epoch from created_at) * 1000)::float8 as created_ms`;
  const leadAndFetch = (tx: TransactionSql) => tx<({ acquired: boolean } & Partial<PendingRow>)[]>`
    with leader as (select pg_try_advisory_xact_lock(hashtext(${lockKey})) as acquired)
    select leader.acquired, pending.* from leader left join lateral (
      select ${pendingColumns} from ${outbox}
      where leader.acquired and published_at is null order by seq limit ${batchSize}
    ) pending on true`;
  // The update and the select see the same snapshot, so the rows stamped here (all at or below `after`) cannot come back.
  const stampAndFetch = (tx: TransactionSql, acked: Acked, after: string) => tx<PendingRow[]>`
    with stamped as (update ${outbox} set published_at = to_timestamp(${acked.atMs / 1000}::float8) where id = any(${acked.ids}::uuid[]))
    select ${pendingColumns} from ${outbox}
    where published_at is null and seq > ${after}::bigint order by seq limit ${batchSize}`;
  const stamp = (tx: TransactionSql, acked: Acked) => tx`update ${outbox} set published_at = to_timestamp(${acked.atMs / 1000}::float8) where id = any(${acked.ids}::uuid[])`;

  // The tracer name services/platform/process/telemetry.ts uses, so relay spans sit with the others.
  const tracer = trace.getTracer("meshwork");

  /**
   * Publishes one row and reports its outcome to `settled`, whose answer it resolves to: true
   * once JetStream has acked it, false if the publish failed.
   * Its PRODUCER span continues the trace of the change that wrote the row, and its context
   * travels in the headers. The span is never entered as the active context, unlike withSpan:
   * nothing under a publish opens spans, and entering a context per publish cost about 10 µs
   * of CPU per event in bench/outbox-throughput.ts.
   */
  const publish = (bus: Bus, row: PendingRow, settled: (acked: boolean, err?: unknown) => boolean): Promise<boolean> => {
    const span = tracer.startSpan(`publish ${row.event_type}`, { kind: SpanKind.PRODUCER, attributes: { "messaging.system": "nats", "messaging.destination.name": row.event_type } }, contextFromHeaders(row.headers));
    const extra = { ...row.headers };
    propagation.inject(trace.setSpan(context.active(), span), extra);
    let acked: Promise<unknown>;
    try {
      acked = bus.js.publish(row.event_type, row.payload, { msgID: row.id, headers: toHeaders({ id: row.id, type: row.event_type, source: options.source, time: new Date(row.created_ms), extra }) });
    } catch (err) {
      acked = Promise.reject(err); // e.g. a header value NATS refuses: a failed publish like any other
    }
    return acked.then(
      () => {
        span.end();
        return settled(true);
      },
      (err: unknown) => {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
        return settled(false, err);
      },
    );
  };

  /**
   * One round, one transaction: lead, then walk the pending rows in `seq` order, batch by
   * batch, keeping up to `window` publishes awaiting their PubAck. The next batch is fetched
   * (stamping every row acked so far) as soon as a batch arrives, so Postgres answers while
   * the broker works. Drained: the last batch was short, so nothing committed before it is
   * left; rows committed since then have sent a NOTIFY, which the next sleep honours.
   *
   * An aggregate's events are chained: each is published only after its predecessor's
   * PubAck, so one that fails holds back every later event of its aggregate until the next
   * round, which starts again from the oldest pending row.
   */
  async function round(bus: Bus): Promise<{ leader: boolean; published: number; drained: boolean; failed?: unknown }> {
    return sql.begin(async (tx) => {
      const first = await leadAndFetch(tx);
      if (!first[0]?.acquired) return { leader: false, published: 0, drained: true };
      let rows = first.filter((row) => row.id !== null) as PendingRow[];
      // Resolves true once the aggregate's latest event so far is acked, false if any of its events failed.
      const lastOfAggregate = new Map<string, Promise<boolean>>();
      let acked: string[] = [];
      let published = 0;
      let failed: unknown;
      let inFlight = 0;
      let windowOpened: (() => void) | undefined;
      let allSettled: (() => void) | undefined;
      /** Books a row's outcome; a held-back row (its predecessor failed) settles unpublished. */
      const settle = (row: PendingRow) => (ok: boolean, err?: unknown) => {
        if (ok) acked.push(row.id);
        else if (err !== undefined) failed ??= err;
        inFlight--;
        windowOpened?.();
        if (inFlight === 0) allSettled?.();
        return ok;
      };
      const takeAcked = (): Acked => {
        const ids = acked;
        acked = [];
        published += ids.length;
        return { ids, atMs: Date.now() };
      };
      for (let batch = 1; rows.length > 0; batch++) {
        const more = rows.length === batchSize && batch < batchesPerRound;
        const next = more ? stampAndFetch(tx, takeAcked(), rows.at(-1)!.seq) : undefined;
        next?.catch(() => {}); // a fetch that fails is reported where it is awaited, or not at all once the round has failed
        for (const row of rows) {
          if (failed !== undefined) break;
          while (inFlight >= window) await new Promise<void>((resolve) => (windowOpened = resolve));
          windowOpened = undefined;
          inFlight++;
          const aggregate = `${row.aggregate_type}/${row.aggregate_id}`;
          const predecessor = lastOfAggregate.get(aggregate);
          const settled = settle(row);
          const rowAcked = predecessor ? predecessor.then((predecessorAcked) => (predecessorAcked ? publish(bus, row, settled) : settled(false))) : publish(bus, row, settled);
          lastOfAggregate.set(aggregate, rowAcked);
        }
        if (!next || failed !== undefined) {
          await next; // never left running past the transaction
          break;
        }
        rows = await next;
      }
      if (inFlight > 0) await new Promise<void>((resolve) => (allSettled = resolve));
      const last = takeAcked();
      if (last.ids.length > 0) await stamp(tx, last);
      return { leader: true, published, drained: rows.length < batchSize, failed };
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
        const { leader, published, drained, failed } = await round(bus);
        if (failed) {
          log.warn({ err: failed, published }, "publishing outbox rows failed; they stay pending and are retried");
          await pause(backoffMs); // notifications cannot hurry a broken broker
          backoffMs = Math.min(backoffMs * 2, 5_000);
          await ensureStream(bus.jsm, options.stream).catch(() => {}); // NATS may be back with an empty store
        } else {
          backoffMs = 100;
          // Another replica relays, or nothing is left: wait for a NOTIFY or the poll.
          if (!leader || published === 0 || drained) await sleep(pollMs);
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
