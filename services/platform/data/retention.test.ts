import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgSchema, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { ConfigError, retentionSettings } from "../process/config.js";
import { createInboxTable } from "../messaging/inbox.js";
import { createOutboxTable } from "../messaging/outbox.js";
import { defaultRetention, inboxKeepMs, retentionPolicies, startRetentionSweep } from "./retention.js";
import { createSagaTables, sagaStates } from "../saga/tables.js";
import { orderEventStream, testDeadLetterStream } from "#tests/support/kit-streams.js";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;

const schema = pgSchema("retention_test");
const outbox = createOutboxTable(schema);
const inbox = createInboxTable(schema);
const { sagas, sagaSteps } = createSagaTables(schema);
const audit = schema.table("audit", { id: uuid("id").primaryKey(), at: timestamp("at", { withTimezone: true }).notNull(), what: text("what").notNull() });

describe("inbox retention against the streams", () => {
  it("keeps inbox rows past every way an event can be delivered again", () => {
    const keep = inboxKeepMs({ consumed: orderEventStream, deadLetters: testDeadLetterStream }, defaultRetention.inboxMarginMs);
    expect(keep).toBeGreaterThan(orderEventStream.maxAgeMs);
    // Dead-lettered by another consumer on the stream's last day, then replayed on the dead
    // letter's last day, with its original ce-id: the inbox must still hold the event.
    expect(keep).toBeGreaterThan(orderEventStream.maxAgeMs + testDeadLetterStream.maxAgeMs);
  });
});

describe("retention settings", () => {
  it("reads RETENTION_* in their units, with defaults", () => {
    expect(retentionSettings({})).toEqual(defaultRetention);
    expect(retentionSettings({ RETENTION_SWEEP_MS: "0", RETENTION_OUTBOX_HOURS: "6", RETENTION_SAGA_DAYS: "7", RETENTION_AUDIT_DAYS: "90", RETENTION_INBOX_MARGIN_HOURS: "12", RETENTION_BATCH_ROWS: "500" })).toEqual({
      sweepMs: 0,
      batchRows: 500,
      outboxKeepMs: 6 * HOUR,
      sagaKeepMs: 7 * DAY,
      auditKeepMs: 90 * DAY,
      inboxMarginMs: 12 * HOUR,
    });
    expect(() => retentionSettings({ RETENTION_BATCH_ROWS: "0" })).toThrow(ConfigError);
  });
});

describe("retention sweep against real Postgres", () => {
  let sql: ReturnType<typeof connect>;

  beforeAll(async () => {
    sql = connect(await createTestDatabase());
    drizzle(sql); // as in a service, whose drizzle instance turns postgres.js's date handling off on the shared client
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, outbox, inbox, sagas, sagaSteps, audit }))) await sql.unsafe(statement);
  });
  afterAll(async () => {
    await sql?.end();
  });

  const ago = (ms: number) => new Date(Date.now() - ms);
  const ids = async (query: Promise<Record<string, unknown>[]>) => (await query).map((row) => String(row["id"])).sort();

  it("deletes old rows in bounded batches and keeps young rows, unpublished events and unfinished sagas", async () => {
    const settings = { ...defaultRetention, batchRows: 3 }; // several DELETEs per table
    const old = ago(400 * DAY);
    // Outbox: 7 published long ago go; one published an hour ago and one never published stay.
    const expiredEvents = Array.from({ length: 7 }, () => randomUUID());
    const youngEvent = randomUUID();
    const unpublishedEvent = randomUUID();
    const event = (id: string, createdAt: Date, publishedAt: Date | null) => ({ id, aggregateType: "order", aggregateId: id, eventType: "shop.order.v1.OrderConfirmed", payload: new Uint8Array([1]), createdAt, publishedAt });
    for (const id of expiredEvents) await sql`insert into retention_test.outbox ${sql(toColumns(event(id, old, old)))}`;
    await sql`insert into retention_test.outbox ${sql(toColumns(event(youngEvent, ago(2 * HOUR), ago(HOUR))))}`;
    await sql`insert into retention_test.outbox ${sql(toColumns(event(unpublishedEvent, old, null)))}`;

    // Inbox: a row older than the stream's 7 days but inside the inbox's keep period stays.
    const inboxKeep = inboxKeepMs({ consumed: orderEventStream, deadLetters: testDeadLetterStream }, settings.inboxMarginMs);
    const expiredInbox = randomUUID();
    const pastTheStream = randomUUID();
    await sql`insert into retention_test.inbox (consumer, event_id, event_type, processed_at) values ('c', ${expiredInbox}, 't', ${ago(inboxKeep + HOUR).toISOString()})`;
    await sql`insert into retention_test.inbox (consumer, event_id, event_type, processed_at) values ('c', ${pastTheStream}, 't', ${ago(orderEventStream.maxAgeMs + DAY).toISOString()})`;

    // Sagas: every state, old and young, each with two steps.
    const sagaIds: Record<string, string> = {};
    for (const state of sagaStates) {
      for (const age of ["old", "young"] as const) {
        const id = randomUUID();
        sagaIds[`${state}/${age}`] = id;
        const updatedAt = (age === "old" ? old : ago(HOUR)).toISOString();
        await sql`insert into retention_test.sagas (id, type, aggregate_id, state, payload, updated_at) values (${id}, 'place-order', ${id}, ${state}, '{}', ${updatedAt})`;
        for (const stepIndex of [0, 1]) await sql`insert into retention_test.saga_steps (saga_id, step_index, name, state) values (${id}, ${stepIndex}, ${`step-${stepIndex}`}, 'succeeded')`;
      }
    }

    const expiredAudit = randomUUID();
    const youngAudit = randomUUID();
    await sql`insert into retention_test.audit (id, at, what) values (${expiredAudit}, ${old.toISOString()}, 'retry'), (${youngAudit}, ${ago(DAY).toISOString()}, 'retry')`;

    const policies = retentionPolicies(settings, { outbox, inbox: { table: inbox, consumed: orderEventStream, deadLetters: testDeadLetterStream }, sagas: { sagas, sagaSteps }, audit: [{ table: audit, column: audit.at }] });
    const sweeper = startRetentionSweep({ sql, policies, settings: { ...settings, sweepMs: 0 }, logger: silentLogger });
    const deleted = await sweeper.sweep();
    await sweeper.stop();

    expect(await ids(sql`select id from retention_test.outbox`)).toEqual([youngEvent, unpublishedEvent].sort());
    expect(await ids(sql`select event_id as id from retention_test.inbox`)).toEqual([pastTheStream]);
    const finishedOld = [sagaIds["completed/old"], sagaIds["compensated/old"]];
    const kept = Object.values(sagaIds).filter((id) => !finishedOld.includes(id));
    expect(await ids(sql`select id from retention_test.sagas`)).toEqual(kept.sort());
    expect(await ids(sql`select distinct saga_id as id from retention_test.saga_steps`)).toEqual(kept.sort());
    expect(Number((await sql`select count(*)::int as n from retention_test.saga_steps`)[0]?.["n"])).toBe(2 * kept.length);
    expect(await ids(sql`select id from retention_test.audit`)).toEqual([youngAudit]);
    expect(Object.fromEntries(deleted)).toEqual({ "retention_test.outbox": 7, "retention_test.inbox": 1, "retention_test.sagas": 2, "retention_test.audit": 1 });
    expect(Object.fromEntries(sweeper.deleted())).toEqual(Object.fromEntries(deleted));
  });
});

/** An outbox row in its column names, for postgres.js's insert helper. */
function toColumns(row: { id: string; aggregateType: string; aggregateId: string; eventType: string; payload: Uint8Array; createdAt: Date; publishedAt: Date | null }) {
  return {
    id: row.id,
    aggregate_type: row.aggregateType,
    aggregate_id: row.aggregateId,
    event_type: row.eventType,
    payload: Buffer.from(row.payload),
    created_at: row.createdAt.toISOString(),
    published_at: row.publishedAt?.toISOString() ?? null,
  };
}
