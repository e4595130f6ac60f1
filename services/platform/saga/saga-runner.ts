import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { and, asc, eq, getTableColumns, gte, inArray, isNull, lt, or, sql, type SQL } from "drizzle-orm";
import { Code, ConnectError } from "@connectrpc/connect";
import { BrokenCircuitError, BulkheadRejectedError, ExponentialBackoff, TaskCancelledError, TimeoutStrategy, timeout, type IBackoff } from "cockatiel";
import { isDatabaseUnavailable } from "../data/db-errors.js";
import { keysetAfter, keysetOrder, type Keyset, type PageKey } from "../data/paging.js";
import { detachedFromDeadline } from "../rpc-client/deadline.js";
import type { Logger } from "../process/logger.js";
import type { SqlExecutor } from "../data/db.js";
import { createSagaStatements, type ClaimedSaga, type Settlement } from "./saga-statements.js";
import type { SagaRow, SagaState, SagaStepRow, SagaTables, StepState } from "./tables.js";

/**
 * A definitive "no" from a step (out of stock, card declined). It is not retried: the saga
 * compensates instead, and `reason` becomes the saga's failure reason.
 */
export class StepRejectedError extends Error {
  override readonly name = "StepRejectedError";
}

/**
 * How the runner treats a failed attempt:
 * - `transient`: "not now" (unavailable, breaker open, deadline or resource exhausted, aborted,
 *   an attempt that timed out, a database that cannot be reached). Worth retrying for as long
 *   as it takes.
 * - `definitive`: the participant's own "no" (invalid argument, failed precondition, not
 *   found, ...) or a StepRejectedError. Asking again gets the same answer.
 * - `unexpected`: anything else, e.g. INTERNAL or a bug in the step. Retried a bounded number
 *   of times, since a participant killed mid-call can answer INTERNAL once.
 */
export type SagaFailureKind = "transient" | "definitive" | "unexpected";

/**
 * CANCELED is transient too: connect-node reports an HTTP/2 stream reset with CANCEL (a
 * participant draining, a server's request timeout) as CANCELED, and the saga never cancels
 * its own calls except on stop(), which is handled before classification.
 */
const transientCodes: ReadonlySet<Code> = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Canceled]);
/**
 * The participant's own "no" to this request. PERMISSION_DENIED, UNAUTHENTICATED and
 * UNIMPLEMENTED are not here: connect maps a proxy's 401/403/404 to them, and a
 * misconfiguration an operator fixes is "not now"; they are unexpected, with a budget.
 */
const definitiveCodes: ReadonlySet<Code> = new Set([Code.InvalidArgument, Code.FailedPrecondition, Code.NotFound, Code.AlreadyExists, Code.OutOfRange]);

/**
 * Classifies a step's or compensation's failure by its gRPC status code. The client stack
 * raises an open breaker as UNAVAILABLE; cockatiel's own errors are accepted too, for steps
 * that use cockatiel directly.
 */
export function classifySagaFailure(err: unknown): SagaFailureKind {
  if (err instanceof StepRejectedError) return "definitive";
  if (err instanceof ConnectError) return transientCodes.has(err.code) ? "transient" : definitiveCodes.has(err.code) ? "definitive" : "unexpected";
  if (err instanceof TaskCancelledError || err instanceof BrokenCircuitError || err instanceof BulkheadRejectedError) return "transient";
  return isDatabaseUnavailable(err) ? "transient" : "unexpected";
}

const isShedding = (err: unknown) => err instanceof ConnectError && err.code === Code.ResourceExhausted;

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
  /**
   * Attempts of a step before the point of no return; past them the saga compensates. Steps
   * past the point of no return retry transient failures without limit, and get this many
   * attempts for unexpected ones before the saga is parked.
   */
  stepAttempts: number;
  /**
   * Attempts of a compensation that fails unexpectedly, before the saga is parked. Transient
   * failures never use them up: a compensation waits out an outage, however long.
   */
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
  /**
   * How long a step waits out a participant shedding load (RESOURCE_EXHAUSTED) before those
   * refusals count as attempts: past it, a refusal that never ends (a request too large, a
   * limit set to nothing) is a failure like any other.
   */
  shedWaitMs: number;
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
  shedWaitMs: 60_000,
};

/** The outcome of asking a saga to cancel. */
export type CancelOutcome = "accepted" | "already-compensating" | "past-point-of-no-return" | "finished";

/** A step row as `get` reads it, through JSON. */
type StepJson = Omit<SagaStepRow, "updatedAt"> & { updatedAt: string };

/** A saga with its steps, as persisted. */
export type SagaWithSteps = SagaRow & { steps: SagaStepRow[] };

/** The outcome of an operator's request to retry or compensate a saga. */
export type SagaActionOutcome =
  /** The saga is being driven again, in this state (or will compensate at its next step). */
  | { outcome: "accepted"; state: "running" | "compensating" }
  | { outcome: "not-found" }
  /** The saga's state does not allow the action; `reason` says why, for the operator. */
  | { outcome: "refused"; reason: string };

/** Runs in the transaction that decides an operator's action, e.g. to audit it with it. */
export type ActionHook = (tx: SqlExecutor, outcome: SagaActionOutcome) => Promise<void>;

export interface SagaRunner<P> {
  /**
   * Records a new saga in the caller's transaction, leased to this runner; drive it after
   * that commits.
   */
  create(tx: SqlExecutor, aggregateId: string, payload: P): Promise<string>;
  /**
   * The same record as a CTE of a larger statement, for a use case that writes its aggregate
   * and its saga in one statement: `within(when)` inserts it only where `when` holds.
   */
  creation(aggregateId: string, payload: P): { sagaId: string; within(when: SQL): SQL };
  /**
   * Drives a saga in the background until it is terminal, parked or owned by another. Given
   * the payload of a saga this runner has just created, it starts without reading it back.
   */
  drive(sagaId: string, created?: P): void;
  /** Sagas this runner is driving now: the backlog that admission control weighs. */
  backlog(): number;
  /** Drives every unfinished saga whose lease is free; returns how many it picked up. */
  resumeUnfinished(): Promise<number>;
  /** Resumes unfinished sagas now and then every `sweepMs`, until stop(). */
  startSweeping(): Promise<number>;
  /** Asks a saga to compensate; refused once a step without compensation has started. */
  requestCancel(aggregateId: string): Promise<CancelOutcome>;
  /** The saga of an aggregate with its steps, as persisted. */
  get(aggregateId: string): Promise<SagaWithSteps | undefined>;
  /** Sagas of this type, oldest first, optionally in one state, resuming strictly after `after`. */
  list(filter: { state?: SagaState | undefined; limit: number; after?: PageKey | undefined }): Promise<SagaRow[]>;
  /**
   * For operators: resumes a parked saga where it stopped, going forward if it was parked
   * past the point of no return and compensating if it was parked compensating.
   */
  retry(aggregateId: string, hook?: ActionHook): Promise<SagaActionOutcome>;
  /**
   * For operators: forces compensation where it is still allowed. A running saga that has
   * not started a step without compensation compensates at its next step boundary (as a
   * customer's cancel does), with `reason` as its failure reason; a saga parked while
   * compensating resumes compensating. Refused past the point of no return, while already
   * compensating, and once finished.
   */
  compensate(aggregateId: string, reason: string, hook?: ActionHook): Promise<SagaActionOutcome>;
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
  // Every attempt and every wait between attempts listens on it while it runs, so the count
  // follows the sagas in flight; Node's default of 10 would report a leak at the 11th.
  setMaxListeners(0, stopping.signal);

  let sweeper: NodeJS.Timeout | undefined;
  const pointOfNoReturn = definition.steps.findIndex((step) => !step.compensate);

  const backoff = new ExponentialBackoff({ initialDelay: policy.initialBackoffMs, maxDelay: policy.maxBackoffMs });
  const statements = createSagaStatements(options.tables, owner, policy.leaseMs);
  /** Each transition's fence matches only while this runner holds the lease. */
  const unlessLeaseLost = (sagaId: string) => (held: boolean | undefined) => {
    if (!held) throw new LeaseLostError(sagaId);
  };
  const settle = (sagaId: string, settlement: Settlement) => statements.settle(db, sagaId, settlement).then(unlessLeaseLost(sagaId));
  const countAttempt = (sagaId: string, stepIndex: number, label: string) => statements.countAttempt(db, sagaId, stepIndex, label).then(unlessLeaseLost(sagaId));
  const recordRetry = (sagaId: string, stepIndex: number, lastError: string, delayMs: number) =>
    statements.recordRetry(db, sagaId, stepIndex, lastError, delayMs).then(unlessLeaseLost(sagaId));
  async function crossBoundary(sagaId: string, succeeded: number | undefined, next: number | undefined, pastPointOfNoReturn: boolean) {
    const outcome = await statements.crossBoundary(db, sagaId, succeeded, next === undefined ? undefined : { index: next, name: definition.steps[next]!.name }, pastPointOfNoReturn);
    if (!outcome) throw new LeaseLostError(sagaId);
    return outcome;
  }

  /**
   * Attempts a step or compensation until it succeeds or fails for good, with capped
   * exponential backoff between attempts. A definitive failure ends it at once. With
   * `untilDone` (a compensation, or a step past the point of no return) transient failures
   * are retried for as long as it takes, and only unexpected ones use up `budget`; otherwise
   * every failure does. Stopping the runner interrupts the wait between attempts.
   */
  async function attemptUntilSettled(
    target: { sagaId: string; stepIndex: number; errorPrefix: string; timeoutMs: number; budget: number; untilDone: boolean },
    attempt: (signal: AbortSignal, n: number) => Promise<void>,
  ): Promise<void> {
    const perAttempt = timeout(target.timeoutMs, TimeoutStrategy.Aggressive);
    let delay: IBackoff<unknown> | undefined;
    let unexpected = 0;
    let shed = 0;
    let shedSince: number | undefined;
    for (let n = 1; ; n++) {
      try {
        await perAttempt.execute(({ signal }) => attempt(signal, n), stopping.signal);
        return;
      } catch (err) {
        if (stopping.signal.aborted || err instanceof LeaseLostError) throw err;
        const kind = classifySagaFailure(err);
        // Unexpected failures count while consecutive: a participant flapping between
        // "unavailable" and a crash mid-call ("internal") is still only away.
        if (kind === "transient") unexpected = 0;
        // A participant shedding load is healthy and busy: waiting costs the order time, while
        // giving up would cancel an order the mesh accepted. So shedding uses up no attempt,
        // for up to shedWaitMs; order's own admission control keeps new orders out meanwhile.
        if (isShedding(err) && Date.now() - (shedSince ??= Date.now()) < policy.shedWaitMs) shed++;
        const spent = target.untilDone ? kind === "unexpected" && ++unexpected >= target.budget : n - shed >= target.budget;
        if (kind === "definitive" || spent) throw err;
        delay = delay ? delay.next(undefined) : backoff.next();
        const lastError = `${target.errorPrefix}: ${describe(err)}`;
        // A long outage means many attempts: the first is news, the rest are detail.
        logger[n === 1 ? "warn" : "debug"]({ sagaId: target.sagaId, attempt: n, kind, lastError, delayMs: delay.duration }, "saga attempt failed; retrying");
        await recordRetry(target.sagaId, target.stepIndex, lastError, delay.duration).catch((recordErr: unknown) => {
          if (recordErr instanceof LeaseLostError) throw recordErr;
          // The database is away: the next attempt finds out whether it is back.
          logger.warn({ sagaId: target.sagaId, err: recordErr }, "could not record a saga's retry");
        });
        await sleep(delay.duration, undefined, { signal: stopping.signal });
      }
    }
  }

  const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));

  /** Runs the remaining steps; "compensate" when the saga turned to compensating. */
  async function runForward(saga: ClaimedSaga, steps: Map<number, StepState>): Promise<"compensate" | "stop"> {
    const payload = saga.payload as P;
    const pastPointOfNoReturn = () => [...steps.keys()].some((i) => !definition.steps[i]!.compensate);
    let succeeded: number | undefined;
    for (let i = 0; i < definition.steps.length; i++) {
      if (steps.get(i) === "succeeded") continue;
      const step = definition.steps[i]!;
      if ((await crossBoundary(saga.id, succeeded, i, pastPointOfNoReturn())) === "cancelled") return "compensate";
      steps.set(i, "started");
      // Past the point of no return there is no giving up on "not now": retry, with capped
      // backoff, until the participant is back. Before it, one that stays away is compensated.
      const target = { sagaId: saga.id, stepIndex: i, errorPrefix: step.name, timeoutMs: step.timeoutMs ?? policy.stepTimeoutMs };
      try {
        await attemptUntilSettled({ ...target, budget: policy.stepAttempts, untilDone: pastPointOfNoReturn() }, async (signal, n) => {
          if (n > 1) await countAttempt(saga.id, i, step.name); // the first was counted with the start
          await step.run(payload, { idempotencyKey: `${saga.id}:${step.name}`, signal });
        });
        steps.set(i, "succeeded");
        succeeded = i;
      } catch (err) {
        if (stopping.signal.aborted || err instanceof LeaseLostError) return "stop"; // left as started; a later driver resumes it
        const rejected = err instanceof StepRejectedError;
        const failed = { index: i, name: step.name, state: "failed" as const, lastError: describe(err) };
        if (pastPointOfNoReturn()) {
          logger.error({ sagaId: saga.id, step: step.name, err }, "step failed for good past the point of no return; parking saga");
          await settle(saga.id, { step: failed, saga: { state: "parked", lastError: `${step.name}: ${describe(err)}`, releaseLease: true } });
          return "stop";
        }
        const reason = rejected ? describe(err) : `${step.name} did not succeed: ${describe(err)}`;
        logger.info({ sagaId: saga.id, step: step.name, reason }, "step failed; compensating");
        await settle(saga.id, { step: failed, saga: { state: "compensating", failureReason: reason, lastError: describe(err) } });
        return "compensate";
      }
    }
    await crossBoundary(saga.id, succeeded, undefined, true);
    return "stop";
  }

  async function runCompensation(saga: ClaimedSaga, steps: Map<number, StepState>): Promise<void> {
    const payload = saga.payload as P;
    const toUndo = [...steps].filter(([, state]) => state !== "compensated").map(([i]) => i).sort((a, b) => b - a);
    for (const i of toUndo) {
      const step = definition.steps[i]!;
      if (!step.compensate) continue;
      const label = `${step.name} (compensation)`;
      const target = { sagaId: saga.id, stepIndex: i, errorPrefix: `compensating ${step.name}`, timeoutMs: step.timeoutMs ?? policy.stepTimeoutMs };
      try {
        await attemptUntilSettled({ ...target, budget: policy.compensationAttempts, untilDone: true }, async (signal) => {
          await countAttempt(saga.id, i, label);
          await step.compensate!(payload, { idempotencyKey: `${saga.id}:${step.name}:compensate`, signal });
        });
      } catch (err) {
        if (stopping.signal.aborted || err instanceof LeaseLostError) return;
        logger.error({ sagaId: saga.id, step: step.name, err }, "compensation failed for good; parking saga");
        await settle(saga.id, {
          step: { index: i, name: step.name, state: steps.get(i)!, lastError: describe(err) },
          saga: { state: "parked", lastError: `compensating ${step.name}: ${describe(err)}`, releaseLease: true },
        });
        return;
      }
      // Outside the try: failing to record a compensation that took effect (the database
      // blinked) is no reason to park. The driver stops, and the sweep runs the idempotent
      // compensation again.
      await settle(saga.id, { step: { index: i, name: step.name, state: "compensated" } });
    }
    await db.transaction(async (tx) => {
      unlessLeaseLost(saga.id)(await statements.finishCompensation(tx, saga.id));
      await definition.onCompensated(tx, payload, saga.failureReason ?? "compensated");
    });
  }

  async function driveToEnd(sagaId: string, created: P | undefined): Promise<void> {
    // A saga just created is leased to this runner, running, with no step started yet.
    let fresh: ClaimedSaga | undefined = created && { id: sagaId, state: "running", payload: created, failureReason: null, steps: new Map() };
    while (!stopping.signal.aborted) {
      const saga = fresh ?? (await statements.claim(db, sagaId));
      fresh = undefined;
      if (!saga) return; // terminal, parked, or another replica holds the lease
      const { steps } = saga;
      // Only a turn from running to compensating needs another pass; anything else has ended
      // this driver's work (terminal, parked, lease lost), so it does not claim again.
      if (saga.state === "running" && (await runForward(saga, steps)) === "compensate") continue;
      if (saga.state === "compensating") await runCompensation(saga, steps);
      return;
    }
  }

  function drive(sagaId: string, created?: P): void {
    if (inFlight.has(sagaId) || stopping.signal.aborted) return;
    // A saga is started by a request but outlives it: it must not inherit its deadline.
    const run = detachedFromDeadline(() => driveToEnd(sagaId, created))
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

  function creation(aggregateId: string, payload: P) {
    const sagaId = randomUUID();
    return { sagaId, within: (when: SQL) => statements.creation({ id: sagaId, type: definition.type, aggregateId, payload }, when) };
  }

  const lockSaga = async (tx: SqlExecutor, aggregateId: string) => (await tx.select().from(sagas).where(eq(sagas.aggregateId, aggregateId)).for("update"))[0];

  /** Whether a step without compensation has started: the saga can then only go forward. */
  async function hasPassedPointOfNoReturn(tx: SqlExecutor, sagaId: string): Promise<boolean> {
    if (pointOfNoReturn < 0) return false;
    const [started] = await tx
      .select({ stepIndex: sagaSteps.stepIndex })
      .from(sagaSteps)
      .where(and(eq(sagaSteps.sagaId, sagaId), gte(sagaSteps.stepIndex, pointOfNoReturn)))
      .limit(1);
    return started !== undefined;
  }

  /**
   * A saga has a failure reason exactly once it compensates (or was asked to, which is only
   * accepted before the point of no return); so a parked one with a reason was compensating.
   */
  const wasCompensating = (saga: SagaRow) => saga.failureReason !== null;
  const refused = (reason: string): SagaActionOutcome => ({ outcome: "refused", reason });

  /** Resuming a parked saga puts it back in the state it was parked from; operatorAction applies it. */
  const resumeParked = (saga: SagaRow): SagaActionOutcome => ({ outcome: "accepted", state: wasCompensating(saga) ? "compensating" : "running" });

  /**
   * Decides an operator's action on the locked saga, applies the resulting state, and runs
   * `hook` (the audit) in the same transaction; then drives the saga if it was accepted.
   */
  async function operatorAction(
    aggregateId: string,
    hook: ActionHook | undefined,
    decide: (saga: SagaRow, tx: SqlExecutor) => Promise<SagaActionOutcome>,
  ): Promise<SagaActionOutcome> {
    const { outcome, sagaId } = await db.transaction(async (tx) => {
      const saga = await lockSaga(tx, aggregateId);
      const outcome: SagaActionOutcome = saga ? await decide(saga, tx) : { outcome: "not-found" };
      if (saga && outcome.outcome === "accepted" && saga.state === "parked") {
        await tx
          .update(sagas)
          .set({ state: outcome.state, leaseOwner: null, leaseExpiresAt: null, nextAttemptAt: null, updatedAt: sql`now()` })
          .where(eq(sagas.id, saga.id));
      }
      await hook?.(tx, outcome);
      return { outcome, sagaId: saga?.id };
    });
    if (outcome.outcome === "accepted" && sagaId) drive(sagaId);
    return outcome;
  }

  return {
    async create(tx, aggregateId, payload) {
      const { sagaId, within } = creation(aggregateId, payload);
      await tx.execute(sql`with ${within(sql`true`)} select`);
      return sagaId;
    },
    creation,
    drive,
    backlog: () => inFlight.size,
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
        const saga = await lockSaga(tx, aggregateId);
        if (!saga || saga.state === "completed" || saga.state === "compensated" || saga.state === "parked") return { outcome: "finished" };
        if (saga.state === "compensating") return { outcome: "already-compensating" };
        if (await hasPassedPointOfNoReturn(tx, saga.id)) return { outcome: "past-point-of-no-return" };
        await tx.update(sagas).set({ cancelRequested: true, updatedAt: sql`now()` }).where(eq(sagas.id, saga.id));
        return { outcome: "accepted", id: saga.id };
      });
      if (outcome.id) drive(outcome.id);
      return outcome.outcome;
    },
    async get(aggregateId) {
      // One statement: the steps ride along as JSON (GetOrder reads this for every watch).
      const [row] = await db
        .select({
          ...getTableColumns(sagas),
          steps: sql<StepJson[]>`coalesce((select json_agg(json_build_object('sagaId', s.saga_id, 'stepIndex', s.step_index, 'name', s.name, 'state', s.state,
            'attempts', s.attempts, 'lastError', s.last_error, 'updatedAt', s.updated_at) order by s.step_index) from ${sagaSteps} s where s.saga_id = ${sagas.id}), '[]')`,
        })
        .from(sagas)
        .where(eq(sagas.aggregateId, aggregateId));
      return row && { ...row, steps: row.steps.map((step) => ({ ...step, updatedAt: new Date(step.updatedAt) })) };
    },
    async list({ state, limit, after }) {
      const oldestFirst: Keyset = { createdAt: sagas.createdAt, id: sagas.id, order: "oldest-first" };
      return db
        .select()
        .from(sagas)
        .where(and(eq(sagas.type, definition.type), state ? eq(sagas.state, state) : undefined, keysetAfter(oldestFirst, after)))
        .orderBy(...keysetOrder(oldestFirst))
        .limit(limit);
    },
    retry: (aggregateId, hook) =>
      operatorAction(aggregateId, hook, async (saga) => {
        if (saga.state !== "parked") return refused(`saga is ${saga.state}; only a parked saga can be retried`);
        return resumeParked(saga);
      }),
    compensate: (aggregateId, reason, hook) =>
      operatorAction(aggregateId, hook, async (saga, tx) => {
        switch (saga.state) {
          case "completed":
          case "compensated":
            return refused(`saga is ${saga.state}; there is nothing left to compensate`);
          case "compensating":
            return refused("saga is already compensating");
          case "parked":
            if (!wasCompensating(saga)) return refused("saga is parked past the point of no return; it can only go forward: retry it");
            return resumeParked(saga);
          case "running":
            if (await hasPassedPointOfNoReturn(tx, saga.id)) return refused("saga is past the point of no return; it can only go forward");
            await tx.update(sagas).set({ cancelRequested: true, failureReason: reason, updatedAt: sql`now()` }).where(eq(sagas.id, saga.id));
            return { outcome: "accepted", state: "compensating" };
        }
      }),
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
