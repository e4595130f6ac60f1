import { randomUUID } from "node:crypto";
import { bigserial, getTableConfig, index, jsonb, pgSchema, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { sql, type SQL } from "drizzle-orm";
import type { SqlExecutor } from "../data/db.js";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { bytea } from "../data/pg-types.js";
import { currentTraceHeaders } from "../process/telemetry.js";

type Schema = ReturnType<typeof pgSchema>;

/**
 * The transactional outbox: events are rows written in the same transaction as the state
 * change they describe, so a crash can never commit one without the other. A relay
 * publishes pending rows in `seq` order and stamps `published_at` after the broker acks.
 */
export function createOutboxTable(schema: Schema) {
  return schema.table(
    "outbox",
    {
      id: uuid("id").primaryKey(),
      seq: bigserial("seq", { mode: "bigint" }).notNull().unique(),
      aggregateType: text("aggregate_type").notNull(),
      aggregateId: text("aggregate_id").notNull(),
      /** Fully qualified protobuf message name, which is also the NATS subject. */
      eventType: text("event_type").notNull(),
      payload: bytea("payload").notNull(),
      headers: jsonb("headers").$type<Record<string, string>>().notNull().default({}),
      createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
      publishedAt: timestamp("published_at", { withTimezone: true }),
    },
    (t) => [
      index("outbox_pending_idx").on(t.seq).where(sql`${t.publishedAt} is null`),
      // The retention sweep finds published rows by age.
      index("outbox_published_idx").on(t.publishedAt).where(sql`${t.publishedAt} is not null`),
    ],
  );
}

export type OutboxTable = ReturnType<typeof createOutboxTable>;

/** The LISTEN/NOTIFY channel on which a schema's outbox announces new rows. */
export const outboxChannel = (schemaName: string) => `${schemaName}_outbox`;

export interface DomainEvent<Desc extends DescMessage> {
  schema: Desc;
  message: MessageShape<Desc>;
  aggregateType: string;
  aggregateId: string;
}

/** The rows of some events, ids minted and the current trace attached. */
function outboxRows(events: DomainEvent<DescMessage>[]) {
  return events.map((event) => ({
    id: randomUUID(),
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    eventType: event.schema.typeName,
    payload: toBinary(event.schema, event.message),
    // The trace of the change travels with its event, through the relay to consumers.
    headers: currentTraceHeaders(),
  }));
}

const channelOf = (outbox: OutboxTable) => outboxChannel(getTableConfig(outbox).schema ?? "public");

/**
 * Appends events to the outbox. Call it with the transaction that makes the state change.
 * Returns the event ids, which become `Nats-Msg-Id` and so dedupe republishing.
 */
export async function appendToOutbox(tx: SqlExecutor, outbox: OutboxTable, events: DomainEvent<DescMessage>[]): Promise<string[]> {
  if (events.length === 0) return [];
  const rows = outboxRows(events);
  // The NOTIFY is delivered at commit, and only if it commits: the relay wakes at once instead
  // of polling. One statement: a data-modifying WITH runs to completion whether or not read.
  await tx.execute(sql`with appended as (${tx.insert(outbox).values(rows).getSQL()}) select pg_notify(${channelOf(outbox)}, '')`);
  return rows.map((row) => row.id);
}

/**
 * The same append as a CTE named `appended` of a larger statement, for a use case whose
 * change and events fit in one statement, which is atomic without BEGIN and COMMIT. The rows
 * go in only where `when` holds (e.g. that the change matched). `notify` goes in the
 * statement's final SELECT, which must read it for it to run: it wakes the relay, at commit,
 * if any row went in.
 */
export function outboxAppend(outbox: OutboxTable, events: DomainEvent<DescMessage>[], when: SQL): { cte: SQL; notify: SQL } {
  const values = outboxRows(events).map(
    (row) => sql`(${row.id}::uuid, ${row.aggregateType}::text, ${row.aggregateId}::text, ${row.eventType}::text, ${Buffer.from(row.payload)}::bytea, ${JSON.stringify(row.headers)}::jsonb)`,
  );
  return {
    cte: sql`appended as (
      insert into ${outbox} (id, aggregate_type, aggregate_id, event_type, payload, headers)
      select * from (values ${sql.join(values, sql`, `)}) as v where ${when} returning 1)`,
    notify: sql`(select pg_notify(${channelOf(outbox)}, '')::text from (select from appended limit 1) as any_appended)`,
  };
}
