import { randomUUID } from "node:crypto";
import { and, asc, eq, gte, inArray, isNull, lt, or, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { ExponentialBackoff, TimeoutStrategy, handleWhen, retry, timeout, wrap } from "cockatiel";
import { detachedFromDeadline } from "../deadline.js";
import type { Logger } from "../logger.js";
import type { SagaRow, SagaState, SagaStepRow, SagaTables, StepState } from "./tables.js";

/** A drizzle database or transaction over any service's schema. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the runner is schema-agnostic
export type SqlExecutor = PgDatabase<PgQueryResultHKT, any>;

/**
 * A definitive "no" from a step (out of stock, card declined). It is not retried: the saga
 * compensates instead, and `reason` becomes the saga's failure reason.
 */
export class StepRejectedError extends Error {
  override readonly name = "StepRejectedError";
}

/** This runner's claim on a saga lapsed and another took it over; it must stop acting. */
class LeaseLostError extends Error {
  constructor(sagaId: string) {
    super(`lost the lease on saga ${sagaId}`);
  }
}

export interface StepContext {
  /** Stable across retries and restarts: participants dedupe on it. */
  idempotencyKey: string;
  signal: AbortSignal;
}

export interface SagaStep<P> {
  name: string;
  /** Overrides the policy's per-attempt timeout, for a participant known to be slow. */
  timeoutMs?: number;
  run(payload: P, ctx: StepContext): Promise<void>;
  /**
   * Undoes the step; must be idempotent and safe when `run` never took effect. A step
   * without one is a point of no return: once it starts, the saga can only go forward.
   */
  compensate?(payload: P, ctx: StepContext): Promise<void>;
}

export interface SagaDefinition<P> {
  type: string;
  steps: readonly SagaStep<P>[];
  /** Runs inside the transaction that marks the saga compensated. */
  onCompensated(tx: SqlExecutor, payload: P, reason: string): Promise<void>;
}

export interface SagaPolicy {
  /** Per attempt of a step or compensation; a step may set its own. */
  stepTimeoutMs: number;
  stepAttempts: number;
  /** Compensations get more attempts; past them the saga is parked, never dropped. */
  compensationAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /**
   * How long a driver's claim lasts without renewal. It is renewed before every attempt,
   * so it must exceed one attempt plus one backoff; a crashed driver's sagas are picked up
   * by the sweep once it lapses.
   */
  leaseMs: number;
  /** How often unfinished sagas with a lapsed lease are looked for. */
  sweepMs: number;
}

export const defaultSagaPolicy: SagaPolicy = {
  stepTimeoutMs: 5_000,
  // With backoff capped at 3 s, eight attempts ride out about 9 s of a participant being
  // away (a restart, a deploy) before the saga gives up and compensates.
  stepAttempts: 8,
  compensationAttempts: 10,
  initialBackoffMs: 100,
  maxBackoffMs: 3_000,
  leaseMs: 15_000,
  sweepMs: 5_000,
};

/** The outcome of asking a saga to cancel. */
export type CancelOutcome = "accepted" | "already-compensating" | "past-point-of-no-return" | "finished";

export interface SagaRunner<P> {
  /** Records a new saga in the caller's transaction; drive it after that commits. */
  create(tx: SqlExecutor, aggregateId: string, payload: P): Promise<string>;
  /** Drives a saga in the background until it is terminal, parked or owned by another. */
  drive(sagaId: string): void;
  /** Drives every unfinished saga whose lease is free; returns how many it picked up. */
  resumeUnfinished(): Promise<number>;
  /** Resumes unfinished sagas now and then every `sweepMs`, until stop(). */
  startSweeping(): Promise<number>;
  /** Asks a saga to compensate; refused once a step without compensation has started. */
  requestCancel(aggregateId: string): Promise<CancelOutcome>;
  /** The saga of an aggregate with its steps, as persisted. */
  get(aggregateId: string): Promise<(SagaRow & { steps: SagaStepRow[] }) | undefined>;
  /** Waits for the sagas being driven to reach a checkpoint, then releases their leases. */
  stop(): Promise<void>;
}

/**
 * An orchestrated saga whose every transition is a row: each step is marked `started`
 * before it runs (its compensation is thereby registered), and its outcome is persisted
 * before the next step. Compensations run in reverse over every started step.
 */
export function createSagaRunner<P>(options: {
  db: SqlExecutor;
  tables: SagaTables;
  definition: SagaDefinition<P>;
  logger: Logger;
  policy?: Partial<SagaPolicy>;
}): SagaRunner<P> {
  const { db, definition } = options;
  const { sagas, sagaSteps } = options.tables;
  const policy = { ...defaultSagaPolicy, ...options.policy };
  const longestStep = Math.max(policy.stepTimeoutMs, ...definition.steps.map((step) => step.timeoutMs ?? 0));
  if (policy.leaseMs <= longestStep + policy.maxBackoffMs) {
    throw new Error(`saga leaseMs (${policy.leaseMs}) must exceed the longest step timeout (${longestStep}) plus maxBackoffMs (${policy.maxBackoffMs})`);
  }
  const owner = `runner-${randomUUID()}`;
  const logger = options.logger.child({ saga: definition.type });
  const inFlight = new Map<string, Promise<void>>();
  const stopping = new AbortController();

  let sweeper: NodeJS.Timeout | undefined;
  const pointOfNoReturn = definition.steps.findIndex((step) => !step.compensate);

  const backoff = new ExponentialBackoff({ initialDelay: policy.initialBackoffMs, maxDelay: policy.maxBackoffMs });
  const retryable = handleWhen((err) => !(err instanceof StepRejectedError) && !(err instanceof LeaseLostError) && !stopping.signal.aborted);
  const policyFor = (step: SagaStep<P>, attempts: number) =>
    wrap(retry(retryable, { maxAttempts: attempts - 1, backoff }), timeout(step.timeoutMs ?? policy.stepTimeoutMs, TimeoutStrategy.Aggressive));
  const leaseInterval = sql`now() + ${`${policy.leaseMs} milliseconds`}::interval`;

  async function claim(sagaId: string): Promise<SagaRow | undefined> {
    const [row] = await db
      .update(sagas)
      .set({ leaseOwner: owner, leaseExpiresAt: leaseInterval })
      .where(
        and(
          eq(sagas.id, sagaId),
          inArray(sagas.state, ["running", "compensating"]),
          or(isNull(sagas.leaseOwner), eq(sagas.leaseOwner, owner), lt(sagas.leaseExpiresAt, sql`now()`)),
        ),
      )
      .returning();
    return row;
  }

  /**
   * Locks the saga row if this runner still holds its lease, and extends the lease. Every
   * write a driver makes goes through this, so a driver that lost its lease (it stalled
   * past leaseMs and another replica took over) stops instead of acting twice.
   */
  async function fence(tx: SqlExecutor, sagaId: string): Promise<SagaRow> {
    const [row] = await tx
      .update(sagas)
      .set({ leaseExpiresAt: leaseInterval })
      .where(and(eq(sagas.id, sagaId), eq(sagas.leaseOwner, owner)))
      .returning();
    if (!row) throw new LeaseLostError(sagaId);
    return row;
  }

  async function setState(tx: SqlExecutor, sagaId: string, fields: { state?: SagaState; failureReason?: string; lastError?: string | null; leaseOwner?: null }) {
    await tx
      .update(sagas)
      .set({ ...fields, ...(fields.leaseOwner === null ? { leaseExpiresAt: null } : {}), updatedAt: sql`now()` })
      .where(eq(sagas.id, sagaId));
  }

  async function setStep(tx: SqlExecutor, sagaId: string, stepIndex: number, state: StepState, lastError: string | null = null) {
    const name = definition.steps[stepIndex]!.name;
    await tx
      .insert(sagaSteps)
      .values({ sagaId, stepIndex, name, state, lastError })
      .onConflictDoUpdate({ target: [sagaSteps.sagaId, sagaSteps.stepIndex], set: { state, lastError, updatedAt: sql`now()` } });
  }

  /** Records a step's outcome and, if given, the saga's new state: one fenced transaction. */
  async function settle(sagaId: string, step: { index: number; state: StepState; lastError?: string }, saga?: Parameters<typeof setState>[2]) {
    await db.transaction(async (tx) => {
      await fence(tx, sagaId);
      await setStep(tx, sagaId, step.index, step.state, step.lastError);
      if (saga) await setState(tx, sagaId, saga);
    });
  }

  /** Counts an attempt and renews the lease; throws LeaseLostError if it is gone. */
  async function countAttempt(sagaId: string, stepIndex: number) {
    await db.transaction(async (tx) => {
      await fence(tx, sagaId);
      await tx
        .update(sagaSteps)
        .set({ attempts: sql`${sagaSteps.attempts} + 1`, updatedAt: sql`now()` })
        .where(and(eq(sagaSteps.sagaId, sagaId), eq(sagaSteps.stepIndex, stepIndex)));
    });
  }

  /**
   * One transaction per step boundary, holding the saga row: records the step that just
   * succeeded (if any), then completes the saga or marks the next step started with its
   * first attempt counted, unless cancellation was asked for first. requestCancel takes the
   * same lock, so a cancel either lands before the point of no return starts, or is refused.
   */
  async function crossBoundary(sagaId: string, succeeded: number | undefined, next: number | undefined, pastPointOfNoReturn: boolean) {
    return db.transaction(async (tx): Promise<"started" | "cancelled" | "completed"> => {
      const saga = await fence(tx, sagaId);
      if (succeeded !== undefined) await setStep(tx, sagaId, succeeded, "succeeded");
      if (next === undefined) {
        await setState(tx, sagaId, { state: "completed", leaseOwner: null });
        return "completed";
      }
      if (saga.cancelRequested && !pastPointOfNoReturn) {
        await setState(tx, sagaId, { state: "compensating", failureReason: "cancelled at the customer's request" });
        return "cancelled";
      }
      const name = definition.steps[next]!.name;
      await tx
        .insert(sagaSteps)
        .values({ sagaId, stepIndex: next, name, state: "started", attempts: 1 })
        .onConflictDoUpdate({
          target: [sagaSteps.sagaId, sagaSteps.stepIndex],
          set: { state: "started", attempts: sql`${sagaSteps.attempts} + 1`, updatedAt: sql`now()` },
        });
      return "started";
    });
  }

  const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));

  /** Runs the remaining steps; "compensate" when the saga turned to compensating. */
  async function runForward(saga: SagaRow, steps: Map<number, StepState>): Promise<"compensate" | "stop"> {
    const payload = saga.payload as P;
    const pastPointOfNoReturn = () => [...steps.keys()].some((i) => !definition.steps[i]!.compensate);
    let succeeded: number | undefined;
    for (let i = 0; i < definition.steps.length; i++) {
      if (steps.get(i) === "succeeded") continue;
      const step = definition.steps[i]!;
      if ((await crossBoundary(saga.id, succeeded, i, pastPointOfNoReturn())) === "cancelled") return "compensate";
      steps.set(i, "started");
      // Past the point of no return there is no giving up: retry, with capped backoff, until
      // the participant is back. Before it, a participant that stays away is compensated.
      const attempts = pastPointOfNoReturn() ? Infinity : policy.stepAttempts;
      let attempt = 0;
      try {
        await policyFor(step, attempts).execute(async ({ signal }) => {
          if (attempt++ > 0) await countAttempt(saga.id, i); // the first was counted with the start
          await step.run(payload, { idempotencyKey: `${saga.id}:${step.name}`, signal });
        }, stopping.signal);
        steps.set(i, "succeeded");
        succeeded = i;
      } catch (err) {
        if (stopping.signal.aborted || err instanceof LeaseLostError) return "stop"; // left as started; a later driver resumes it
        const rejected = err instanceof StepRejectedError;
        const failed = { index: i, state: "failed" as const, lastError: describe(err) };
        if (pastPointOfNoReturn()) {
          logger.error({ sagaId: saga.id, step: step.name, err }, "step failed past the point of no return; parking saga");
          await settle(saga.id, failed, { state: "parked", lastError: `${step.name}: ${describe(err)}`, leaseOwner: null });
          return "stop";
        }
        const reason = rejected ? describe(err) : `${step.name} did not succeed: ${describe(err)}`;
        logger.info({ sagaId: saga.id, step: step.name, reason }, "step failed; compensating");
        await settle(saga.id, failed, { state: "compensating", failureReason: reason, lastError: describe(err) });
        return "compensate";
      }
    }
    await crossBoundary(saga.id, succeeded, undefined, true);
    return "stop";
  }

  async function runCompensation(saga: SagaRow, steps: Map<number, StepState>): Promise<void> {
    const payload = saga.payload as P;
    const toUndo = [...steps].filter(([, state]) => state !== "compensated").map(([i]) => i).sort((a, b) => b - a);
    for (const i of toUndo) {
      const step = definition.steps[i]!;
      if (!step.compensate) continue;
      try {
        await policyFor(step, policy.compensationAttempts).execute(async ({ signal }) => {
          await countAttempt(saga.id, i);
          await step.compensate!(payload, { idempotencyKey: `${saga.id}:${step.name}:compensate`, signal });
        }, stopping.signal);
        await settle(saga.id, { index: i, state: "compensated" });
      } catch (err) {
        if (stopping.signal.aborted || err instanceof LeaseLostError) return;
        logger.error({ sagaId: saga.id, step: step.name, err }, "compensation exhausted its attempts; parking saga");
        await settle(saga.id, { index: i, state: steps.get(i)!, lastError: describe(err) }, { state: "parked", lastError: `compensating ${step.name}: ${describe(err)}`, leaseOwner: null });
        return;
      }
    }
    await db.transaction(async (tx) => {
      await fence(tx, saga.id);
      await definition.onCompensated(tx, payload, saga.failureReason ?? "compensated");
      await setState(tx, saga.id, { state: "compensated", leaseOwner: null });
    });
  }

  async function driveToEnd(sagaId: string): Promise<void> {
    while (!stopping.signal.aborted) {
      const saga = await claim(sagaId);
      if (!saga) return; // terminal, parked, or another replica holds the lease
      const rows = await db.select().from(sagaSteps).where(eq(sagaSteps.sagaId, sagaId)).orderBy(asc(sagaSteps.stepIndex));
      const steps = new Map(rows.map((row) => [row.stepIndex, row.state] as const));
      // Only a turn from running to compensating needs another pass; anything else has ended
      // this driver's work (terminal, parked, lease lost), so it does not claim again.
      if (saga.state === "running" && (await runForward(saga, steps)) === "compensate") continue;
      if (saga.state === "compensating") await runCompensation(saga, steps);
      return;
    }
  }

  function drive(sagaId: string): void {
    if (inFlight.has(sagaId) || stopping.signal.aborted) return;
    // A saga is started by a request but outlives it: it must not inherit its deadline.
    const run = detachedFromDeadline(() => driveToEnd(sagaId))
      .catch((err: unknown) => logger.error({ sagaId, err }, "saga driver failed; the sweep resumes it"))
      .finally(() => inFlight.delete(sagaId));
    inFlight.set(sagaId, run);
  }

  async function resumeUnfinished(): Promise<number> {
    const rows = await db
      .select({ id: sagas.id })
      .from(sagas)
      .where(
        and(
          eq(sagas.type, definition.type),
          inArray(sagas.state, ["running", "compensating"]),
          or(isNull(sagas.leaseOwner), eq(sagas.leaseOwner, owner), lt(sagas.leaseExpiresAt, sql`now()`)),
        ),
      )
      .orderBy(asc(sagas.createdAt));
    for (const row of rows) drive(row.id);
    return rows.length;
  }

  return {
    async create(tx, aggregateId, payload) {
      const id = randomUUID();
      await tx.insert(sagas).values({ id, type: definition.type, aggregateId, payload: payload as Record<string, unknown> });
      return id;
    },
    drive,
    resumeUnfinished,
    async startSweeping() {
      const resumed = await resumeUnfinished();
      sweeper = setInterval(() => {
        resumeUnfinished().catch((err: unknown) => logger.warn({ err }, "saga sweep failed"));
      }, policy.sweepMs);
      sweeper.unref();
      return resumed;
    },
    async requestCancel(aggregateId) {
      const outcome = await db.transaction(async (tx): Promise<{ outcome: CancelOutcome; id?: string }> => {
        const [saga] = await tx.select().from(sagas).where(eq(sagas.aggregateId, aggregateId)).for("update");
        if (!saga || saga.state === "completed" || saga.state === "compensated" || saga.state === "parked") return { outcome: "finished" };
        if (saga.state === "compensating") return { outcome: "already-compensating" };
        const [started] =
          pointOfNoReturn < 0
            ? []
            : await tx
                .select({ stepIndex: sagaSteps.stepIndex })
                .from(sagaSteps)
                .where(and(eq(sagaSteps.sagaId, saga.id), gte(sagaSteps.stepIndex, pointOfNoReturn)))
                .limit(1);
        if (started) return { outcome: "past-point-of-no-return" };
        await tx.update(sagas).set({ cancelRequested: true, updatedAt: sql`now()` }).where(eq(sagas.id, saga.id));
        return { outcome: "accepted", id: saga.id };
      });
      if (outcome.id) drive(outcome.id);
      return outcome.outcome;
    },
    async get(aggregateId) {
      const [row] = await db.select().from(sagas).where(eq(sagas.aggregateId, aggregateId));
      if (!row) return undefined;
      const steps = await db.select().from(sagaSteps).where(eq(sagaSteps.sagaId, row.id)).orderBy(asc(sagaSteps.stepIndex));
      return { ...row, steps };
    },
    async stop() {
      stopping.abort();
      clearInterval(sweeper);
      await Promise.allSettled(inFlight.values());
      await db
        .update(sagas)
        .set({ leaseOwner: null, leaseExpiresAt: null })
        .where(eq(sagas.leaseOwner, owner));
    },
  };
}
