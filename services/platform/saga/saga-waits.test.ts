import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { createSagaRunner, SignalTimeoutError, StepRejectedError, type SagaDefinition, type SagaRunner, type SagaStep } from "./saga-runner.js";
import { createSagaTables } from "./tables.js";

const schema = pgSchema("saga_waits_test");
const tables = createSagaTables(schema);
const policy = { stepTimeoutMs: 500, stepAttempts: 3, compensationAttempts: 3, initialBackoffMs: 5, maxBackoffMs: 20, leaseMs: 60_000, sweepMs: 100 };

interface Payload {
  id: string;
}

const until = async (what: string, check: () => Promise<boolean>, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe("saga waits, signals, versions and phases against real Postgres", () => {
  let sql: postgres.Sql;
  let db: ReturnType<typeof drizzle>;
  /** Every statement sent, by the saga id it names (for counting one saga's statements). */
  const sent: string[] = [];
  const runners: SagaRunner<Payload>[] = [];

  beforeAll(async () => {
    const url = await createTestDatabase();
    sql = postgres(url, { max: 4, onnotice: () => {}, debug: (_connection, query, params) => void sent.push(`${query} ${JSON.stringify(params)}`) });
    db = drizzle(sql);
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, ...tables }))) await sql.unsafe(statement);
  });
  afterAll(async () => {
    for (const runner of runners) await runner.stop();
    await sql.end();
  });

  const log: string[] = [];
  const cancelled = new Map<string, string>();
  /** A runner of its own saga type: the runners of every test sweep at once, each for its own type only. */
  function runner(type: string, definition: Omit<SagaDefinition<Payload>, "onCompensated" | "type" | "version"> & { version?: number }, olderVersions: SagaDefinition<Payload>[] = []) {
    const created = createSagaRunner<Payload>({
      db,
      tables,
      logger: silentLogger,
      policy,
      olderVersions,
      definition: { type, version: 1, ...definition, onCompensated: async (_tx, payload, reason) => void cancelled.set(payload.id, reason) },
    });
    runners.push(created);
    return created;
  }
  const act = (name: string): SagaStep<Payload> => ({ name, run: async ({ id }) => void log.push(`${id}:${name}`), compensate: async ({ id }) => void log.push(`${id}:undo-${name}`) });
  const ran = (id: string) => log.filter((entry) => entry.startsWith(`${id}:`)).map((entry) => entry.slice(id.length + 1));

  async function start(saga: SagaRunner<Payload>, id: string) {
    const sagaId = await saga.create(db, id, { id });
    saga.drive(sagaId);
    return sagaId;
  }
  const stateOf = async (saga: SagaRunner<Payload>, id: string) => (await saga.get(id))?.state;
  const settled = (saga: SagaRunner<Payload>, id: string) => until(`${id} to settle`, async () => ["completed", "compensated", "parked"].includes((await stateOf(saga, id)) ?? ""));
  const waits = (sagaId: string) => sql`select name, kind, outcome, ended_at is not null as ended from saga_waits_test.saga_waits where saga_id = ${sagaId} order by started_at`;

  it("suspends on a durable timer, holding no lease, and completes once it fires", async () => {
    const saga = runner("timer", {
      steps: [
        act("a"),
        {
          name: "cool-off",
          run: async ({ id }, ctx) => {
            log.push(`${id}:cool-off`);
            await ctx.sleep("cool-off", 400);
            log.push(`${id}:cooled`);
          },
          compensate: async () => {},
        },
        act("b"),
      ],
    });
    await saga.startSweeping();
    const sagaId = await start(saga, "timer");
    await until("the saga to wait", async () => (await stateOf(saga, "timer")) === "waiting");
    const [row] = await sql`select lease_owner, wake_at > now() as due_later, waiting_for from saga_waits_test.sagas where id = ${sagaId}`;
    expect(row).toEqual({ lease_owner: null, due_later: true, waiting_for: null });
    expect(await waits(sagaId)).toEqual([{ name: "cool-off", kind: "timer", outcome: null, ended: false }]);
    await settled(saga, "timer");
    expect(await stateOf(saga, "timer")).toBe("completed");
    expect(ran("timer")).toEqual(["a", "cool-off", "cool-off", "cooled", "b"]);
    expect(await waits(sagaId)).toEqual([{ name: "cool-off", kind: "timer", outcome: "fired", ended: true }]);
    const step = (await saga.get("timer"))!.steps[1]!;
    expect(step.phases.map((p) => `${p.kind}:${p.attempt}:${p.outcome}`)).toEqual(["attempt:1:waiting", "timer:0:fired", "attempt:2:succeeded"]);
    const timer = step.phases[1]!;
    expect(timer.dueAt!.getTime() - timer.startedAt.getTime()).toBeGreaterThanOrEqual(399);
    expect(timer.endedAt!.getTime()).toBeGreaterThanOrEqual(timer.dueAt!.getTime());
  });

  /** A step that waits for "confirmed" and records, once per run past the wait, what it got. */
  const confirmStep = (timeoutMs = 5_000): SagaStep<Payload> => ({
    name: "confirm",
    run: async ({ id }, ctx) => {
      log.push(`${id}:confirm`);
      const payload = await ctx.awaitSignal("confirmed", { timeoutMs });
      log.push(`${id}:confirmed:${JSON.stringify(payload)}`);
    },
    compensate: async ({ id }) => void log.push(`${id}:undo-confirm`),
  });

  it("wakes a saga waiting for a signal, once however often the signal is delivered", async () => {
    const saga = runner("signalled", { steps: [act("a"), confirmStep(), act("b")] });
    const sagaId = await start(saga, "signalled");
    await until("the saga to wait", async () => (await stateOf(saga, "signalled")) === "waiting");
    expect(await saga.deliverSignal(undefined, { aggregateId: "signalled", name: "confirmed", signalId: "s-1", payload: { by: "customer" } })).toBe("delivered");
    expect(await saga.deliverSignal(undefined, { aggregateId: "signalled", name: "confirmed", signalId: "s-1", payload: { by: "replay" } })).toBe("duplicate");
    await settled(saga, "signalled");
    expect(await stateOf(saga, "signalled")).toBe("completed");
    expect(ran("signalled")).toEqual(["a", "confirm", "confirm", 'confirmed:{"by":"customer"}', "b"]);
    const signals = await sql`select signal_id, consumed_at is not null as consumed from saga_waits_test.saga_signals where saga_id = ${sagaId}`;
    expect(signals).toEqual([{ signal_id: "s-1", consumed: true }]);
    expect(await waits(sagaId)).toEqual([{ name: "confirmed", kind: "signal", outcome: "signalled", ended: true }]);
    expect((await saga.get("signalled"))!.signals).toMatchObject([{ name: "confirmed", signalId: "s-1" }]);
    expect(await saga.deliverSignal(undefined, { aggregateId: "signalled", name: "confirmed", signalId: "s-2" })).toBe("finished");
    expect(await saga.deliverSignal(undefined, { aggregateId: "no-such-saga", name: "confirmed", signalId: "s-3" })).toBe("not-found");
  });

  it("keeps a signal delivered before the wait, and the wait takes it at once", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const saga = runner("early", { steps: [{ ...act("a"), run: async ({ id }) => void (log.push(`${id}:a`), await gate) }, confirmStep(), act("b")] });
    const sagaId = await start(saga, "early");
    await until("step a to run", async () => ran("early").includes("a"));
    expect(await saga.deliverSignal(undefined, { aggregateId: "early", name: "confirmed", signalId: "e-1", payload: { n: 1 } })).toBe("delivered");
    expect(await saga.deliverSignal(undefined, { aggregateId: "early", name: "confirmed", signalId: "e-1", payload: { n: 2 } })).toBe("duplicate");
    release();
    await settled(saga, "early");
    expect(await stateOf(saga, "early")).toBe("completed");
    expect(ran("early")).toEqual(["a", "confirm", 'confirmed:{"n":1}', "b"]);
    expect(await waits(sagaId)).toEqual([{ name: "confirmed", kind: "signal", outcome: "signalled", ended: true }]);
  });

  it("compensates when a signal does not arrive in time", async () => {
    const saga = runner("too-late", { steps: [act("a"), confirmStep(300), act("pivot")] });
    await saga.startSweeping();
    const sagaId = await start(saga, "too-late");
    await settled(saga, "too-late");
    const found = (await saga.get("too-late"))!;
    expect(found).toMatchObject({ state: "compensated", failureReason: 'signal "confirmed" did not arrive within 300 ms' });
    expect(ran("too-late")).toEqual(["a", "confirm", "confirm", "undo-confirm", "undo-a"]);
    expect(cancelled.get("too-late")).toBe(found.failureReason);
    expect(await waits(sagaId)).toEqual([{ name: "confirmed", kind: "signal", outcome: "timed-out", ended: true }]);
    expect(found.steps[1]!.phases.map((p) => `${p.kind}:${p.outcome}`)).toEqual(["attempt:waiting", "signal:timed-out", "attempt:failed", "compensation:succeeded"]);
    expect(found.steps[1]!.phases[2]!.error).toBe('signal "confirmed" did not arrive within 300 ms');
    expect(new SignalTimeoutError("x")).toBeInstanceOf(StepRejectedError);
  });

  it("cancels a waiting saga promptly: woken, compensated, its wait interrupted", async () => {
    const saga = runner("cancel-waiting", { steps: [act("a"), confirmStep(60_000), act("pivot")] });
    const sagaId = await start(saga, "cancel-waiting");
    await until("the saga to wait", async () => (await stateOf(saga, "cancel-waiting")) === "waiting");
    expect(await saga.requestCancel("cancel-waiting")).toBe("accepted");
    await settled(saga, "cancel-waiting");
    expect(await saga.get("cancel-waiting")).toMatchObject({ state: "compensated", failureReason: "cancelled at the customer's request" });
    expect(ran("cancel-waiting")).toEqual(["a", "confirm", "undo-confirm", "undo-a"]);
    expect(await waits(sagaId)).toEqual([{ name: "confirmed", kind: "signal", outcome: "interrupted", ended: true }]);
  });
});
