import { sql, type SQL } from "drizzle-orm";
import { rowsOf as rows, type SqlExecutor } from "../data/db.js";
import { appendPhase, closeLastPhase } from "./phases.js";
import { terminalSagaStates, type SagaRunnerTables, type SagaState, type StepState, type WaitKind } from "./tables.js";

/** What a driver needs of a saga it has just claimed. */
export interface ClaimedSaga {
  id: string;
  /** A waiting saga is claimed once it is due, and so resumes running. */
  state: "running" | "compensating";
  version: number;
  payload: unknown;
  failureReason: string | null;
  /** Each persisted step's state, by index. */
  steps: Map<number, StepState>;
}

/** A step's outcome, and optionally the saga's new state, as one transition records them. */
export interface Settlement {
  step: { index: number; name: string; state: StepState; lastError?: string };
  saga?: { state: SagaState; failureReason?: string; lastError: string; releaseLease?: true };
}

/** The outcome of crossing a step boundary, as the saga row decided it. */
export type BoundaryOutcome = "started" | "cancelled" | "completed";

/** A wait as a step names it; a timer is due at a time or a while after it was first reached. */
export interface WaitSpec {
  name: string;
  kind: WaitKind;
  due: { at: Date } | { afterMs: number };
}

/** What a step finds at a wait: how it ended (still open: null), and what it read with it. */
export interface WaitCheck {
  outcome: "fired" | "signalled" | "timed-out" | null;
  /** The signal's payload, once signalled. */
  payload: Record<string, unknown> | null;
  /** The saga's signal count in the same snapshot as the signal looked for; see suspend. */
  seen: number;
}

/** The outcome of delivering a signal, as one statement decided it. */
export interface Delivery {
  /** See SignalOutcome. */
  outcome: "delivered" | "duplicate" | "finished" | "closed" | "too-many" | "not-found";
  sagaId?: string;
  /** Whether the saga was waiting on this signal and is now due. */
  woken: boolean;
}

const CANCELLED_BY_CUSTOMER = "cancelled at the customer's request";

/** A whole number of milliseconds as an interval. */
const millis = (ms: number) => sql`${`${Math.max(0, Math.round(ms))} milliseconds`}::interval`;

/**
 * Every transition a driver makes is one statement: a fenced UPDATE of the saga row (it
 * matches only while this runner holds the lease, and renews it) with the step rows written
 * in data-modifying CTEs that run only if the fence matched. One statement is atomic without
 * BEGIN and COMMIT, so a step boundary costs one round trip instead of five. A statement
 * whose fence matched nothing means the lease was lost.
 */
export function createSagaStatements({ sagas, sagaSteps, sagaWaits, sagaSignals }: SagaRunnerTables, owner: string, leaseMs: number) {
  const lease = sql`now() + ${millis(leaseMs)}`;
  const fencedBy = (sagaId: string) => sql`id = ${sagaId}::uuid and lease_owner = ${owner}`;
  const stepOf = (sagaId: string, stepIndex: number | null) => sql`saga_id = ${sagaId}::uuid and step_index = ${stepIndex}::int`;
  /** The attempt count once an attempt of `label` starts: the next, or the first of a new action. */
  const attemptOf = (label: string) => sql`case when current_step = ${label}::text then attempts + 1 else 1 end`;
  /** Runs a statement whose last SELECT counts the fenced rows; false if the lease is gone. */
  const fenced = async (db: SqlExecutor, statement: SQL) => (await rows<{ fenced: number }>(db, statement))[0]!.fenced > 0;
  const phases = sql`${sagaSteps.phases}`;

  return {
    /**
     * A new saga, leased to this runner from the start (so driving it needs no claim, and no
     * other replica's sweep takes it), as a CTE of a larger statement: it goes in only where
     * `when` holds.
     */
    creation: (saga: { id: string; type: string; version: number; aggregateId: string; payload: unknown }, when: SQL) =>
      sql`created_saga as (
        insert into ${sagas} (id, type, version, aggregate_id, payload, lease_owner, lease_expires_at)
        select ${saga.id}::uuid, ${saga.type}::text, ${saga.version}::int, ${saga.aggregateId}::text, ${JSON.stringify(saga.payload)}::jsonb, ${owner}::text, ${lease} where ${when})`,

    /**
     * Takes the lease of an unfinished saga that is free, ours or lapsed, on a version this
     * build defines, then reads its steps. A waiting saga is taken only once due, and resumes
     * running (waits are inside forward steps). Two statements: one would read the steps in
     * the snapshot it took before waiting on the saga row, and could miss a step the runner
     * it waited for started just before letting go.
     */
    async claim(db: SqlExecutor, sagaId: string, versions: readonly number[]): Promise<ClaimedSaga | undefined> {
      const [row] = await rows<Omit<ClaimedSaga, "steps">>(
        db,
        sql`update ${sagas} set lease_owner = ${owner}, lease_expires_at = ${lease},
            state = case when state = 'waiting' then 'running' else state end,
            updated_at = case when state = 'waiting' then now() else updated_at end,
            wake_at = null, waiting_for = null
          where id = ${sagaId}::uuid and version in (${sql.join(versions.map((v) => sql`${v}::int`), sql`, `)})
            and (state in ('running', 'compensating') or (state = 'waiting' and wake_at <= now()))
            and (lease_owner is null or lease_owner = ${owner} or lease_expires_at < now())
          returning id, state, version, payload, failure_reason as "failureReason"`,
      );
      if (!row) return undefined;
      const steps = await rows<{ stepIndex: number; state: StepState }>(db, sql`select step_index as "stepIndex", state from ${sagaSteps} where saga_id = ${sagaId}::uuid`);
      return { ...row, steps: new Map(steps.map((step) => [step.stepIndex, step.state])) };
    },

    /**
     * Records the step that just succeeded (if any), then completes the saga or, unless
     * cancellation was asked for first, marks the next step started with its first attempt
     * counted and opened in its timeline. The saga row's lock orders this against
     * requestCancel, so a cancel either lands before the point of no return starts, or is
     * refused. A saga turning to compensate ends the waits it left open (it was woken from
     * one to be cancelled).
     */
    async crossBoundary(
      db: SqlExecutor,
      sagaId: string,
      succeeded: number | undefined,
      next: { index: number; name: string } | undefined,
      pastPointOfNoReturn: boolean,
      traceId: string | undefined,
    ): Promise<BoundaryOutcome | undefined> {
      const completing = next === undefined;
      const label = next?.name ?? null;
      const cancels = sql`(cancel_requested and not ${pastPointOfNoReturn}::boolean)`;
      const firstAttempt = appendPhase(sql`'[]'::jsonb`, { kind: "attempt", attempt: sql`1`, traceId });
      const [row] = await rows<{ state: SagaState }>(
        db,
        sql`with fenced as (
          update ${sagas} set
            next_attempt_at = null,
            current_step = coalesce(${label}::text, current_step),
            attempts = ${completing ? sql`attempts` : attemptOf(label!)},
            state = case when ${completing}::boolean then 'completed' when ${cancels} then 'compensating' else state end,
            failure_reason = case when not ${completing}::boolean and ${cancels} then coalesce(failure_reason, ${CANCELLED_BY_CUSTOMER}) else failure_reason end,
            lease_owner = case when ${completing}::boolean then null else lease_owner end,
            lease_expires_at = case when ${completing}::boolean then null else ${lease} end,
            updated_at = case when ${completing}::boolean or ${cancels} then now() else updated_at end
          where ${fencedBy(sagaId)}
          returning state, attempts),
        succeeded as (
          update ${sagaSteps} set state = 'succeeded', last_error = null, updated_at = now(), phases = ${closeLastPhase(phases, { outcome: "succeeded" })}
          where ${stepOf(sagaId, succeeded ?? null)} and exists (select from fenced)),
        started as (
          insert into ${sagaSteps} (saga_id, step_index, name, state, attempts, phases)
          select ${sagaId}::uuid, ${next?.index ?? null}::int, ${label}::text, 'started', 1, ${firstAttempt} from fenced where fenced.state = 'running' and not ${completing}::boolean
          on conflict (saga_id, step_index) do update set state = 'started', attempts = ${sagaSteps}.attempts + 1, updated_at = now(),
            phases = ${appendPhase(phases, { kind: "attempt", attempt: sql`(select attempts from fenced)`, traceId })}),
        interrupted as (
          update ${sagaWaits} set ended_at = now(), outcome = 'interrupted'
          where saga_id = ${sagaId}::uuid and ended_at is null and exists (select from fenced where fenced.state = 'compensating'))
        select state from fenced`,
      );
      if (!row) return undefined;
      return completing ? "completed" : row.state === "compensating" ? "cancelled" : "started";
    },

    /** Counts an attempt of `label` on the saga and its step, opens it in the step's timeline, and renews the lease. */
    countAttempt: (db: SqlExecutor, sagaId: string, stepIndex: number, label: string, kind: "attempt" | "compensation", traceId: string | undefined) =>
      fenced(
        db,
        sql`with fenced as (
          update ${sagas} set lease_expires_at = ${lease}, next_attempt_at = null, current_step = ${label}::text, attempts = ${attemptOf(label)}
          where ${fencedBy(sagaId)} returning attempts),
        step as (
          update ${sagaSteps} set attempts = attempts + 1, updated_at = now(), phases = ${appendPhase(phases, { kind, attempt: sql`(select attempts from fenced)`, traceId })}
          where ${stepOf(sagaId, stepIndex)} and exists (select from fenced))
        select count(*)::int as fenced from fenced`,
      ),

    /** Records a failed attempt that will be retried, and when: what GetOrder shows operators. */
    recordRetry: (db: SqlExecutor, sagaId: string, stepIndex: number, lastError: string, delayMs: number, error: string) =>
      fenced(
        db,
        sql`with fenced as (
          update ${sagas} set lease_expires_at = ${lease}, last_error = ${lastError}::text, next_attempt_at = now() + ${millis(delayMs)}
          where ${fencedBy(sagaId)} returning 1),
        step as (
          update ${sagaSteps} set last_error = ${lastError}::text, updated_at = now(), phases = ${closeLastPhase(phases, { outcome: "retrying", error, backoffMs: delayMs })}
          where ${stepOf(sagaId, stepIndex)} and exists (select from fenced))
        select count(*)::int as fenced from fenced`,
      ),

    /**
     * Records a step's outcome and, if given, the saga's new state. The attempt under way
     * ends with it: succeeded for a compensation that took effect, failed otherwise (a step
     * that failed, or a compensation that parks the saga).
     */
    settle(db: SqlExecutor, sagaId: string, { step, saga }: Settlement) {
      const release = saga?.releaseLease === true;
      const end = step.state === "compensated" ? { outcome: "succeeded" as const } : { outcome: "failed" as const, error: step.lastError };
      return fenced(
        db,
        sql`with fenced as (
          update ${sagas} set
            next_attempt_at = null,
            state = coalesce(${saga?.state ?? null}::text, state),
            failure_reason = coalesce(${saga?.failureReason ?? null}::text, failure_reason),
            last_error = ${saga ? sql`${saga.lastError}::text` : sql`last_error`},
            lease_owner = case when ${release}::boolean then null else lease_owner end,
            lease_expires_at = case when ${release}::boolean then null else ${lease} end,
            updated_at = ${saga ? sql`now()` : sql`updated_at`}
          where ${fencedBy(sagaId)} returning 1),
        step as (
          insert into ${sagaSteps} (saga_id, step_index, name, state, last_error)
          select ${sagaId}::uuid, ${step.index}::int, ${step.name}::text, ${step.state}::text, ${step.lastError ?? null}::text from fenced
          on conflict (saga_id, step_index) do update set state = excluded.state, last_error = excluded.last_error, updated_at = now(),
            phases = ${closeLastPhase(phases, end)})
        select count(*)::int as fenced from fenced`,
      );
    },

    /** Marks the saga compensated and releases it; run in the transaction of onCompensated. */
    finishCompensation: (tx: SqlExecutor, sagaId: string) =>
      fenced(
        tx,
        sql`with fenced as (
          update ${sagas} set state = 'compensated', lease_owner = null, lease_expires_at = null, next_attempt_at = null, updated_at = now()
          where ${fencedBy(sagaId)} returning 1)
        select count(*)::int as fenced from fenced`,
      ),

    /**
     * Finds a step's wait, recording it the first time it is reached (its clock starts
     * then), and ends it if it is over: a timer whose time has come fired; a signal wait is
     * signalled by a signal of its name that no earlier wait took (consumed_at is null) and
     * that arrived by the wait's due time (before or after the wait began), and takes it:
     * the wait row keeps its id and the signal is marked consumed. One past its due time
     * without such a signal timed out, even if a signal came in after the deadline and
     * before the saga woke. An ended wait stays as it ended, and a re-run of the step reads
     * the signal it took. Renews the lease.
     */
    async checkWait(db: SqlExecutor, sagaId: string, stepIndex: number, wait: WaitSpec): Promise<WaitCheck | undefined> {
      const due = "at" in wait.due ? sql`${wait.due.at.toISOString()}::timestamptz` : sql`now() + ${millis(wait.due.afterMs)}`;
      const isSignal = wait.kind === "signal";
      const [row] = await rows<WaitCheck>(
        db,
        sql`with fenced as (
          update ${sagas} set lease_expires_at = ${lease} where ${fencedBy(sagaId)} returning 1),
        existing as (
          select due_at, outcome, signal_id from ${sagaWaits} where ${stepOf(sagaId, stepIndex)} and name = ${wait.name}::text),
        d as (select coalesce((select due_at from existing), ${due}) as due),
        signal as (
          select g.signal_id, g.payload from ${sagaSignals} g
          where ${isSignal}::boolean and g.saga_id = ${sagaId}::uuid and g.name = ${wait.name}::text
            and case when exists (select from existing where outcome is not null)
              then g.signal_id = (select signal_id from existing)
              else g.consumed_at is null and g.received_at <= (select due from d) end
          order by g.received_at, g.signal_id limit 1),
        wait as (
          insert into ${sagaWaits} (saga_id, step_index, name, kind, due_at, ended_at, outcome, signal_id)
          select ${sagaId}::uuid, ${stepIndex}::int, ${wait.name}::text, ${wait.kind}::text, d.due, case when e.outcome is not null then now() end, e.outcome,
            (select signal_id from signal)
          from fenced, d, (select case when exists (select from signal) then 'signalled' when d.due <= now() then ${isSignal ? "timed-out" : "fired"}::text end as outcome from d) as e
          on conflict (saga_id, step_index, name) do update set
            ended_at = coalesce(${sagaWaits}.ended_at, excluded.ended_at),
            outcome = coalesce(${sagaWaits}.outcome, excluded.outcome),
            signal_id = coalesce(${sagaWaits}.signal_id, excluded.signal_id)
          returning outcome),
        consumed as (
          update ${sagaSignals} set consumed_at = coalesce(consumed_at, now())
          where saga_id = ${sagaId}::uuid and signal_id = (select signal_id from signal) and exists (select from wait where outcome = 'signalled'))
        select wait.outcome,
          case when wait.outcome = 'signalled' then (select payload from signal) end as payload,
          (select signals_received from ${sagas} where id = ${sagaId}::uuid) as seen
        from wait`,
      );
      return row;
    },

    /**
     * Suspends the saga on a step's open wait: waiting, due when the wait is, the lease
     * released, the attempt under way ended as waiting. Due at once instead if a signal
     * arrived since `seen` was read (deliverSignal saw the saga running, so woke nobody) or a
     * cancellation was asked for meanwhile. Returns how soon the saga is due.
     */
    async suspend(db: SqlExecutor, sagaId: string, stepIndex: number, wait: { name: string; kind: WaitKind; seen: number }): Promise<{ wakeInMs: number } | undefined> {
      const dueNow = sql`(signals_received <> ${wait.seen}::int or cancel_requested)`;
      const [row] = await rows<{ wakeInMs: number }>(
        db,
        sql`with fenced as (
          update ${sagas} set state = 'waiting',
            -- Never null: a saga waiting with no wake time would wait forever.
            wake_at = case when ${dueNow} then now()
              else coalesce((select due_at from ${sagaWaits} where ${stepOf(sagaId, stepIndex)} and name = ${wait.name}::text), now()) end,
            waiting_for = ${wait.kind === "signal" ? wait.name : null}::text,
            lease_owner = null, lease_expires_at = null, next_attempt_at = null, updated_at = now()
          where ${fencedBy(sagaId)}
          returning greatest(0, extract(epoch from wake_at - now()) * 1000)::float8 as "wakeInMs"),
        step as (
          update ${sagaSteps} set updated_at = now(), phases = ${closeLastPhase(phases, { outcome: "waiting" })}
          where ${stepOf(sagaId, stepIndex)} and exists (select from fenced))
        select "wakeInMs" from fenced`,
      );
      return row;
    },

    /**
     * Records a signal once by its id and counts it on the saga row; a saga waiting on it is
     * made due at once. A repeat of a recorded id is a duplicate whatever the saga does now.
     * A new one is refused once the saga has finished, while it compensates, once a wait of
     * that name has timed out or is past its due time (the step will time out, and the
     * saga compensate, whatever arrives now), and past `maxSignals` signals kept for the
     * saga. The saga row is locked first, so the second statement, in a snapshot of its own,
     * sees every delivery that held the lock before it: the cap holds under concurrent calls.
     */
    deliverSignal: (
      db: SqlExecutor,
      type: string,
      signal: { aggregateId: string; name: string; signalId: string; payload: Record<string, unknown> },
      maxSignals: number,
    ): Promise<Delivery> =>
      db.transaction(async (tx) => {
        const [target] = await rows<{ id: string; state: SagaState }>(
          tx,
          sql`select id, state from ${sagas} where aggregate_id = ${signal.aggregateId}::text and type = ${type}::text for update`,
        );
        if (!target) return { outcome: "not-found", woken: false };
        const [row] = await rows<{ duplicate: boolean; closed: boolean; woken: boolean | null }>(
          tx,
          sql`with existing as (
            select from ${sagaSignals} where saga_id = ${target.id}::uuid and signal_id = ${signal.signalId}::text),
          closed as (
            select from ${sagaWaits} where saga_id = ${target.id}::uuid and name = ${signal.name}::text and kind = 'signal'
              and (outcome = 'timed-out' or (ended_at is null and due_at <= now()))),
          kept as (select count(*)::int as n from ${sagaSignals} where saga_id = ${target.id}::uuid),
          inserted as (
            insert into ${sagaSignals} (saga_id, signal_id, name, payload)
            select ${target.id}::uuid, ${signal.signalId}::text, ${signal.name}::text, ${JSON.stringify(signal.payload)}::jsonb
            where ${target.state}::text in ('running', 'waiting', 'parked') and not exists (select from existing) and not exists (select from closed)
              and (select n from kept) < ${maxSignals}::int
            returning saga_id),
          woken as (
            update ${sagas} set signals_received = signals_received + 1,
              wake_at = case when state = 'waiting' and waiting_for = ${signal.name}::text then now() else wake_at end
            where id in (select saga_id from inserted)
            returning state = 'waiting' and waiting_for = ${signal.name}::text as woken)
          select exists (select from existing) as duplicate, exists (select from closed) as closed, (select woken from woken)`,
        );
        const { duplicate, closed, woken } = row!;
        const delivery = (outcome: Delivery["outcome"]): Delivery => ({ outcome, sagaId: target.id, woken: woken === true });
        if (woken !== null) return delivery("delivered");
        if (duplicate) return delivery("duplicate");
        if (terminalSagaStates.includes(target.state)) return delivery("finished");
        if (target.state === "compensating" || closed) return delivery("closed");
        // Under the lock, nothing else keeps a new signal out.
        return delivery("too-many");
      }),
  };
}
