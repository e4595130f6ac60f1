import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { TaskCancelledError } from "cockatiel";
import { classifySagaFailure, createSagaRunner, StepRejectedError, type SagaStep } from "./saga-runner.js";
import { createSagaTables } from "./tables.js";

const schema = pgSchema("saga_test");
const tables = createSagaTables(schema);
const fastPolicy = { stepTimeoutMs: 500, stepAttempts: 3, compensationAttempts: 3, initialBackoffMs: 5, maxBackoffMs: 20, leaseMs: 60_000, sweepMs: 100 };

interface Payload {
  id: string;
}

/** Steps that record what ran, in order, and fail as each test scripts them to. */
function scriptedSteps(script: Partial<Record<string, (attempt: number) => void>> = {}) {
  const log: string[] = [];
  const attempts = new Map<string, number>();
  const act = (name: string) => async () => {
    const attempt = (attempts.get(name) ?? 0) + 1;
    attempts.set(name, attempt);
    log.push(name);
    script[name]?.(attempt);
  };
  const steps: SagaStep<Payload>[] = [
    { name: "a", run: act("a"), compensate: act("undo-a") },
    { name: "b", run: act("b"), compensate: act("undo-b") },
    { name: "pivot", run: act("pivot") },
    { name: "after", run: act("after") },
  ];
  return { steps, log };
}

describe("saga runner against real Postgres", () => {
  let sql: ReturnType<typeof connect>;
  let db: ReturnType<typeof drizzle>;

  beforeAll(async () => {
    const url = await createTestDatabase();
    sql = connect(url);
    db = drizzle(sql);
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema, ...tables }))) await sql.unsafe(statement);
  });
  afterAll(() => sql.end());

  function runnerFor(steps: SagaStep<Payload>[], cancelled: Map<string, string>) {
    return createSagaRunner<Payload>({
      db,
      tables,
      logger: silentLogger,
      policy: fastPolicy,
      definition: { type: "test", version: 1, steps, onCompensated: async (_tx, payload, reason) => void cancelled.set(payload.id, reason) },
    });
  }

  async function settle(steps: SagaStep<Payload>[], id: string) {
    const cancelled = new Map<string, string>();
    const runner = runnerFor(steps, cancelled);
    const sagaId = await runner.create(db, id, { id });
    runner.drive(sagaId);
    for (let i = 0; i < 200; i++) {
      const saga = await runner.get(id);
      if (saga && !["running", "compensating"].includes(saga.state)) return { saga, cancelled, runner };
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`saga ${id} did not settle`);
  }

  const stepStates = async (sagaId: string) =>
    (await sql`select name, state, attempts from saga_test.saga_steps where saga_id = ${sagaId} order by step_index`).map((r) => `${r["name"]}:${r["state"]}:${r["attempts"]}`);

  it("runs every step once and completes", async () => {
    const { steps, log } = scriptedSteps();
    const { saga } = await settle(steps, "happy");
    expect(saga.state).toBe("completed");
    expect(log).toEqual(["a", "b", "pivot", "after"]);
    expect(await stepStates(saga.id)).toEqual(["a:succeeded:1", "b:succeeded:1", "pivot:succeeded:1", "after:succeeded:1"]);
  });

  it("waits out a participant shedding load past its attempts instead of compensating, while other failures still count", async () => {
    // stepAttempts is 3: five refusals for load, then success, must not cancel the order.
    const shedding = scriptedSteps({
      b: (attempt) => {
        if (attempt <= 5) throw new ConnectError("payment is overloaded", Code.ResourceExhausted);
      },
    });
    const { saga } = await settle(shedding.steps, "shed-then-served");
    expect(saga.state).toBe("completed");
    expect(await stepStates(saga.id)).toEqual(["a:succeeded:1", "b:succeeded:6", "pivot:succeeded:1", "after:succeeded:1"]);
    const away = scriptedSteps({
      b: () => {
        throw new ConnectError("payment is away", Code.Unavailable);
      },
    });
    expect((await settle(away.steps, "away-for-good")).saga.state).toBe("compensated");
  });

  it("counts a participant's refusals for load as attempts once they outlast shedWaitMs", async () => {
    const { steps } = scriptedSteps({
      b: () => {
        throw new ConnectError("request too large", Code.ResourceExhausted);
      },
    });
    const cancelled = new Map<string, string>();
    const runner = createSagaRunner<Payload>({
      db,
      tables,
      logger: silentLogger,
      policy: { ...fastPolicy, initialBackoffMs: 20, maxBackoffMs: 40, shedWaitMs: 150 },
      definition: { type: "test", version: 1, steps, onCompensated: async (_tx, payload, reason) => void cancelled.set(payload.id, reason) },
    });
    const sagaId = await runner.create(db, "shed-forever", { id: "shed-forever" });
    runner.drive(sagaId);
    let saga = await runner.get("shed-forever");
    for (let i = 0; i < 300 && saga && ["running", "compensating"].includes(saga.state); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      saga = await runner.get("shed-forever");
    }
    await runner.stop();
    expect(saga?.state).toBe("compensated");
    expect(saga!.steps[1]!.attempts).toBeGreaterThan(fastPolicy.stepAttempts); // it waited before counting
  });

  it("compensates every started step in reverse when a step says no", async () => {
    const { steps, log } = scriptedSteps({
      b: () => {
        throw new StepRejectedError("card declined");
      },
    });
    const { saga, cancelled } = await settle(steps, "declined");
    expect(saga).toMatchObject({ state: "compensated", failureReason: "card declined" });
    expect(log).toEqual(["a", "b", "undo-b", "undo-a"]);
    expect(cancelled.get("declined")).toBe("card declined");
  });

  it("retries a transient failure with backoff, then carries on", async () => {
    const { steps, log } = scriptedSteps({
      a: (attempt) => {
        if (attempt < 3) throw new Error("connection reset");
      },
    });
    const { saga } = await settle(steps, "flaky");
    expect(saga.state).toBe("completed");
    expect(log.filter((s) => s === "a")).toHaveLength(3);
    expect((await stepStates(saga.id))[0]).toBe("a:succeeded:3");
  });

  it("parks a saga whose compensation keeps failing, with the error kept", async () => {
    const { steps } = scriptedSteps({
      b: () => {
        throw new StepRejectedError("no");
      },
      "undo-a": () => {
        throw new Error("inventory unreachable");
      },
    });
    const { saga, cancelled } = await settle(steps, "stuck");
    expect(saga).toMatchObject({ state: "parked", lastError: "compensating a: inventory unreachable" });
    expect(cancelled.has("stuck")).toBe(false);
  });

  it("past the point of no return, retries beyond the step budget and never compensates", async () => {
    const { steps, log } = scriptedSteps({
      after: (attempt) => {
        if (attempt <= 5) throw new ConnectError("still down", Code.Unavailable); // stepAttempts is 3
      },
    });
    const { saga } = await settle(steps, "late");
    expect(saga.state).toBe("completed");
    expect((await stepStates(saga.id))[3]).toBe("after:succeeded:6");
    expect(log.some((s) => s.startsWith("undo"))).toBe(false);
  });

  it("parks a definitive rejection past the point of no return, for an operator", async () => {
    const { steps, log } = scriptedSteps({
      after: () => {
        throw new StepRejectedError("reservation not found");
      },
    });
    const { saga } = await settle(steps, "rejected-late");
    expect(saga).toMatchObject({ state: "parked", lastError: "after: reservation not found" });
    expect(log.some((s) => s.startsWith("undo"))).toBe(false);
  });

  it("resumes an unfinished saga from its persisted state after a crash", async () => {
    const { steps, log } = scriptedSteps();
    const cancelled = new Map<string, string>();
    const crashed = runnerFor(steps, cancelled);
    const sagaId = await crashed.create(db, "resumed", { id: "resumed" });
    // What a process killed after step "a" leaves behind: a's row, and a lease that expired.
    await sql`insert into saga_test.saga_steps (saga_id, step_index, name, state, attempts) values (${sagaId}, 0, 'a', 'succeeded', 1)`;
    await sql`update saga_test.sagas set lease_owner = 'dead-process', lease_expires_at = now() - interval '1 second' where id = ${sagaId}`;
    const fresh = runnerFor(steps, cancelled);
    expect(await fresh.resumeUnfinished()).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 200 && (await fresh.get("resumed"))?.state === "running"; i++) await new Promise((r) => setTimeout(r, 10));
    expect((await fresh.get("resumed"))?.state).toBe("completed");
    expect(log).toEqual(["b", "pivot", "after"]);
  });

  it("does not drive a saga whose lease another live runner holds", async () => {
    const { steps, log } = scriptedSteps();
    const runner = runnerFor(steps, new Map());
    const sagaId = await runner.create(db, "leased", { id: "leased" });
    await sql`update saga_test.sagas set lease_owner = 'other-replica', lease_expires_at = now() + interval '1 minute' where id = ${sagaId}`;
    expect(await runner.resumeUnfinished()).toBe(0);
    runner.drive(sagaId);
    await new Promise((resolve) => setTimeout(resolve, 300)); // time enough to run every step
    expect(log).toEqual([]);
    expect((await runner.get("leased"))?.state).toBe("running");
    await runner.stop();
  });

  it("compensates when cancellation is requested before the point of no return", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { steps, log } = scriptedSteps();
    steps[0] = { ...steps[0]!, run: async () => void (log.push("a"), await gate) };
    const cancelled = new Map<string, string>();
    const runner = runnerFor(steps, cancelled);
    const sagaId = await runner.create(db, "cancel-me", { id: "cancel-me" });
    runner.drive(sagaId);
    // Step a is under way (a fixed pause would not be, on a loaded machine).
    for (let i = 0; i < 500 && !log.includes("a"); i++) await new Promise((r) => setTimeout(r, 10));
    expect(await runner.requestCancel("cancel-me")).toBe("accepted");
    release();
    for (let i = 0; i < 200 && (await runner.get("cancel-me"))?.state !== "compensated"; i++) await new Promise((r) => setTimeout(r, 10));
    expect(cancelled.get("cancel-me")).toBe("cancelled at the customer's request");
    expect(log).toEqual(["a", "undo-a"]);
  });

  /** What the client stack raises while a participant's breaker is open. */
  const breakerOpen = () => new ConnectError("circuit breaker for shop.inventory.v1.InventoryService is open", Code.Unavailable);

  it("keeps retrying a compensation behind an open breaker past its attempt budget, and finishes it", async () => {
    const { steps, log } = scriptedSteps({
      b: () => {
        throw new StepRejectedError("card declined");
      },
      "undo-a": (attempt) => {
        if (attempt <= 3 * fastPolicy.compensationAttempts) throw breakerOpen();
      },
    });
    const { saga, cancelled } = await settle(steps, "breaker-compensation");
    expect(saga).toMatchObject({ state: "compensated", failureReason: "card declined" });
    expect(log.filter((s) => s === "undo-a")).toHaveLength(3 * fastPolicy.compensationAttempts + 1);
    expect(cancelled.get("breaker-compensation")).toBe("card declined");
  });

  it("parks a compensation on the participant's definitive answer at once", async () => {
    const { steps, log } = scriptedSteps({
      b: () => {
        throw new StepRejectedError("card declined");
      },
      "undo-a": () => {
        throw new ConnectError("reservation is committed", Code.FailedPrecondition);
      },
    });
    const { saga, cancelled } = await settle(steps, "definitive-compensation");
    expect(saga).toMatchObject({ state: "parked", lastError: "compensating a: [failed_precondition] reservation is committed" });
    expect(log.filter((s) => s === "undo-a")).toHaveLength(1);
    expect(cancelled.has("definitive-compensation")).toBe(false);
  });

  it("past the point of no return, rides out an open breaker and parks on a definitive answer", async () => {
    const late = scriptedSteps({
      after: (attempt) => {
        if (attempt <= 3 * fastPolicy.stepAttempts) throw breakerOpen();
      },
    });
    const recovered = await settle(late.steps, "breaker-late");
    expect(recovered.saga.state).toBe("completed");
    expect(late.log.filter((s) => s === "after")).toHaveLength(3 * fastPolicy.stepAttempts + 1);

    const refused = scriptedSteps({
      after: () => {
        throw new ConnectError("items: no such reservation", Code.InvalidArgument);
      },
    });
    const parked = await settle(refused.steps, "definitive-late");
    expect(parked.saga).toMatchObject({ state: "parked", lastError: "after: [invalid_argument] items: no such reservation" });
    expect(refused.log.filter((s) => s === "after")).toHaveLength(1);
    expect(refused.log.some((s) => s.startsWith("undo"))).toBe(false);
  });

  it("does not park a compensation that took effect when recording it fails; the sweep finishes it", async () => {
    // The database blinks exactly when the runner records that the refund went through.
    let blinkArmed = false;
    const blinkingDb = new Proxy(db, {
      get(target, key, receiver) {
        if (key !== "execute" || !blinkArmed) return Reflect.get(target, key, receiver);
        blinkArmed = false;
        return async () => {
          throw Object.assign(new Error("write CONNECTION_CLOSED"), { code: "CONNECTION_CLOSED" });
        };
      },
    });
    const { steps, log } = scriptedSteps({
      b: () => {
        throw new StepRejectedError("card declined");
      },
      "undo-a": (attempt) => {
        if (attempt === 1) blinkArmed = true;
      },
    });
    const cancelled = new Map<string, string>();
    const runner = createSagaRunner<Payload>({
      db: blinkingDb,
      tables,
      logger: silentLogger,
      policy: fastPolicy,
      definition: { type: "test-blink", version: 1, steps, onCompensated: async (_tx, payload, reason) => void cancelled.set(payload.id, reason) },
    });
    const sagaId = await runner.create(db, "blink", { id: "blink" });
    await runner.startSweeping();
    runner.drive(sagaId);
    let saga = await runner.get("blink");
    for (let i = 0; i < 300 && saga && ["running", "compensating"].includes(saga.state); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      saga = await runner.get("blink");
    }
    await runner.stop();
    expect(saga).toMatchObject({ state: "compensated", failureReason: "card declined" });
    // Run again by the sweep: compensations are idempotent, so that is safe.
    expect(log.filter((s) => s === "undo-a")).toHaveLength(2);
    expect(cancelled.get("blink")).toBe("card declined");
  });

  it("classifies failures: 'not now' is transient, the participant's 'no' is definitive, anything else unexpected", () => {
    for (const code of [Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Canceled]) expect(classifySagaFailure(new ConnectError("x", code))).toBe("transient");
    expect(classifySagaFailure(breakerOpen())).toBe("transient");
    expect(classifySagaFailure(new TaskCancelledError())).toBe("transient");
    expect(classifySagaFailure(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBe("transient");
    for (const code of [Code.FailedPrecondition, Code.InvalidArgument, Code.NotFound]) expect(classifySagaFailure(new ConnectError("x", code))).toBe("definitive");
    expect(classifySagaFailure(new StepRejectedError("no"))).toBe("definitive");
    // A proxy's 401/403/404 and a bug on the participant's side: bounded, then parked.
    for (const code of [Code.Internal, Code.Unauthenticated, Code.PermissionDenied, Code.Unimplemented]) expect(classifySagaFailure(new ConnectError("x", code))).toBe("unexpected");
    expect(classifySagaFailure(new TypeError("undefined is not a function"))).toBe("unexpected");
  });

  it("shows a retrying saga's progress in its row, and stop() interrupts the wait", async () => {
    const { steps } = scriptedSteps({
      b: () => {
        throw new StepRejectedError("card declined");
      },
      "undo-a": () => {
        throw breakerOpen();
      },
    });
    const runner = createSagaRunner<Payload>({
      db,
      tables,
      logger: silentLogger,
      policy: { ...fastPolicy, initialBackoffMs: 2_000, maxBackoffMs: 5_000, leaseMs: 60_000 },
      definition: { type: "test", version: 1, steps, onCompensated: async () => {} },
    });
    const sagaId = await runner.create(db, "retrying", { id: "retrying" });
    runner.drive(sagaId);
    // Jittered backoff can start near zero; wait for a wait long enough to interrupt.
    const waitingLong = (saga: Awaited<ReturnType<typeof runner.get>>) => (saga?.nextAttemptAt?.getTime() ?? 0) > Date.now() + 1_000;
    let saga = await runner.get("retrying");
    for (let i = 0; i < 500 && !waitingLong(saga); i++) {
      await new Promise((r) => setTimeout(r, 20));
      saga = await runner.get("retrying");
    }
    expect(waitingLong(saga)).toBe(true);
    expect(saga).toMatchObject({ state: "compensating", currentStep: "a (compensation)", lastError: "compensating a: [unavailable] circuit breaker for shop.inventory.v1.InventoryService is open" });
    expect(saga!.attempts).toBeGreaterThanOrEqual(1);
    expect(saga!.steps[0]).toMatchObject({ name: "a", lastError: saga!.lastError });
    // Operators list what is retrying: this saga alone (the others here are finished, or running with no retry due).
    expect((await runner.list({ retrying: true, limit: 100 })).map((row) => row.aggregateId)).toEqual(["retrying"]);
    const started = Date.now();
    await runner.stop();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await runner.get("retrying")).toMatchObject({ state: "compensating", leaseOwner: null });
  });
});
