import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import type { SQL } from "drizzle-orm";
import type { PgDialect } from "drizzle-orm/pg-core";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { pino } from "pino";
import { createSagaRunner, SignalTimeoutError, StepRejectedError, type SagaDefinition, type SagaPolicy, type SagaRunner, type SagaStep, type SagaStepView } from "./saga-runner.js";
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
  let url: string;
  let sql: postgres.Sql;
  let db: ReturnType<typeof drizzle>;
  /** Every statement sent, by the saga id it names (for counting one saga's statements). */
  const sent: string[] = [];
  const runners: SagaRunner<Payload>[] = [];

  beforeAll(async () => {
    // Spans with real ids, so that attempts have trace ids (recorded, exported nowhere).
    new NodeTracerProvider().register();
    url = await createTestDatabase();
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
  function runner(
    type: string,
    definition: Omit<SagaDefinition<Payload>, "onCompensated" | "type" | "version"> & { version?: number },
    olderVersions: SagaDefinition<Payload>[] = [],
    options: { policy?: Partial<SagaPolicy>; logger?: pino.Logger } = {},
  ) {
    const created = createSagaRunner<Payload>({
      db,
      tables,
      logger: options.logger ?? silentLogger,
      policy: { ...policy, ...options.policy },
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
    expect(await saga.deliverSignal({ aggregateId: "signalled", name: "confirmed", signalId: "s-1", payload: { by: "customer" } })).toBe("delivered");
    expect(await saga.deliverSignal({ aggregateId: "signalled", name: "confirmed", signalId: "s-1", payload: { by: "replay" } })).toBe("duplicate");
    await settled(saga, "signalled");
    expect(await stateOf(saga, "signalled")).toBe("completed");
    expect(ran("signalled")).toEqual(["a", "confirm", "confirm", 'confirmed:{"by":"customer"}', "b"]);
    const signals = await sql`select signal_id, consumed_at is not null as consumed from saga_waits_test.saga_signals where saga_id = ${sagaId}`;
    expect(signals).toEqual([{ signal_id: "s-1", consumed: true }]);
    expect(await waits(sagaId)).toEqual([{ name: "confirmed", kind: "signal", outcome: "signalled", ended: true }]);
    expect((await saga.get("signalled", { signals: true }))!.signals).toMatchObject([{ name: "confirmed", signalId: "s-1" }]);
    expect(await saga.deliverSignal({ aggregateId: "signalled", name: "confirmed", signalId: "s-2" })).toBe("finished");
    expect(await saga.deliverSignal({ aggregateId: "no-such-saga", name: "confirmed", signalId: "s-3" })).toBe("not-found");
  });

  it("keeps a signal delivered before the wait, and the wait takes it at once", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const saga = runner("early", { steps: [{ ...act("a"), run: async ({ id }) => void (log.push(`${id}:a`), await gate) }, confirmStep(), act("b")] });
    const sagaId = await start(saga, "early");
    await until("step a to run", async () => ran("early").includes("a"));
    expect(await saga.deliverSignal({ aggregateId: "early", name: "confirmed", signalId: "e-1", payload: { n: 1 } })).toBe("delivered");
    expect(await saga.deliverSignal({ aggregateId: "early", name: "confirmed", signalId: "e-1", payload: { n: 2 } })).toBe("duplicate");
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
    deliver = () => saga.deliverSignal({ aggregateId: "raced", name: "confirmed", signalId: "r-1", payload: { raced: true } });
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
    expect(await saga.deliverSignal({ aggregateId: "paused", name: "confirmed", signalId: "p-1" })).toBe("delivered");
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
    for (const id of ["old-1", "old-2"]) expect(await current.deliverSignal({ aggregateId: id, name: "go", signalId: `${id}-go` })).toBe("delivered");
    await start(current, "new-1");
    for (const id of ["old-1", "old-2", "new-1"]) await settled(current, id);
    expect(ran("old-1")).toEqual(["v1-a", "v1-wait", "v1-wait", "v1-b"]);
    expect(ran("old-2")).toEqual(["v1-a", "v1-wait", "v1-wait", "v1-b"]);
    expect(ran("new-1")).toEqual(["v2-a", "v2-b"]);
    expect((await current.get("old-1"))!.version).toBe(1);
    expect((await current.get("new-1"))!).toMatchObject({ version: 2, state: "completed" });
    await expect(withoutV1.checkVersions()).resolves.toBeUndefined();
  });
  /** Reads a statement's SQL text as drizzle renders it. */
  const textOf = (statement: SQL) => (db as unknown as { dialect: PgDialect }).dialect.sqlToQuery(statement).sql;

  it("times out a wait whose signal came after its due time, though it came before the saga woke", async () => {
    // Not sweeping, and the timeout above sweepMs (no wake timer): nothing wakes the saga until the test does.
    const saga = runner("late-signal", { steps: [act("a"), confirmStep(300), act("pivot")] });
    const sagaId = await start(saga, "late-signal");
    await until("the saga to wait", async () => (await stateOf(saga, "late-signal")) === "waiting");
    await until("the wait to be past due", async () => (await sql`select due_at < now() as past from saga_waits_test.saga_waits where saga_id = ${sagaId}`)[0]?.["past"] === true);
    // Refused: whatever arrives now, the step times out.
    expect(await saga.deliverSignal({ aggregateId: "late-signal", name: "confirmed", signalId: "l-1" })).toBe("closed");
    // One that got in anyway (received after the due time) is not taken either.
    await sql`insert into saga_waits_test.saga_signals (saga_id, signal_id, name, payload) values (${sagaId}, 'l-2', 'confirmed', '{}')`;
    await saga.resumeUnfinished();
    await settled(saga, "late-signal");
    expect(await saga.get("late-signal")).toMatchObject({ state: "compensated", failureReason: 'signal "confirmed" did not arrive within 300 ms' });
    expect(ran("late-signal")).toEqual(["a", "confirm", "confirm", "undo-confirm", "undo-a"]);
    expect(await sql`select signal_id, consumed_at from saga_waits_test.saga_signals where saga_id = ${sagaId}`).toEqual([{ signal_id: "l-2", consumed_at: null }]);
    expect(await sql`select outcome, signal_id from saga_waits_test.saga_waits where saga_id = ${sagaId}`).toEqual([{ outcome: "timed-out", signal_id: null }]);
  });

  it("refuses a signal while the saga compensates", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const saga = runner("signal-compensating", { steps: [{ ...act("a"), compensate: async ({ id }) => void (log.push(`${id}:undo-a`), await gate) }, confirmStep(60_000), act("pivot")] });
    await start(saga, "sig-comp");
    await until("the saga to wait", async () => (await stateOf(saga, "sig-comp")) === "waiting");
    expect(await saga.requestCancel("sig-comp")).toBe("accepted");
    await until("a's compensation to run", async () => ran("sig-comp").includes("undo-a"));
    expect(await stateOf(saga, "sig-comp")).toBe("compensating");
    expect(await saga.deliverSignal({ aggregateId: "sig-comp", name: "confirmed", signalId: "c-1" })).toBe("closed");
    release();
    await settled(saga, "sig-comp");
    expect(await stateOf(saga, "sig-comp")).toBe("compensated");
    expect((await saga.get("sig-comp", { signals: true }))!.signals).toEqual([]);
  });

  it("keeps at most maxSignalsPerSaga signals per saga, and reads them only when asked", async () => {
    const saga = runner("capped", { steps: [act("a"), confirmStep(60_000), act("pivot")] }, [], { policy: { maxSignalsPerSaga: 3 } });
    await start(saga, "capped");
    await until("the saga to wait", async () => (await stateOf(saga, "capped")) === "waiting");
    for (const id of ["k-1", "k-2"]) expect(await saga.deliverSignal({ aggregateId: "capped", name: "other", signalId: id })).toBe("delivered");
    expect(await saga.deliverSignal({ aggregateId: "capped", name: "confirmed", signalId: "k-3" })).toBe("delivered");
    await settled(saga, "capped");
    expect(await saga.deliverSignal({ aggregateId: "capped", name: "other", signalId: "k-1" })).toBe("duplicate");
    // Even a finished saga answers finished, not too-many; a running one is refused past the cap:
    expect(await saga.deliverSignal({ aggregateId: "capped", name: "other", signalId: "k-4" })).toBe("finished");
    const another = runner("capped-waiting", { steps: [act("a"), confirmStep(60_000), act("pivot")] }, [], { policy: { maxSignalsPerSaga: 3 } });
    await start(another, "capped-2");
    await until("the saga to wait", async () => (await stateOf(another, "capped-2")) === "waiting");
    for (const id of ["m-1", "m-2", "m-3"]) expect(await another.deliverSignal({ aggregateId: "capped-2", name: "other", signalId: id })).toBe("delivered");
    expect(await another.deliverSignal({ aggregateId: "capped-2", name: "confirmed", signalId: "m-4" })).toBe("too-many");
    expect(await another.deliverSignal({ aggregateId: "capped-2", name: "other", signalId: "m-2" })).toBe("duplicate");
    expect(await stateOf(another, "capped-2")).toBe("waiting");
    expect((await another.get("capped-2"))!.signals).toBeUndefined();
    expect((await another.get("capped-2", { signals: true }))!.signals!.map((signal) => signal.signalId)).toEqual(["m-1", "m-2", "m-3"]);
    // Concurrent deliveries meet on the saga row's lock: none slips past the cap. They all
    // start while the row is held, so each would count the signals kept before any went in.
    const racing = runner("capped-race", { steps: [act("a"), confirmStep(60_000), act("pivot")] }, [], { policy: { maxSignalsPerSaga: 2 } });
    const racingId = await start(racing, "capped-3");
    await until("the saga to wait", async () => (await stateOf(racing, "capped-3")) === "waiting");
    // Connections of their own: the runner's pool (four) is all deliveries meanwhile.
    const side = postgres(url, { max: 2, onnotice: () => {} });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let held: () => void = () => {};
    const holding = new Promise<void>((resolve) => (held = resolve));
    const holder = side.begin(async (tx) => {
      await tx`select from saga_waits_test.sagas where id = ${racingId} for update`;
      held();
      await released;
    });
    await holding;
    const delivering = Promise.all(Array.from({ length: 6 }, (_, i) => racing.deliverSignal({ aggregateId: "capped-3", name: "other", signalId: `r-${i}` })));
    // The pool's four connections, each a delivery blocked on the row.
    await until("four deliveries to wait on the row", async () => (await side`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)[0]!["n"] >= 4);
    release();
    await holder;
    await side.end();
    const outcomes = await delivering;
    expect(outcomes.filter((outcome) => outcome === "delivered")).toHaveLength(2);
    expect(outcomes.filter((outcome) => outcome === "too-many")).toHaveLength(4);
    expect(await sql`select count(*)::int as n from saga_waits_test.saga_signals where saga_id = ${racingId}`).toEqual([{ n: 2 }]);
  });

  it("takes a signal once: a later wait of the same name in another step needs a signal of its own", async () => {
    const waitFor = (name: string): SagaStep<Payload> => ({
      name,
      run: async ({ id }, ctx) => void log.push(`${id}:${name}:${JSON.stringify(await ctx.awaitSignal("x", { timeoutMs: 60_000 }))}`),
      compensate: async () => {},
    });
    const saga = runner("twice", { steps: [waitFor("first"), waitFor("second"), act("b")] });
    const sagaId = await start(saga, "twice");
    expect(await saga.deliverSignal({ aggregateId: "twice", name: "x", signalId: "x-1", payload: { n: 1 } })).toBe("delivered");
    await until("the second wait", async () => (await sql`select 1 from saga_waits_test.saga_waits where saga_id = ${sagaId} and step_index = 1`).length === 1);
    await until("the saga to wait", async () => (await stateOf(saga, "twice")) === "waiting");
    expect(ran("twice")).not.toContain("b");
    expect(await saga.deliverSignal({ aggregateId: "twice", name: "x", signalId: "x-2", payload: { n: 2 } })).toBe("delivered");
    await settled(saga, "twice");
    expect(await stateOf(saga, "twice")).toBe("completed");
    expect(ran("twice").filter((entry) => entry.includes(":{"))).toEqual(['first:{"n":1}', 'second:{"n":2}']);
    expect(await sql`select step_index, signal_id from saga_waits_test.saga_waits where saga_id = ${sagaId} order by step_index`).toEqual([
      { step_index: 0, signal_id: "x-1" },
      { step_index: 1, signal_id: "x-2" },
    ]);
  });

  it("refuses to cancel, compensate or retry a saga on a version this build does not define, and says so on every sweep", async () => {
    const v2: SagaDefinition<Payload> = { type: "holes", version: 2, steps: [act("a"), confirmStep(60_000), act("pivot")], onCompensated: async () => {} };
    const newer = runner("holes", v2, [{ ...v2, version: 1 }]);
    await start(newer, "holey");
    await until("the saga to wait", async () => (await stateOf(newer, "holey")) === "waiting");
    const logged: { msg: string; problem?: string }[] = [];
    const logger = pino({ level: "error" }, { write: (line: string) => void logged.push(JSON.parse(line) as { msg: string }) });
    const older = runner("holes", { steps: [act("a"), { name: "pivot", run: async () => {} }] }, [], { logger });
    const why = "saga is on version 2, which this build does not define; a replica running it must act on it";
    await expect(older.requestCancel("holey")).rejects.toThrow(`cannot cancel: ${why}`);
    await expect(older.requestCancel("holey")).rejects.toMatchObject({ kind: "failed_precondition" });
    expect(await older.compensate("holey", "no")).toEqual({ outcome: "refused", reason: why });
    expect(await older.retry("holey")).toEqual({ outcome: "refused", reason: why });
    expect(await stateOf(newer, "holey")).toBe("waiting");
    expect((await newer.get("holey"))!.cancelRequested).toBe(false);
    // Started (checkVersions passes while no saga is on an undefined version), then one appears.
    const sweeping = runner("holes-late", { steps: [act("a")] }, [], { logger });
    await sweeping.startSweeping();
    await sql`insert into saga_waits_test.sagas (id, type, version, aggregate_id, payload) values (gen_random_uuid(), 'holes-late', 7, 'holey-late', '{}')`;
    await until("the sweep to log the version", async () => logged.some((line) => line.problem?.includes("on version 7") === true));
    expect(logged.find((line) => line.problem?.includes("on version 7"))!.msg).toBe("unfinished sagas are on a version this build does not define; a replica that defines it must drive them");
  });

  it("drives a saga again when it is signalled while its driver is still finishing the suspension", async () => {
    // The signal goes in right after the suspension committed, before its driver has let go.
    let deliver: (() => Promise<unknown>) | undefined;
    const racing = new Proxy(db, {
      get(target, key, receiver) {
        if (key !== "execute") return Reflect.get(target, key, receiver);
        return async (statement: SQL) => {
          const result = await target.execute(statement);
          if (deliver && textOf(statement).includes("set state = 'waiting'")) {
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
      definition: { type: "late-wake", version: 1, steps: [act("a"), confirmStep(60_000), act("b")], onCompensated: async () => {} },
    });
    runners.push(saga);
    let delivered: unknown;
    deliver = async () => (delivered = await saga.deliverSignal({ aggregateId: "late-wake", name: "confirmed", signalId: "w-1", payload: { late: true } }));
    await start(saga, "late-wake");
    // Not sweeping, and the wait's minute is past any wake timer: only driving again finishes it.
    await settled(saga, "late-wake");
    expect(delivered).toBe("delivered");
    expect(ran("late-wake")).toEqual(["a", "confirm", "confirm", 'confirmed:{"late":true}', "b"]);
  });

  it("sweeps at most sweepBatch sagas a pass, the most overdue first", async () => {
    const saga = runner("batched", { steps: [act("a")] }, [], { policy: { sweepBatch: 2 } });
    // Created (leased to this runner) but not driven: the sweep's to pick up.
    for (const id of ["batch-1", "batch-2", "batch-3"]) await saga.create(db, id, { id });
    expect(await saga.resumeUnfinished()).toBe(2);
    for (const id of ["batch-1", "batch-2"]) await settled(saga, id);
    expect(await stateOf(saga, "batch-3")).toBe("running");
    expect(await saga.resumeUnfinished()).toBe(1);
    await settled(saga, "batch-3");
    const busy = runner("batched-busy", { steps: [act("a")] }, [], { policy: { maxInFlight: 0 } });
    await busy.create(db, "batch-busy", { id: "batch-busy" });
    expect(await busy.resumeUnfinished()).toBe(0);
  });

  it("gives a customer-safe failure reason for a step that fails unexpectedly, the detail kept for operators", async () => {
    const saga = runner("unsafe-reason", {
      steps: [
        act("a"),
        {
          ...act("b"),
          run: async () => {
            throw new Error("connect ECONNREFUSED 10.0.0.7:5432");
          },
        },
        act("pivot"),
      ],
    });
    await start(saga, "unsafe");
    await settled(saga, "unsafe");
    expect(await saga.get("unsafe")).toMatchObject({ state: "compensated", failureReason: "b did not succeed", lastError: "connect ECONNREFUSED 10.0.0.7:5432" });
    expect(cancelled.get("unsafe")).toBe("b did not succeed");
  });
});
