import { randomUUID } from "node:crypto";
import { and, asc, eq, inArray, isNull, lt, or, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { ExponentialBackoff, TimeoutStrategy, handleWhen, retry, timeout, wrap } from "cockatiel";
import type { Logger } from "../logger.js";
import type { SagaRow, SagaState, SagaTables, StepState } from "./tables.js";

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

export interface StepContext {
  /** Stable across retries and restarts: participants dedupe on it. */
  idempotencyKey: string;
  signal: AbortSignal;
}

export interface SagaStep<P> {
  name: string;
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
  /** Per attempt of a step or compensation. */
  stepTimeoutMs: number;
  stepAttempts: number;
  /** Compensations get more attempts; past them the saga is parked, never dropped. */
  compensationAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Longer than a step's worst case, so a live driver never loses its lease. */
  leaseMs: number;
}

export const defaultSagaPolicy: SagaPolicy = {
  stepTimeoutMs: 5_000,
  stepAttempts: 5,
  compensationAttempts: 10,
  initialBackoffMs: 100,
  maxBackoffMs: 3_000,
  leaseMs: 120_000,
};

export interface SagaRunner<P> {
  /** Records a new saga in the caller's transaction; drive it after that commits. */
  create(tx: SqlExecutor, aggregateId: string, payload: P): Promise<string>;
  /** Drives a saga in the background until it is terminal, parked or owned by another. */
  drive(sagaId: string): void;
  /** Drives every unfinished saga whose lease is free; returns how many it picked up. */
  resumeUnfinished(): Promise<number>;
  /** Asks a saga to compensate before its point of no return; false if past it. */
  requestCancel(aggregateId: string): Promise<boolean>;
  get(aggregateId: string): Promise<SagaRow | undefined>;
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
  const owner = `runner-${randomUUID()}`;
  const logger = options.logger.child({ saga: definition.type });
  const inFlight = new Map<string, Promise<void>>();
  const stopping = new AbortController();

  const backoff = new ExponentialBackoff({ initialDelay: policy.initialBackoffMs, maxDelay: policy.maxBackoffMs });
  const retryable = handleWhen((err) => !(err instanceof StepRejectedError) && !stopping.signal.aborted);
  const stepPolicy = wrap(retry(retryable, { maxAttempts: policy.stepAttempts - 1, backoff }), timeout(policy.stepTimeoutMs, TimeoutStrategy.Aggressive));
  const compensationPolicy = wrap(
    retry(retryable, { maxAttempts: policy.compensationAttempts - 1, backoff }),
    timeout(policy.stepTimeoutMs, TimeoutStrategy.Aggressive),
  );

  async function claim(sagaId: string): Promise<SagaRow | undefined> {
    const [row] = await db
      .update(sagas)
      .set({ leaseOwner: owner, leaseExpiresAt: sql`now() + ${`${policy.leaseMs} milliseconds`}::interval` })
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

  async function setState(tx: SqlExecutor, sagaId: string, fields: { state?: SagaState; failureReason?: string; lastError?: string | null; leaseOwner?: null }) {
    await tx
      .update(sagas)
      .set({ ...fields, ...(fields.leaseOwner === null ? { leaseExpiresAt: null } : {}), updatedAt: sql`now()` })
      .where(and(eq(sagas.id, sagaId), eq(sagas.leaseOwner, owner)));
  }

  async function setStep(sagaId: string, stepIndex: number, state: StepState, lastError: string | null = null) {
    const name = definition.steps[stepIndex]!.name;
    await db
      .insert(sagaSteps)
      .values({ sagaId, stepIndex, name, state, lastError })
      .onConflictDoUpdate({ target: [sagaSteps.sagaId, sagaSteps.stepIndex], set: { state, lastError, updatedAt: sql`now()` } });
  }

  async function countAttempt(sagaId: string, stepIndex: number) {
    await db
      .update(sagaSteps)
      .set({ attempts: sql`${sagaSteps.attempts} + 1`, updatedAt: sql`now()` })
      .where(and(eq(sagaSteps.sagaId, sagaId), eq(sagaSteps.stepIndex, stepIndex)));
  }

  const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));

  async function runForward(saga: SagaRow, steps: Map<number, StepState>): Promise<void> {
    const payload = saga.payload as P;
    const pastPointOfNoReturn = () => [...steps.keys()].some((i) => !definition.steps[i]!.compensate);
    for (let i = 0; i < definition.steps.length; i++) {
      if (steps.get(i) === "succeeded") continue;
      const [fresh] = await db.select({ cancelRequested: sagas.cancelRequested }).from(sagas).where(eq(sagas.id, saga.id));
      if (fresh?.cancelRequested && !pastPointOfNoReturn()) {
        await setState(db, saga.id, { state: "compensating", failureReason: "cancelled at the customer's request" });
        return;
      }
      const step = definition.steps[i]!;
      await setStep(saga.id, i, "started");
      steps.set(i, "started");
      try {
        await stepPolicy.execute(async ({ signal }) => {
          await countAttempt(saga.id, i);
          await step.run(payload, { idempotencyKey: `${saga.id}:${step.name}`, signal });
        }, stopping.signal);
        await setStep(saga.id, i, "succeeded");
        steps.set(i, "succeeded");
      } catch (err) {
        if (stopping.signal.aborted) return; // left as started; a later driver resumes it
        const rejected = err instanceof StepRejectedError;
        await setStep(saga.id, i, "failed", describe(err));
        if (pastPointOfNoReturn()) {
          logger.error({ sagaId: saga.id, step: step.name, err }, "step failed past the point of no return; parking saga");
          await setState(db, saga.id, { state: "parked", lastError: `${step.name}: ${describe(err)}`, leaseOwner: null });
          return;
        }
        const reason = rejected ? describe(err) : `${step.name} did not succeed: ${describe(err)}`;
        logger.info({ sagaId: saga.id, step: step.name, reason }, "step failed; compensating");
        await setState(db, saga.id, { state: "compensating", failureReason: reason, lastError: describe(err) });
        return;
      }
    }
    await setState(db, saga.id, { state: "completed", leaseOwner: null });
  }

  async function runCompensation(saga: SagaRow, steps: Map<number, StepState>): Promise<void> {
    const payload = saga.payload as P;
    const toUndo = [...steps].filter(([, state]) => state !== "compensated").map(([i]) => i).sort((a, b) => b - a);
    for (const i of toUndo) {
      const step = definition.steps[i]!;
      if (!step.compensate) continue;
      try {
        await compensationPolicy.execute(async ({ signal }) => {
          await countAttempt(saga.id, i);
          await step.compensate!(payload, { idempotencyKey: `${saga.id}:${step.name}:compensate`, signal });
        }, stopping.signal);
        await setStep(saga.id, i, "compensated");
      } catch (err) {
        if (stopping.signal.aborted) return;
        logger.error({ sagaId: saga.id, step: step.name, err }, "compensation exhausted its attempts; parking saga");
        await setStep(saga.id, i, steps.get(i)!, describe(err));
        await setState(db, saga.id, { state: "parked", lastError: `compensating ${step.name}: ${describe(err)}`, leaseOwner: null });
        return;
      }
    }
    await db.transaction(async (tx) => {
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
      if (saga.state === "running") await runForward(saga, steps);
      else await runCompensation(saga, steps);
    }
  }

  function drive(sagaId: string): void {
    if (inFlight.has(sagaId) || stopping.signal.aborted) return;
    const run = driveToEnd(sagaId)
      .catch((err: unknown) => logger.error({ sagaId, err }, "saga driver failed; the lease will expire and it resumes"))
      .finally(() => inFlight.delete(sagaId));
    inFlight.set(sagaId, run);
  }

  return {
    async create(tx, aggregateId, payload) {
      const id = randomUUID();
      await tx.insert(sagas).values({ id, type: definition.type, aggregateId, payload: payload as Record<string, unknown> });
      return id;
    },
    drive,
    async resumeUnfinished() {
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
    },
    async requestCancel(aggregateId) {
      const [row] = await db
        .update(sagas)
        .set({ cancelRequested: true, updatedAt: sql`now()` })
        .where(and(eq(sagas.aggregateId, aggregateId), eq(sagas.state, "running")))
        .returning({ id: sagas.id });
      if (row) drive(row.id);
      return row !== undefined;
    },
    async get(aggregateId) {
      const [row] = await db.select().from(sagas).where(eq(sagas.aggregateId, aggregateId));
      return row;
    },
    async stop() {
      stopping.abort();
      await Promise.allSettled(inFlight.values());
      await db
        .update(sagas)
        .set({ leaseOwner: null, leaseExpiresAt: null })
        .where(eq(sagas.leaseOwner, owner));
    },
  };
}
