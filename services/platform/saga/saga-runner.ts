import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { and, count, eq, getTableColumns, gte, inArray, isNotNull, sql, type SQL } from "drizzle-orm";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, isSpanContextValid, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { BrokenCircuitError, BulkheadRejectedError, ExponentialBackoff, TaskCancelledError, type IBackoff } from "cockatiel";
import { isDatabaseUnavailable } from "../data/db-errors.js";
import { keysetAfter, keysetOrder, type Keyset, type PageKey } from "../data/paging.js";
import { detachedFromDeadline } from "../rpc-client/deadline.js";
import type { Logger } from "../process/logger.js";
import { SpanKind, withSpan } from "../process/telemetry.js";
import { rowsOf, type SqlExecutor } from "../data/db.js";
import { LeaseLostError, SagaSuspended, SagaVersionUnknownError, StepRejectedError } from "./errors.js";
import { timeline, waitPhase } from "./phases.js";
import { createSagaStatements, type ClaimedSaga, type Settlement } from "./saga-statements.js";
import { stepWaits, withinAttemptTimeout, type AttemptClock } from "./waits.js";
import type { SagaPhase, SagaRow, SagaRunnerTables, SagaSignalRow, SagaState, SagaStepRow, SagaWaitRow, StoredSagaPhase } from "./tables.js";

export { SagaVersionUnknownError, SignalTimeoutError, StepRejectedError } from "./errors.js";

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

export interface StepContext {
  /** Stable across retries and restarts: participants dedupe on it. */
  idempotencyKey: string;
  signal: AbortSignal;
  /**
   * Durable timer named `name` (unique within the step): resolves at once if `at` has
   * passed; otherwise the saga is suspended (state "waiting", lease released, a wait row
   * written) and the step is run again from the top once the timer fires.
   */
  sleepUntil(name: string, at: Date): Promise<void>;
  /**
   * As sleepUntil, due `ms` after the first time this step reached the wait (persisted, so
   * a re-run or restart does not restart the clock).
   */
  sleep(name: string, ms: number): Promise<void>;
  /**
   * Resolves with the payload of a signal `name` delivered to this saga that no earlier
   * wait took, whether it arrived before or after the wait began; otherwise suspends the
   * saga until one arrives (the step then re-runs from the top, idempotent as steps already
   * are, and reads the same signal) or until `timeoutMs` after the wait began, when it
   * throws SignalTimeoutError. A signal that arrives after that counts for nothing.
   */
  awaitSignal(name: string, options: { timeoutMs: number }): Promise<Record<string, unknown>>;
}

export interface SagaStep<P> {
  name: string;
  /** Overrides the policy's per-attempt timeout, for a participant known to be slow. Time spent at waits does not count. */
  timeoutMs?: number;
  run(payload: P, ctx: StepContext): Promise<void>;
  /**
   * Undoes the step; must be idempotent and safe when `run` never took effect. A step
   * without one is a point of no return: once it starts, the saga can only go forward.
   * A compensation cannot wait: its context's waits throw.
   */
  compensate?(payload: P, ctx: StepContext): Promise<void>;
}

export interface SagaDefinition<P> {
  type: string;
  /** Recorded on each saga at creation; a saga finishes on the version it started on. */
  version: number;
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
  /** Sagas a sweep pass picks up at most, the most overdue first; the next pass takes the rest. */
  sweepBatch: number;
  /** While this runner drives this many sagas, a sweep pass picks up none: it is busy enough. */
  maxInFlight: number;
  /**
   * Distinct signals kept per saga: past it, deliverSignal answers "too-many". A saga's
   * steps wait for a handful; a sender repeating itself with new ids must not grow the
   * saga's rows without end.
   */
  maxSignalsPerSaga: number;
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
  sweepBatch: 200,
  maxInFlight: 1_000,
  maxSignalsPerSaga: 16,
};

/** The outcome of asking a saga to cancel. */
export type CancelOutcome = "accepted" | "already-compensating" | "past-point-of-no-return" | "finished";

/** A step as `get` reads it: its row with its timeline (attempts and waits, oldest first). */
export type SagaStepView = Omit<SagaStepRow, "phases"> & { phases: SagaPhase[] };

/** A signal delivered to a saga, as `get` reads it; its payload is the steps' business. */
export type SagaSignalView = Omit<SagaSignalRow, "sagaId" | "payload">;

/** A saga with its steps and, where they were asked for, its signals, as persisted. */
export type SagaWithSteps = SagaRow & { steps: SagaStepView[]; signals?: SagaSignalView[] };

type Json<T> = { [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K] };
/** A step row as `get` reads it, through JSON, with its waits. */
type StepJson = Omit<Json<SagaStepRow>, "phases"> & { phases: StoredSagaPhase[]; waits: Json<Omit<SagaWaitRow, "sagaId" | "stepIndex" | "signalId">>[] };

/** The outcome of an operator's request to retry or compensate a saga. */
export type SagaActionOutcome =
  /** The saga is being driven again, in this state (or will compensate at its next step). */
  | { outcome: "accepted"; state: "running" | "compensating" }
  | { outcome: "not-found" }
  /** The saga's state does not allow the action; `reason` says why, for the operator. */
  | { outcome: "refused"; reason: string };

/** Runs in the transaction that decides an operator's action, e.g. to audit it with it. */
export type ActionHook = (tx: SqlExecutor, outcome: SagaActionOutcome) => Promise<void>;

/**
 * The outcome of delivering a signal; see SagaRunner.deliverSignal. `closed`: the saga no
 * longer takes it (it compensates, or a wait of that name timed out or is past its due
 * time); `too-many`: the saga keeps maxSignalsPerSaga signals already.
 */
export type SignalOutcome = "delivered" | "duplicate" | "finished" | "closed" | "too-many" | "not-found";

export interface SagaRunner<P> {
  /** The policy in force, the defaults filled in. */
  readonly policy: Readonly<SagaPolicy>;
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
   * Drives a saga in the background until it is terminal, parked, waiting or owned by
   * another. Given the payload of a saga this runner has just created, it starts without
   * reading it back.
   */
  drive(sagaId: string, created?: P): void;
  /** Sagas this runner is driving now: the backlog that admission control weighs. */
  backlog(): number;
  /**
   * Drives unfinished sagas whose lease is free and waiting ones that are due, and sets
   * in-process timers for those due before the next pass: at most sweepBatch of them, the
   * most overdue first, and none while maxInFlight are being driven here. Returns how many
   * it picked up.
   */
  resumeUnfinished(): Promise<number>;
  /** Checks the versions (checkVersions), then resumes unfinished sagas now and every `sweepMs`, until stop(). */
  startSweeping(): Promise<number>;
  /**
   * Refuses to start if an unfinished saga of this type is on a version this build does
   * not define: throws with a message naming the version and how many sagas use it.
   */
  checkVersions(): Promise<void>;
  /**
   * Asks a saga to compensate; refused once a step without compensation has started. A
   * waiting saga is woken to do so. Throws SagaVersionUnknownError for a saga on a version
   * this build does not define: it cannot tell where that version's point of no return is.
   */
  requestCancel(aggregateId: string): Promise<CancelOutcome>;
  /**
   * Delivers a signal, exactly once by signalId (a repeat changes nothing), in a transaction
   * of its own, and drives the saga at once if it waits for `name`; one that does not wait
   * yet keeps it for a later wait. See SignalOutcome for the refusals.
   */
  deliverSignal(signal: { aggregateId: string; name: string; signalId: string; payload?: Record<string, unknown> }): Promise<SignalOutcome>;
  /**
   * The saga of an aggregate with its steps, as persisted; with `signals`, the signals
   * delivered to it too (at most maxSignalsPerSaga), for operators: a customer's view, read
   * on every watch, needs none.
   */
  get(aggregateId: string, options?: { signals?: boolean }): Promise<SagaWithSteps | undefined>;
  /**
   * Sagas of this type, oldest first, optionally in one state, or only those with a failed
   * attempt to be tried again (`retrying`), resuming strictly after `after`.
   */
  list(filter: { state?: SagaState | undefined; retrying?: boolean | undefined; limit: number; after?: PageKey | undefined }): Promise<SagaRow[]>;
  /**
   * For operators: resumes a parked saga where it stopped, going forward if it was parked
   * past the point of no return and compensating if it was parked compensating.
   */
  retry(aggregateId: string, hook?: ActionHook): Promise<SagaActionOutcome>;
  /**
   * For operators: forces compensation where it is still allowed. A running or waiting saga
   * that has not started a step without compensation compensates at its next step boundary
   * (as a customer's cancel does; a waiting one is woken for it), with `reason` as its
   * failure reason; a saga parked while compensating resumes compensating. Refused past the
   * point of no return, while already compensating, and once finished.
   */
  compensate(aggregateId: string, reason: string, hook?: ActionHook): Promise<SagaActionOutcome>;
  /** Waits for the sagas being driven to reach a checkpoint, then releases their leases. */
  stop(): Promise<void>;
}

/**
 * In-process timers for waits due before the sweep's next pass, at most this many: past
 * it, the sweep wakes the rest on its pass, a little late but still woken.
 */
const MAX_WAKE_TIMERS = 1_000;

/** How late an in-process wake timer fires on purpose; see wakeLater. */
const WAKE_SLACK_MS = 5;

/** What runForward ended on: compensation to run, nothing more for now, or a suspension due in `wakeInMs`. */
type ForwardOutcome = "compensate" | "stop" | { wakeInMs: number };

/** The trace id of the active span, where it has a real one. */
function activeTraceId(): string | undefined {
  const span = trace.getActiveSpan()?.spanContext();
  return span && isSpanContextValid(span) ? span.traceId : undefined;
}

/**
 * Runs an attempt in its own span, a child of the driver's trace; in a trace nobody
 * samples, the trace's ids stand for the attempt and no span is made (as the server
 * interceptor does), which saves a context switch per attempt.
 */
function inAttemptSpan<T>(name: string, attributes: Record<string, string>, work: () => Promise<T>): Promise<T> {
  const active = trace.getActiveSpan();
  if (active && !active.isRecording()) return work();
  return withSpan(name, SpanKind.INTERNAL, context.active(), attributes, work);
}

/** A compensation's context cannot wait: compensations resume compensating, never waiting. */
const refuseWait = async (): Promise<never> => {
  throw new Error("a compensation cannot wait; only a step can");
};
const noWaits = { sleepUntil: refuseWait, sleep: refuseWait, awaitSignal: refuseWait };

/**
 * An orchestrated saga whose every transition is a row: each step is marked `started`
 * before it runs (its compensation is thereby registered), and its outcome is persisted
 * before the next step. Compensations run in reverse over every started step. A step may
 * wait on a durable timer or a signal: the saga is then released (state waiting) and the
 * step runs again from the top once the wait is over. Each saga runs on the definition's
 * version it started on: `olderVersions` keeps those an unfinished saga may still be on.
 */
export function createSagaRunner<P>(options: {
  db: SqlExecutor;
  tables: SagaRunnerTables;
  definition: SagaDefinition<P>;
  olderVersions?: readonly SagaDefinition<P>[];
  logger: Logger;
  policy?: Partial<SagaPolicy>;
}): SagaRunner<P> {
  const { db, definition } = options;
  const { sagas, sagaSteps, sagaWaits, sagaSignals } = options.tables;
  const policy = { ...defaultSagaPolicy, ...options.policy };
  const definitions = new Map<number, SagaDefinition<P>>();
  for (const version of [definition, ...(options.olderVersions ?? [])]) {
    if (version.type !== definition.type) throw new Error(`saga "${definition.type}": an older version is of type "${version.type}"`);
    if (!Number.isInteger(version.version) || version.version < 1) throw new Error(`saga "${definition.type}": version ${version.version} is not a positive integer`);
    if (definitions.has(version.version)) throw new Error(`saga "${definition.type}": version ${version.version} is defined twice`);
    definitions.set(version.version, version);
  }
  const versions = [...definitions.keys()];
  const allSteps = [...definitions.values()].flatMap((version) => version.steps);
  const longestStep = Math.max(policy.stepTimeoutMs, ...allSteps.map((step) => step.timeoutMs ?? 0));
  if (policy.leaseMs <= longestStep + policy.maxBackoffMs) {
    throw new Error(`saga leaseMs (${policy.leaseMs}) must exceed the longest step timeout (${longestStep}) plus maxBackoffMs (${policy.maxBackoffMs})`);
  }
  /** The index of each version's first step without a compensation; -1 where there is none. */
  const pointOfNoReturn = new Map([...definitions].map(([version, { steps }]) => [version, steps.findIndex((step) => !step.compensate)]));
  const owner = `runner-${randomUUID()}`;
  const logger = options.logger.child({ saga: definition.type });
  const inFlight = new Map<string, Promise<void>>();
  /** Sagas made due while their driver was still under way; see drive. */
  const driveAgain = new Set<string>();
  const wakeTimers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  const stopping = new AbortController();
  // Every attempt and every wait between attempts listens on it while it runs, so the count
  // follows the sagas in flight; Node's default of 10 would report a leak at the 11th.
  setMaxListeners(0, stopping.signal);

  let sweeper: NodeJS.Timeout | undefined;

  const backoff = new ExponentialBackoff({ initialDelay: policy.initialBackoffMs, maxDelay: policy.maxBackoffMs });
  const statements = createSagaStatements(options.tables, owner, policy.leaseMs);
  /** Each transition's fence matches only while this runner holds the lease. */
  const unlessLeaseLost =
    (sagaId: string) =>
    <T>(held: T | false | undefined): T => {
      if (!held) throw new LeaseLostError(sagaId);
      return held;
    };
  const settle = (sagaId: string, settlement: Settlement) => statements.settle(db, sagaId, settlement).then(unlessLeaseLost(sagaId));
  const countAttempt = (sagaId: string, stepIndex: number, label: string, kind: "attempt" | "compensation") =>
    statements.countAttempt(db, sagaId, stepIndex, label, kind, activeTraceId()).then(unlessLeaseLost(sagaId));
  const recordRetry = (sagaId: string, stepIndex: number, lastError: string, delayMs: number, error: string) =>
    statements.recordRetry(db, sagaId, stepIndex, lastError, delayMs, error).then(unlessLeaseLost(sagaId));
  async function crossBoundary(sagaId: string, steps: SagaDefinition<P>["steps"], succeeded: number | undefined, next: number | undefined, pastPointOfNoReturn: boolean) {
    const step = next === undefined ? undefined : { index: next, name: steps[next]!.name };
    return unlessLeaseLost(sagaId)(await statements.crossBoundary(db, sagaId, succeeded, step, pastPointOfNoReturn, activeTraceId()));
  }

  /** The waits of one run of a step, on its saga's rows. */
  const waitsOf = (sagaId: string, stepIndex: number, signal: AbortSignal, clock: AttemptClock) =>
    stepWaits({
      sagaId,
      signal,
      clock,
      check: async (wait) => unlessLeaseLost(sagaId)(await statements.checkWait(db, sagaId, stepIndex, wait)),
      suspend: async (wait, seen) => unlessLeaseLost(sagaId)(await statements.suspend(db, sagaId, stepIndex, { name: wait.name, kind: wait.kind, seen })).wakeInMs,
    });

  /**
   * Attempts a step or compensation until it succeeds or fails for good, with capped
   * exponential backoff between attempts. A definitive failure ends it at once. With
   * `untilDone` (a compensation, or a step past the point of no return) transient failures
   * are retried for as long as it takes, and only unexpected ones use up `budget`; otherwise
   * every failure does. Stopping the runner interrupts the wait between attempts. A
   * suspension (the step waits) ends it, as no failure.
   */
  async function attemptUntilSettled(
    target: { sagaId: string; stepIndex: number; name: string; errorPrefix: string; timeoutMs: number; budget: number; untilDone: boolean },
    attempt: (signal: AbortSignal, n: number, clock: AttemptClock) => Promise<void>,
  ): Promise<void> {
    let delay: IBackoff<unknown> | undefined;
    let unexpected = 0;
    let shed = 0;
    let shedSince: number | undefined;
    for (let n = 1; ; n++) {
      try {
        await withinAttemptTimeout(target.timeoutMs, stopping.signal, (signal, clock) =>
          inAttemptSpan(`saga ${definition.type} ${target.name}`, { "meshwork.saga.id": target.sagaId, "meshwork.saga.attempt": String(n) }, () => attempt(signal, n, clock)),
        );
        return;
      } catch (err) {
        if (stopping.signal.aborted || err instanceof LeaseLostError || err instanceof SagaSuspended) throw err;
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
        await recordRetry(target.sagaId, target.stepIndex, lastError, delay.duration, describe(err)).catch((recordErr: unknown) => {
          if (recordErr instanceof LeaseLostError) throw recordErr;
          // The database is away: the next attempt finds out whether it is back.
          logger.warn({ sagaId: target.sagaId, err: recordErr }, "could not record a saga's retry");
        });
        await sleep(delay.duration, undefined, { signal: stopping.signal });
      }
    }
  }

  const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));

  /** Runs the remaining steps; "compensate" when the saga turned to compensating, the wake time when it waits. */
  async function runForward(saga: ClaimedSaga, { steps: stepsOf }: SagaDefinition<P>): Promise<ForwardOutcome> {
    const { steps } = saga;
    const payload = saga.payload as P;
    const pastPointOfNoReturn = () => [...steps.keys()].some((i) => !stepsOf[i]!.compensate);
    let succeeded: number | undefined;
    for (let i = 0; i < stepsOf.length; i++) {
      if (steps.get(i) === "succeeded") continue;
      const step = stepsOf[i]!;
      if ((await crossBoundary(saga.id, stepsOf, succeeded, i, pastPointOfNoReturn())) === "cancelled") return "compensate";
      steps.set(i, "started");
      // Past the point of no return there is no giving up on "not now": retry, with capped
      // backoff, until the participant is back. Before it, one that stays away is compensated.
      const target = { sagaId: saga.id, stepIndex: i, name: step.name, errorPrefix: step.name, timeoutMs: step.timeoutMs ?? policy.stepTimeoutMs };
      try {
        await attemptUntilSettled({ ...target, budget: policy.stepAttempts, untilDone: pastPointOfNoReturn() }, async (signal, n, clock) => {
          if (n > 1) await countAttempt(saga.id, i, step.name, "attempt"); // the first was counted with the start
          await step.run(payload, { idempotencyKey: `${saga.id}:${step.name}`, signal, ...waitsOf(saga.id, i, signal, clock) });
        });
        steps.set(i, "succeeded");
        succeeded = i;
      } catch (err) {
        if (err instanceof SagaSuspended) return { wakeInMs: err.wakeInMs };
        if (stopping.signal.aborted || err instanceof LeaseLostError) return "stop"; // left as started; a later driver resumes it
        const rejected = err instanceof StepRejectedError;
        const failed = { index: i, name: step.name, state: "failed" as const, lastError: describe(err) };
        if (pastPointOfNoReturn()) {
          logger.error({ sagaId: saga.id, step: step.name, err }, "step failed for good past the point of no return; parking saga");
          await settle(saga.id, { step: failed, saga: { state: "parked", lastError: `${step.name}: ${describe(err)}`, releaseLease: true } });
          return "stop";
        }
        // The failure reason is the customer's (an order's cancel reason): a rejection says why
        // in words meant for them; anything else only names the step, its detail staying in
        // lastError for operators.
        const reason = rejected ? describe(err) : `${step.name} did not succeed`;
        logger.info({ sagaId: saga.id, step: step.name, reason }, "step failed; compensating");
        await settle(saga.id, { step: failed, saga: { state: "compensating", failureReason: reason, lastError: describe(err) } });
        return "compensate";
      }
    }
    await crossBoundary(saga.id, stepsOf, succeeded, undefined, true);
    return "stop";
  }

  async function runCompensation(saga: ClaimedSaga, { steps: stepsOf, onCompensated }: SagaDefinition<P>): Promise<void> {
    const { steps } = saga;
    const payload = saga.payload as P;
    const toUndo = [...steps].filter(([, state]) => state !== "compensated").map(([i]) => i).sort((a, b) => b - a);
    for (const i of toUndo) {
      const step = stepsOf[i]!;
      if (!step.compensate) continue;
      const label = `${step.name} (compensation)`;
      const target = { sagaId: saga.id, stepIndex: i, name: label, errorPrefix: `compensating ${step.name}`, timeoutMs: step.timeoutMs ?? policy.stepTimeoutMs };
      try {
        await attemptUntilSettled({ ...target, budget: policy.compensationAttempts, untilDone: true }, async (signal) => {
          await countAttempt(saga.id, i, label, "compensation");
          await step.compensate!(payload, { idempotencyKey: `${saga.id}:${step.name}:compensate`, signal, ...noWaits });
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
      await onCompensated(tx, payload, saga.failureReason ?? "compensated");
    });
  }

  /** Drives a saga as far as it goes now; returns how soon it is due if it ended waiting. */
  async function driveToEnd(sagaId: string, created: P | undefined): Promise<number | undefined> {
    // A saga just created is leased to this runner, running, with no step started yet.
    let fresh: ClaimedSaga | undefined = created && { id: sagaId, state: "running", version: definition.version, payload: created, failureReason: null, steps: new Map() };
    while (!stopping.signal.aborted) {
      const saga = fresh ?? (await statements.claim(db, sagaId, versions));
      fresh = undefined;
      if (!saga) return undefined; // terminal, parked, waiting and not due, or another replica holds the lease
      // claim takes only the versions defined here.
      const version = definitions.get(saga.version)!;
      // Only a turn from running to compensating needs another pass; anything else has ended
      // this driver's work (terminal, parked, waiting, lease lost), so it does not claim again.
      if (saga.state === "running") {
        const outcome = await runForward(saga, version);
        if (outcome === "compensate") continue;
        return outcome === "stop" ? undefined : outcome.wakeInMs;
      }
      await runCompensation(saga, version);
      return undefined;
    }
    return undefined;
  }

  /**
   * The trace a driver runs in: the caller's (a request that started or cancelled the
   * saga), or a new one of its own (the sweep), so that every attempt has a trace id.
   */
  const inDriverTrace = <T>(sagaId: string, work: () => Promise<T>): Promise<T> =>
    trace.getActiveSpan() ? work() : withSpan(`saga ${definition.type}`, SpanKind.INTERNAL, ROOT_CONTEXT, { "meshwork.saga.id": sagaId }, work);

  function drive(sagaId: string, created?: P): void {
    if (stopping.signal.aborted) return;
    // The driver under way may be past the point where it would see what made the saga due
    // (a signal delivered just after it suspended): it drives the saga again when it ends.
    if (inFlight.has(sagaId)) return void driveAgain.add(sagaId);
    cancelWake(sagaId);
    let wakeInMs: number | undefined;
    // A saga is started by a request but outlives it: it must not inherit its deadline.
    const run = detachedFromDeadline(() => inDriverTrace(sagaId, () => driveToEnd(sagaId, created)))
      .then(
        (due) => void (wakeInMs = due),
        (err: unknown) => logger.error({ sagaId, err }, "saga driver failed; the sweep resumes it"),
      )
      .finally(() => {
        inFlight.delete(sagaId);
        if (driveAgain.delete(sagaId)) drive(sagaId);
        else if (wakeInMs !== undefined) wakeLater(sagaId, wakeInMs);
      });
    inFlight.set(sagaId, run);
  }

  function cancelWake(sagaId: string): void {
    clearTimeout(wakeTimers.get(sagaId)?.timer);
    wakeTimers.delete(sagaId);
  }

  /**
   * Drives a waiting saga when it is due, if that is before the sweep's next pass (which
   * otherwise wakes it). Its lease is free meanwhile, so another replica may take it first;
   * then this one's claim finds nothing.
   */
  function wakeLater(sagaId: string, wakeInMs: number): void {
    if (stopping.signal.aborted || wakeInMs >= policy.sweepMs) return;
    const at = Date.now() + wakeInMs;
    const pending = wakeTimers.get(sagaId);
    if (pending ? pending.at <= at : wakeTimers.size >= MAX_WAKE_TIMERS) return;
    clearTimeout(pending?.timer);
    // A timer may fire a millisecond early, and the claim would then find the saga not yet
    // due and leave it to the sweep: the slack makes it late instead, by a little.
    const timer = setTimeout(() => {
      wakeTimers.delete(sagaId);
      drive(sagaId);
    }, wakeInMs + WAKE_SLACK_MS);
    timer.unref();
    wakeTimers.set(sagaId, { at, timer });
  }

  const unfinishedOfType = sql`type = ${definition.type}::text and ${sagas.version} in (${sql.join(
    versions.map((version) => sql`${version}::int`),
    sql`, `,
  )})`;

  /**
   * One pass of the sweep: the most overdue first (a waiting saga by when it is due, any
   * other by when it began), at most sweepBatch of them and none while maxInFlight are
   * driven here, leaving out those driven here already.
   */
  async function resumeUnfinished(): Promise<number> {
    const room = Math.min(policy.sweepBatch, policy.maxInFlight - inFlight.size);
    if (room <= 0) return 0;
    const driving = `{${[...inFlight.keys()].join(",")}}`;
    const rows = await rowsOf<{ id: string; wakeInMs: number | null }>(
      db,
      sql`select id, "wakeInMs" from ${sagas}
        cross join lateral (select case when state = 'waiting' then greatest(0, extract(epoch from wake_at - now()) * 1000)::float8 end as "wakeInMs") as due
        where ${unfinishedOfType} and id <> all(${driving}::uuid[])
          and ((state in ('running', 'compensating') and (lease_owner is null or lease_owner = ${owner} or lease_expires_at < now()))
            or (state = 'waiting' and wake_at < now() + ${`${policy.sweepMs} milliseconds`}::interval))
        order by coalesce(wake_at, created_at) limit ${room}::int`,
    );
    for (const { id, wakeInMs } of rows) {
      if (wakeInMs === null || wakeInMs <= 0) drive(id);
      else wakeLater(id, wakeInMs);
    }
    return rows.length;
  }

  /** What is wrong with the versions of this type's unfinished sagas: one is on a version this build does not define. */
  async function versionProblem(): Promise<string | undefined> {
    const unfinished = await db
      .select({ version: sagas.version, n: count() })
      .from(sagas)
      .where(and(eq(sagas.type, definition.type), inArray(sagas.state, ["running", "compensating", "waiting", "parked"])))
      .groupBy(sagas.version);
    const unknown = unfinished.filter(({ version }) => !definitions.has(version));
    if (unknown.length === 0) return undefined;
    return unknown
      .map(
        ({ version, n }) =>
          `saga "${definition.type}": ${n} unfinished saga${n === 1 ? " is" : "s are"} on version ${version}, which this build no longer defines; keep version ${version} in olderVersions until they finish`,
      )
      .join("; ");
  }

  async function checkVersions(): Promise<void> {
    const problem = await versionProblem();
    if (problem) throw new Error(problem);
  }

  /**
   * A pass of the sweep. The version check runs again on each: a newer replica may have
   * started sagas on a version this one does not define. They are left to it, and an error
   * logged, since this build cannot drive them.
   */
  async function sweep(): Promise<void> {
    const problem = await versionProblem();
    if (problem) logger.error({ problem }, "unfinished sagas are on a version this build does not define; a replica that defines it must drive them");
    await resumeUnfinished();
  }

  function creation(aggregateId: string, payload: P) {
    const sagaId = randomUUID();
    return { sagaId, within: (when: SQL) => statements.creation({ id: sagaId, type: definition.type, version: definition.version, aggregateId, payload }, when) };
  }

  const lockSaga = async (tx: SqlExecutor, aggregateId: string) => (await tx.select().from(sagas).where(eq(sagas.aggregateId, aggregateId)).for("update"))[0];

  /**
   * Whether a step without compensation has started: the saga can then only go forward. A
   * version this build does not define has a point of no return it cannot know: the caller
   * refuses first (see unknownVersion).
   */
  async function hasPassedPointOfNoReturn(tx: SqlExecutor, saga: SagaRow): Promise<boolean> {
    const firstWithout = pointOfNoReturn.get(saga.version)!;
    if (firstWithout < 0) return false;
    const [started] = await tx
      .select({ stepIndex: sagaSteps.stepIndex })
      .from(sagaSteps)
      .where(and(eq(sagaSteps.sagaId, saga.id), gte(sagaSteps.stepIndex, firstWithout)))
      .limit(1);
    return started !== undefined;
  }

  /** Asks a running or waiting saga to compensate at its next step boundary; a waiting one is due at once, to get there. */
  const askToCompensate = (tx: SqlExecutor, saga: SagaRow, failureReason?: string) =>
    tx
      .update(sagas)
      .set({ cancelRequested: true, ...(failureReason ? { failureReason } : {}), ...(saga.state === "waiting" ? { wakeAt: sql`now()` } : {}), updatedAt: sql`now()` })
      .where(eq(sagas.id, saga.id));

  /**
   * A saga has a failure reason exactly once it compensates (or was asked to, which is only
   * accepted before the point of no return); so a parked one with a reason was compensating.
   */
  const wasCompensating = (saga: SagaRow) => saga.failureReason !== null;
  const refused = (reason: string): SagaActionOutcome => ({ outcome: "refused", reason });

  /** Why this build cannot act on the saga, if it is on a version this build does not define. */
  const unknownVersion = (saga: SagaRow) =>
    definitions.has(saga.version) ? undefined : `saga is on version ${saga.version}, which this build does not define; a replica running it must act on it`;

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
      const unknown = saga && unknownVersion(saga);
      const outcome: SagaActionOutcome = !saga ? { outcome: "not-found" } : unknown ? refused(unknown) : await decide(saga, tx);
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
    policy,
    creation,
    drive,
    backlog: () => inFlight.size,
    resumeUnfinished,
    checkVersions,
    async startSweeping() {
      await checkVersions();
      const resumed = await resumeUnfinished();
      sweeper = setInterval(() => {
        sweep().catch((err: unknown) => logger.warn({ err }, "saga sweep failed"));
      }, policy.sweepMs);
      sweeper.unref();
      return resumed;
    },
    async requestCancel(aggregateId) {
      const outcome = await db.transaction(async (tx): Promise<{ outcome: CancelOutcome; id?: string }> => {
        const saga = await lockSaga(tx, aggregateId);
        if (!saga || saga.state === "completed" || saga.state === "compensated" || saga.state === "parked") return { outcome: "finished" };
        if (saga.state === "compensating") return { outcome: "already-compensating" };
        const unknown = unknownVersion(saga);
        if (unknown) throw new SagaVersionUnknownError(`cannot cancel: ${unknown}`);
        if (await hasPassedPointOfNoReturn(tx, saga)) return { outcome: "past-point-of-no-return" };
        await askToCompensate(tx, saga);
        return { outcome: "accepted", id: saga.id };
      });
      if (outcome.id) drive(outcome.id);
      return outcome.outcome;
    },
    async deliverSignal({ payload = {}, ...signal }) {
      const delivery = await statements.deliverSignal(db, definition.type, { ...signal, payload }, policy.maxSignalsPerSaga);
      if (delivery.woken) drive(delivery.sagaId!);
      return delivery.outcome;
    },
    async get(aggregateId, options) {
      // One statement: the steps, their waits and (for operators) the signals ride along as
      // JSON (GetOrder reads this for every watch).
      const [row] = await db
        .select({
          ...getTableColumns(sagas),
          steps: sql<StepJson[]>`coalesce((select json_agg(json_build_object('sagaId', s.saga_id, 'stepIndex', s.step_index, 'name', s.name, 'state', s.state,
            'attempts', s.attempts, 'lastError', s.last_error, 'updatedAt', s.updated_at, 'phases', s.phases,
            'waits', coalesce((select json_agg(json_build_object('name', w.name, 'kind', w.kind, 'startedAt', w.started_at, 'dueAt', w.due_at, 'endedAt', w.ended_at,
              'outcome', w.outcome)) from ${sagaWaits} w where w.saga_id = s.saga_id and w.step_index = s.step_index), '[]')) order by s.step_index)
            from ${sagaSteps} s where s.saga_id = ${sagas.id}), '[]')`,
          signals: options?.signals
            ? sql<Json<SagaSignalView>[]>`coalesce((select json_agg(json_build_object('name', g.name, 'signalId', g.signal_id, 'receivedAt', g.received_at,
                'consumedAt', g.consumed_at) order by g.received_at, g.signal_id) from (select * from ${sagaSignals} g where g.saga_id = ${sagas.id}
                order by g.received_at, g.signal_id limit ${policy.maxSignalsPerSaga}::int) g), '[]')`
            : sql<null>`null`,
        })
        .from(sagas)
        .where(eq(sagas.aggregateId, aggregateId));
      if (!row) return undefined;
      const steps = row.steps.map(({ waits, phases, ...step }) => ({
        ...step,
        updatedAt: new Date(step.updatedAt),
        phases: timeline(
          phases,
          waits.map((wait) => waitPhase({ ...wait, startedAt: new Date(wait.startedAt), dueAt: new Date(wait.dueAt), endedAt: wait.endedAt === null ? null : new Date(wait.endedAt) })),
        ),
      }));
      const { signals, ...saga } = row;
      if (!signals) return { ...saga, steps };
      return { ...saga, steps, signals: signals.map((signal) => ({ ...signal, receivedAt: new Date(signal.receivedAt), consumedAt: signal.consumedAt === null ? null : new Date(signal.consumedAt) })) };
    },
    async list({ state, retrying, limit, after }) {
      const oldestFirst: Keyset = { createdAt: sagas.createdAt, id: sagas.id, order: "oldest-first" };
      return db
        .select()
        .from(sagas)
        .where(
          and(
            eq(sagas.type, definition.type),
            state ? eq(sagas.state, state) : undefined,
            // A failed attempt to be tried again: only a running or compensating saga has one.
            retrying ? and(inArray(sagas.state, ["running", "compensating"]), isNotNull(sagas.nextAttemptAt)) : undefined,
            keysetAfter(oldestFirst, after),
          ),
        )
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
          case "waiting":
            if (await hasPassedPointOfNoReturn(tx, saga)) return refused("saga is past the point of no return; it can only go forward");
            await askToCompensate(tx, saga, reason);
            return { outcome: "accepted", state: "compensating" };
        }
      }),
    async stop() {
      stopping.abort();
      clearInterval(sweeper);
      for (const { timer } of wakeTimers.values()) clearTimeout(timer);
      wakeTimers.clear();
      await Promise.allSettled(inFlight.values());
      await db
        .update(sagas)
        .set({ leaseOwner: null, leaseExpiresAt: null })
        .where(eq(sagas.leaseOwner, owner));
    },
  };
}
