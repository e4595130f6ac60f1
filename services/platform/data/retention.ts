import { getTableConfig, type PgColumn, type PgTable } from "drizzle-orm/pg-core";
import type { Sql } from "postgres";
import type { StreamSpec } from "../messaging/streams.js";
import type { InboxTable } from "../messaging/inbox.js";
import type { Logger } from "../process/logger.js";
import type { Metrics } from "../process/metrics.js";
import type { OutboxTable } from "../messaging/outbox.js";
import { terminalSagaStates, type SagaTables } from "../saga/tables.js";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;

/** How long each kind of row is kept, and how the sweep that enforces it paces itself. */
export interface RetentionSettings {
  /** Between sweeps, jittered ±20% so replicas drift apart; 0 turns the sweep off. */
  sweepMs: number;
  /** Rows per DELETE: each is its own short transaction that locks only these rows. */
  batchRows: number;
  /** Published outbox rows; the stream holds the events themselves for 7 days. */
  outboxKeepMs: number;
  /** Completed or compensated sagas and their steps, for the operator's saga tools. */
  sagaKeepMs: number;
  /** Operator audit rows. */
  auditKeepMs: number;
  /** Added to the longest a consumed event can come back (see inboxKeepMs). */
  inboxMarginMs: number;
}

export const defaultRetention: RetentionSettings = {
  sweepMs: 10 * 60 * 1000,
  batchRows: 1_000,
  outboxKeepMs: DAY,
  sagaKeepMs: 30 * DAY,
  auditKeepMs: 365 * DAY,
  inboxMarginMs: DAY,
};

/**
 * How long inbox rows must live: past the last moment the event they record can be delivered
 * again, or the redelivery is applied twice. Another consumer of the subject may dead-letter
 * the event as late as the consumed stream keeps it, and a replay of the dead letter republishes
 * the original ce-id to every consumer for as long as the dead letter is kept after that: the
 * two max ages added, plus a margin.
 */
export function inboxKeepMs(streams: { consumed: StreamSpec; deadLetters: StreamSpec }, marginMs: number): number {
  return streams.consumed.maxAgeMs + streams.deadLetters.maxAgeMs + marginMs;
}

/** One table's rule: a bounded DELETE of rows past their keep period. */
export interface RetentionPolicy {
  /** schema.table, the label of the deleted-rows metric. */
  readonly table: string;
  /** Deletes at most `limit` expired rows, skipping rows others hold locked; resolves to how many. */
  deleteExpired(sql: Sql, limit: number): Promise<number>;
}

const qualifiedName = (table: PgTable) => {
  const { schema, name } = getTableConfig(table);
  return schema ? `${schema}.${name}` : name;
};

/**
 * Rows whose `column` (a timestamp) is older than `keepMs`; a null never expires, so an
 * outbox row is kept until it is published and then for `keepMs`. The ctid subselect bounds
 * the delete without an ORDER BY, and SKIP LOCKED lets replicas sweep side by side.
 */
export function expireOlderThan(table: PgTable, column: PgColumn, keepMs: number): RetentionPolicy {
  const name = qualifiedName(table);
  return {
    table: name,
    async deleteExpired(sql, limit) {
      const deleted = await sql`
        delete from ${sql(name)} where ctid = any(array(
          select ctid from ${sql(name)} where ${sql(column.name)} < now() - make_interval(secs => ${keepMs / 1000}::float8)
          limit ${limit} for update skip locked))`;
      return deleted.count;
    },
  };
}

/**
 * Sagas that finished (completed or compensated) and have not changed for `keepMs`, with
 * their steps, in one statement: the steps go first, as saga_steps references sagas without
 * ON DELETE CASCADE. Running, compensating and parked sagas are never touched.
 */
export function expireFinishedSagas({ sagas, sagaSteps }: SagaTables, keepMs: number): RetentionPolicy {
  const sagasName = qualifiedName(sagas);
  const stepsName = qualifiedName(sagaSteps);
  // Constants in the text, not parameters: a generic plan can use the partial index on
  // finished sagas only if the query names the same states as its predicate.
  const finishedLiterals = terminalSagaStates.map((state) => `'${state}'`).join(", ");
  return {
    table: sagasName,
    async deleteExpired(sql, limit) {
      const deleted = await sql`
        with doomed as (
          select ${sql(sagas.id.name)} as id from ${sql(sagasName)}
          where ${sql(sagas.state.name)} in (${sql.unsafe(finishedLiterals)}) and ${sql(sagas.updatedAt.name)} < now() - make_interval(secs => ${keepMs / 1000}::float8)
          limit ${limit} for update skip locked
        ), steps as (
          delete from ${sql(stepsName)} where ${sql(sagaSteps.sagaId.name)} in (select id from doomed)
        )
        delete from ${sql(sagasName)} where ${sql(sagas.id.name)} in (select id from doomed)`;
      return deleted.count;
    },
  };
}

/** The tables of a service that retention keeps trimmed. */
export interface RetainedTables {
  outbox?: OutboxTable;
  /** The inbox, the stream its consumer reads, and the one the consumer's dead letters go to. */
  inbox?: { table: InboxTable; consumed: StreamSpec; deadLetters: StreamSpec };
  sagas?: SagaTables;
  /** Audit tables and the timestamp each is aged by. */
  audit?: { table: PgTable; column: PgColumn }[];
}

/** Each table's policy under the settings' keep periods. */
export function retentionPolicies(settings: RetentionSettings, tables: RetainedTables): RetentionPolicy[] {
  return [
    ...(tables.outbox ? [expireOlderThan(tables.outbox, tables.outbox.publishedAt, settings.outboxKeepMs)] : []),
    ...(tables.inbox ? [expireOlderThan(tables.inbox.table, tables.inbox.table.processedAt, inboxKeepMs(tables.inbox, settings.inboxMarginMs))] : []),
    ...(tables.sagas ? [expireFinishedSagas(tables.sagas, settings.sagaKeepMs)] : []),
    ...(tables.audit ?? []).map(({ table, column }) => expireOlderThan(table, column, settings.auditKeepMs)),
  ];
}

export interface RetentionSweepOptions {
  sql: Sql;
  policies: RetentionPolicy[];
  settings: Pick<RetentionSettings, "sweepMs" | "batchRows">;
  logger: Logger;
  /** Where retention_deleted_rows is reported; unset in tests that read deleted() instead. */
  metrics?: Metrics;
  /** DELETEs per table per sweep at most, so one sweep's work stays bounded; the rest waits for the next. */
  maxBatchesPerSweep?: number;
}

export interface RetentionSweep {
  /** Runs one sweep now (after the one under way, if any); resolves to rows deleted per table. */
  sweep(): Promise<Map<string, number>>;
  /** Rows deleted per table since start. */
  deleted(): ReadonlyMap<string, number>;
  stop(): Promise<void>;
}

/**
 * Enforces the policies on an interval. Every DELETE is bounded by batchRows and commits on
 * its own, so a sweep never holds many locks or a long transaction; a failing table is
 * logged and retried at the next sweep without holding up the others.
 */
export function startRetentionSweep(options: RetentionSweepOptions): RetentionSweep {
  const { sql, policies, settings } = options;
  const maxBatches = options.maxBatchesPerSweep ?? 100;
  const log = options.logger.child({ component: "retention" });
  const totals = new Map(policies.map((policy) => [policy.table, 0]));
  options.metrics?.gauge("retention_deleted_rows", "Rows the retention sweep has deleted since start, per table", ["table"], async () =>
    [...totals].map(([table, value]) => ({ labels: { table }, value })),
  );
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<Map<string, number>> = Promise.resolve(new Map());

  async function sweepOnce(): Promise<Map<string, number>> {
    const deleted = new Map<string, number>();
    for (const policy of policies) {
      let rows = 0;
      try {
        for (let batch = 0; batch < maxBatches && !stopped; batch++) {
          const n = await policy.deleteExpired(sql, settings.batchRows);
          rows += n;
          if (n < settings.batchRows) break;
        }
      } catch (err) {
        log.warn({ err, table: policy.table }, "retention sweep failed; retried at the next sweep");
      }
      deleted.set(policy.table, rows);
      totals.set(policy.table, (totals.get(policy.table) ?? 0) + rows);
      if (rows > 0) log.info({ table: policy.table, rows }, "expired rows deleted");
    }
    return deleted;
  }

  const sweep = () => (current = current.then(sweepOnce));
  const jittered = () => settings.sweepMs * (0.8 + 0.4 * Math.random());
  function schedule() {
    if (stopped || settings.sweepMs === 0 || policies.length === 0) return;
    timer = setTimeout(() => void sweep().finally(schedule), jittered());
    timer.unref();
  }
  schedule();

  return {
    sweep,
    deleted: () => totals,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await current;
    },
  };
}
