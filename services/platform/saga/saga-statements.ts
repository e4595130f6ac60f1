import { sql, type SQL } from "drizzle-orm";
import { rowsOf as rows, type SqlExecutor } from "../data/db.js";
import type { SagaState, SagaTables, StepState } from "./tables.js";

/** What a driver needs of a saga it has just claimed. */
export interface ClaimedSaga {
  id: string;
  state: SagaState;
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

const CANCELLED_BY_CUSTOMER = "cancelled at the customer's request";

/**
 * Every transition a driver makes is one statement: a fenced UPDATE of the saga row (it
 * matches only while this runner holds the lease, and renews it) with the step rows written
 * in data-modifying CTEs that run only if the fence matched. One statement is atomic without
 * BEGIN and COMMIT, so a step boundary costs one round trip instead of five. A statement
 * whose fence matched nothing means the lease was lost.
 */
export function createSagaStatements({ sagas, sagaSteps }: SagaTables, owner: string, leaseMs: number) {
  const lease = sql`now() + ${`${leaseMs} milliseconds`}::interval`;
  const fencedBy = (sagaId: string) => sql`id = ${sagaId}::uuid and lease_owner = ${owner}`;
  /** The attempt count once an attempt of `label` starts: the next, or the first of a new action. */
  const attemptOf = (label: string) => sql`case when current_step = ${label}::text then attempts + 1 else 1 end`;
  /** Runs a statement whose last SELECT counts the fenced rows; false if the lease is gone. */
  const fenced = async (db: SqlExecutor, statement: SQL) => (await rows<{ fenced: number }>(db, statement))[0]!.fenced > 0;

  return {
    /**
     * A new saga, leased to this runner from the start (so driving it needs no claim, and no
     * other replica's sweep takes it), as a CTE of a larger statement: it goes in only where
     * `when` holds.
     */
    creation: (saga: { id: string; type: string; aggregateId: string; payload: unknown }, when: SQL) =>
      sql`created_saga as (
        insert into ${sagas} (id, type, aggregate_id, payload, lease_owner, lease_expires_at)
        select ${saga.id}::uuid, ${saga.type}::text, ${saga.aggregateId}::text, ${JSON.stringify(saga.payload)}::jsonb, ${owner}::text, ${lease} where ${when})`,

    /**
     * Takes the lease of an unfinished saga that is free, ours or lapsed, then reads its steps.
     * Two statements: one would read the steps in the snapshot it took before waiting on the
     * saga row, and could miss a step the runner it waited for started just before letting go.
     */
    async claim(db: SqlExecutor, sagaId: string): Promise<ClaimedSaga | undefined> {
      const [row] = await rows<{ id: string; state: SagaState; payload: unknown; failureReason: string | null }>(
        db,
        sql`update ${sagas} set lease_owner = ${owner}, lease_expires_at = ${lease}
          where id = ${sagaId}::uuid and state in ('running', 'compensating')
            and (lease_owner is null or lease_owner = ${owner} or lease_expires_at < now())
          returning id, state, payload, failure_reason as "failureReason"`,
      );
      if (!row) return undefined;
      const steps = await rows<{ stepIndex: number; state: StepState }>(db, sql`select step_index as "stepIndex", state from ${sagaSteps} where saga_id = ${sagaId}::uuid`);
      return { ...row, steps: new Map(steps.map((step) => [step.stepIndex, step.state])) };
    },

    /**
     * Records the step that just succeeded (if any), then completes the saga or, unless
     * cancellation was asked for first, marks the next step started with its first attempt
     * counted. The saga row's lock orders this against requestCancel, so a cancel either
     * lands before the point of no return starts, or is refused.
     */
    async crossBoundary(
      db: SqlExecutor,
      sagaId: string,
      succeeded: number | undefined,
      next: { index: number; name: string } | undefined,
      pastPointOfNoReturn: boolean,
    ): Promise<BoundaryOutcome | undefined> {
      const completing = next === undefined;
      const label = next?.name ?? null;
      const cancels = sql`(cancel_requested and not ${pastPointOfNoReturn}::boolean)`;
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
          returning state),
        succeeded as (
          update ${sagaSteps} set state = 'succeeded', last_error = null, updated_at = now()
          where saga_id = ${sagaId}::uuid and step_index = ${succeeded ?? null}::int and exists (select from fenced)),
        started as (
          insert into ${sagaSteps} (saga_id, step_index, name, state, attempts)
          select ${sagaId}::uuid, ${next?.index ?? null}::int, ${label}::text, 'started', 1 from fenced where fenced.state = 'running' and not ${completing}::boolean
          on conflict (saga_id, step_index) do update set state = 'started', attempts = ${sagaSteps}.attempts + 1, updated_at = now())
        select state from fenced`,
      );
      if (!row) return undefined;
      return completing ? "completed" : row.state === "compensating" ? "cancelled" : "started";
    },

    /** Counts an attempt of `label` on the saga and its step, and renews the lease. */
    countAttempt: (db: SqlExecutor, sagaId: string, stepIndex: number, label: string) =>
      fenced(
        db,
        sql`with fenced as (
          update ${sagas} set lease_expires_at = ${lease}, next_attempt_at = null, current_step = ${label}::text, attempts = ${attemptOf(label)}
          where ${fencedBy(sagaId)} returning 1),
        step as (
          update ${sagaSteps} set attempts = attempts + 1, updated_at = now()
          where saga_id = ${sagaId}::uuid and step_index = ${stepIndex}::int and exists (select from fenced))
        select count(*)::int as fenced from fenced`,
      ),

    /** Records a failed attempt that will be retried, and when: what GetOrder shows operators. */
    recordRetry: (db: SqlExecutor, sagaId: string, stepIndex: number, lastError: string, delayMs: number) =>
      fenced(
        db,
        sql`with fenced as (
          update ${sagas} set lease_expires_at = ${lease}, last_error = ${lastError}::text,
            next_attempt_at = now() + ${`${Math.round(delayMs)} milliseconds`}::interval
          where ${fencedBy(sagaId)} returning 1),
        step as (
          update ${sagaSteps} set last_error = ${lastError}::text, updated_at = now()
          where saga_id = ${sagaId}::uuid and step_index = ${stepIndex}::int and exists (select from fenced))
        select count(*)::int as fenced from fenced`,
      ),

    /** Records a step's outcome and, if given, the saga's new state. */
    settle(db: SqlExecutor, sagaId: string, { step, saga }: Settlement) {
      const release = saga?.releaseLease === true;
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
          on conflict (saga_id, step_index) do update set state = excluded.state, last_error = excluded.last_error, updated_at = now())
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
  };
}
