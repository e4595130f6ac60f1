import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import type { SQL } from "drizzle-orm";
import type { PgDialect } from "drizzle-orm/pg-core";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { createSagaRunner, SignalTimeoutError, StepRejectedError, type SagaDefinition, type SagaRunner, type SagaStep, type SagaStepView } from "./saga-runner.js";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { createSagaTables, type SagaPhase } from "./tables.js";

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
    // Spans with real ids, so that attempts have trace ids (recorded, exported nowhere).
    new NodeTracerProvider().register();
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
    // Read in one statement, since the timer may fire any moment on a loaded machine.
    const waiting = async () =>
      (await sql`select state, lease_owner, wake_at = w.due_at as wakes_when_due, waiting_for, w.outcome
        from saga_waits_test.sagas s join saga_waits_test.saga_waits w on w.saga_id = s.id where s.id = ${sagaId}`)[0];
    let row: Awaited<ReturnType<typeof waiting>>;
    await until("the saga to wait", async () => (row = await waiting())?.["state"] === "waiting");
    expect(row).toMatchObject({ lease_owner: null, wakes_when_due: true, waiting_for: null, outcome: null });
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

  it("lets an operator compensate a waiting saga at once, and refuses to retry one", async () => {
    const saga = runner("operator-waiting", { steps: [act("a"), confirmStep(60_000), act("pivot")] });
    await start(saga, "op-waiting");
    await until("the saga to wait", async () => (await stateOf(saga, "op-waiting")) === "waiting");
    expect(await saga.retry("op-waiting")).toEqual({ outcome: "refused", reason: "saga is waiting; only a parked saga can be retried" });
    expect(await saga.compensate("op-waiting", "customer gave up on 3-D Secure")).toEqual({ outcome: "accepted", state: "compensating" });
    await settled(saga, "op-waiting");
    expect(await saga.get("op-waiting")).toMatchObject({ state: "compensated", failureReason: "customer gave up on 3-D Secure" });
    expect(ran("op-waiting")).toEqual(["a", "confirm", "undo-confirm", "undo-a"]);
  });

  it("refuses to cancel a saga waiting past the point of no return", async () => {
    const saga = runner("late-wait", { steps: [act("a"), { name: "pivot", run: async (_p, ctx) => ctx.sleep("settle-down", 60_000) }] });
    await start(saga, "late-wait");
    await until("the saga to wait", async () => (await stateOf(saga, "late-wait")) === "waiting");
    expect(await saga.requestCancel("late-wait")).toBe("past-point-of-no-return");
    expect((await saga.compensate("late-wait", "no")).outcome).toBe("refused");
    expect(await stateOf(saga, "late-wait")).toBe("waiting");
  });

  it("does not sleep through a signal delivered between looking for it and suspending", async () => {
    // The signal goes in right after the step looked for it and found none, before it suspends.
    let deliver: (() => Promise<unknown>) | undefined;
    const racing = new Proxy(db, {
      get(target, key, receiver) {
        if (key !== "execute") return Reflect.get(target, key, receiver);
        return async (statement: SQL) => {
          const result = await target.execute(statement);
          const text = (target as unknown as { dialect: PgDialect }).dialect.sqlToQuery(statement).sql;
          // checkWait, the one statement that records a wait.
          const lookedForSignal = text.includes('insert into "saga_waits_test"."saga_waits"');
          if (deliver && lookedForSignal) {
            const delivering = deliver;
            deliver = undefined;
            await delivering();
          }
          return result;
        };
      },
    });
    const saga = createSagaRunner<Payload>({
      db: racing,
      tables,
      logger: silentLogger,
      policy,
      definition: { type: "race", version: 1, steps: [act("a"), confirmStep(60_000), act("b")], onCompensated: async () => {} },
    });
    runners.push(saga);
    deliver = () => saga.deliverSignal(undefined, { aggregateId: "raced", name: "confirmed", signalId: "r-1", payload: { raced: true } });
    await start(saga, "raced");
    // Not sweeping: only the runner's own wake can finish it before the wait's minute is up.
    await settled(saga, "raced");
    expect(await stateOf(saga, "raced")).toBe("completed");
    expect(ran("raced")).toEqual(["a", "confirm", "confirm", 'confirmed:{"raced":true}', "b"]);
  });

  it("stops an attempt's timeout at a wait and starts it afresh after: a wait is no slow participant", async () => {
    // 250 ms of work on either side of the wait, under a 400 ms timeout per attempt.
    const work = () => new Promise((resolve) => setTimeout(resolve, 250));
    const saga = runner("paused-clock", {
      steps: [
        {
          name: "slow-confirm",
          timeoutMs: 400,
          run: async ({ id }, ctx) => {
            await work();
            log.push(`${id}:before`);
            await ctx.awaitSignal("confirmed", { timeoutMs: 60_000 });
            await work();
            log.push(`${id}:after`);
          },
          compensate: async () => {},
        },
      ],
    });
    await start(saga, "paused");
    await until("the saga to wait", async () => (await stateOf(saga, "paused")) === "waiting");
    expect(await saga.deliverSignal(undefined, { aggregateId: "paused", name: "confirmed", signalId: "p-1" })).toBe("delivered");
    await settled(saga, "paused");
    expect(await stateOf(saga, "paused")).toBe("completed");
    expect(ran("paused")).toEqual(["before", "before", "after"]);
    expect((await saga.get("paused"))!.steps[0]!.phases.map((p) => `${p.kind}:${p.outcome}`)).toEqual(["attempt:waiting", "signal:signalled", "attempt:succeeded"]);
  });

  it("keeps each step's attempts in its timeline: retries with their error and backoff, then compensations", async () => {
    let tries = 0;
    const saga = runner("phases", {
      steps: [
        {
          ...act("a"),
          run: async () => {
            if (++tries < 3) throw new Error("connection reset");
          },
        },
        {
          ...act("b"),
          run: async () => {
            throw new StepRejectedError("card declined");
          },
        },
        act("pivot"),
      ],
    });
    await start(saga, "phased");
    await settled(saga, "phased");
    const [a, b] = (await saga.get("phased"))!.steps as [SagaStepView, SagaStepView];
    const brief = (phases: SagaPhase[]) => phases.map((p) => `${p.kind}:${p.attempt}:${p.outcome}:${p.error ?? ""}`);
    expect(brief(a.phases)).toEqual(["attempt:1:retrying:connection reset", "attempt:2:retrying:connection reset", "attempt:3:succeeded:", "compensation:1:succeeded:"]);
    expect(brief(b.phases)).toEqual(["attempt:1:failed:card declined", "compensation:1:succeeded:"]);
    for (const phase of a.phases.slice(0, 2)) expect(phase.backoffMs).toBeGreaterThanOrEqual(0);
    for (const phase of [...a.phases, ...b.phases]) {
      expect(phase.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(phase.endedAt!.getTime()).toBeGreaterThanOrEqual(phase.startedAt.getTime());
    }
  });

  it("bounds a step's timeline to its first and last 50 phases", async () => {
    const saga = runner("bounded", { steps: [act("a"), act("b")] });
    const sagaId = await start(saga, "bounded");
    await settled(saga, "bounded");
    // 130 attempts of a step, as hours of retries would leave them, then one more.
    const phases = Array.from({ length: 130 }, (_, i) => ({ kind: "attempt", attempt: i + 1, startedAt: new Date(Date.now() - 60_000 + i).toISOString(), endedAt: new Date(Date.now() - 60_000 + i).toISOString(), outcome: "retrying" }));
    await sql`update saga_waits_test.saga_steps set phases = ${JSON.stringify(phases)}::jsonb, state = 'started' where saga_id = ${sagaId} and step_index = 1`;
    await sql`update saga_waits_test.sagas set state = 'running', current_step = 'b', attempts = 130 where id = ${sagaId}`;
    saga.drive(sagaId);
    await settled(saga, "bounded");
    const b = (await saga.get("bounded"))!.steps[1]!;
    expect(b.phases).toHaveLength(100);
    expect(b.phases.slice(0, 50).map((p) => p.attempt)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(b.phases.at(-1)).toMatchObject({ attempt: 131, outcome: "succeeded" });
    expect(b.phases.at(-2)).toMatchObject({ attempt: 130 });
  });

  it("marks an attempt left open by a process that died as interrupted when the next starts", async () => {
    const saga = runner("interrupted", { steps: [act("a"), act("b")] });
    const sagaId = await start(saga, "died");
    await settled(saga, "died");
    // What a driver killed mid-attempt of b leaves: b started with an open attempt, an expired lease.
    const open = [{ kind: "attempt", attempt: 1, startedAt: new Date().toISOString() }];
    await sql`update saga_waits_test.saga_steps set phases = ${JSON.stringify(open)}::jsonb, state = 'started' where saga_id = ${sagaId} and step_index = 1`;
    await sql`update saga_waits_test.sagas set state = 'running', current_step = 'b', attempts = 1, lease_owner = 'dead', lease_expires_at = now() - interval '1 second' where id = ${sagaId}`;
    await saga.resumeUnfinished();
    await settled(saga, "died");
    expect((await saga.get("died"))!.steps[1]!.phases.map((p) => `${p.attempt}:${p.outcome}`)).toEqual(["1:interrupted", "2:succeeded"]);
  });

  it("costs the happy path one statement per step boundary, as before waits and phases", async () => {
    const saga = runner("cost", { steps: [act("a"), act("b"), act("pivot")] });
    const before = sent.length;
    // As order does: created in the caller's statement, then driven without reading it back.
    const sagaId = await saga.create(db, "cost", { id: "cost" });
    saga.drive(sagaId, { id: "cost" });
    await settled(saga, "cost");
    const ours = sent.slice(before).filter((statement) => statement.includes(sagaId));
    // The insert, then one statement per boundary: three starts and the completion.
    expect(ours).toHaveLength(1 + 4);
    expect((await saga.get("cost"))!.steps.map((step) => step.phases.map((p) => `${p.kind}:${p.outcome}`))).toEqual([["attempt:succeeded"], ["attempt:succeeded"], ["attempt:succeeded"]]);
  });

  it("finishes each saga on the version it started on, and refuses to start without a version still in use", async () => {
    const v1: SagaDefinition<Payload> = {
      type: "versioned",
      version: 1,
      steps: [act("v1-a"), { name: "v1-wait", run: async ({ id }, ctx) => void (log.push(`${id}:v1-wait`), await ctx.awaitSignal("go", { timeoutMs: 60_000 })), compensate: async () => {} }, act("v1-b")],
      onCompensated: async () => {},
    };
    const old = runner("versioned", v1);
    for (const id of ["old-1", "old-2"]) await start(old, id);
    await until("the v1 sagas to wait", async () => (await stateOf(old, "old-1")) === "waiting" && (await stateOf(old, "old-2")) === "waiting");
    await old.stop();

    const v2 = { version: 2, steps: [act("v2-a"), act("v2-b")] };
    const withoutV1 = runner("versioned", v2);
    const refusal = 'saga "versioned": 2 unfinished sagas are on version 1, which this build no longer defines; keep version 1 in olderVersions until they finish';
    await expect(withoutV1.checkVersions()).rejects.toThrow(refusal);
    await expect(withoutV1.startSweeping()).rejects.toThrow(refusal);

    const current = runner("versioned", v2, [v1]);
    await current.startSweeping();
    for (const id of ["old-1", "old-2"]) expect(await current.deliverSignal(undefined, { aggregateId: id, name: "go", signalId: `${id}-go` })).toBe("delivered");
    await start(current, "new-1");
    for (const id of ["old-1", "old-2", "new-1"]) await settled(current, id);
    expect(ran("old-1")).toEqual(["v1-a", "v1-wait", "v1-wait", "v1-b"]);
    expect(ran("old-2")).toEqual(["v1-a", "v1-wait", "v1-wait", "v1-b"]);
    expect(ran("new-1")).toEqual(["v2-a", "v2-b"]);
    expect((await current.get("old-1"))!.version).toBe(1);
    expect((await current.get("new-1"))!).toMatchObject({ version: 2, state: "completed" });
    await expect(withoutV1.checkVersions()).resolves.toBeUndefined();
  });
});
