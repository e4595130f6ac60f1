import { sql, type SQL } from "drizzle-orm";
import type { SagaPhase, SagaPhaseKind, SagaPhaseOutcome, SagaWaitRow, StoredSagaPhase } from "./tables.js";

/**
 * A step's history (saga_steps.phases) is written by the statements that move the saga on
 * anyway: crossing a boundary opens the first attempt, counting an attempt opens the next,
 * recording a retry, settling or suspending closes the open one. So the timeline costs no
 * statement of its own. Its waits are the saga_waits rows, merged in when it is read.
 */

/** Phases kept from each end of a step's history: a saga retrying for hours keeps how it began and how it is going. */
export const PHASES_KEPT_AT_EACH_END = 50;

/** How an open phase ends: its outcome and, for a failed or retrying attempt, the error and the wait before the next. */
export interface PhaseEnd {
  outcome: SagaPhaseOutcome;
  error?: string | undefined;
  backoffMs?: number | undefined;
}

/** The closing fields of a phase, nulls left out. */
const endFields = ({ outcome, error, backoffMs }: PhaseEnd) =>
  sql`jsonb_strip_nulls(jsonb_build_object('endedAt', now(), 'outcome', ${outcome}::text, 'error', ${error ?? null}::text, 'backoffMs', ${backoffMs === undefined ? null : Math.round(backoffMs)}::int))`;

/** `phases` (a jsonb array expression) with its last phase ended as `end`, if it is still open. */
export const closeLastPhase = (phases: SQL, end: PhaseEnd) =>
  sql`(select case when (p -> -1) ? 'startedAt' and not ((p -> -1) ? 'endedAt') then jsonb_set(p, '{-1}', (p -> -1) || ${endFields(end)}) else p end from (select ${phases} as p) as current)`;

/**
 * `phases` with a new open phase appended: one left open before it (its process stopped or
 * died mid-attempt) is closed as interrupted. Trimmed to its first and last
 * PHASES_KEPT_AT_EACH_END entries.
 */
export function appendPhase(phases: SQL, phase: { kind: SagaPhaseKind; attempt: SQL; traceId: string | undefined }): SQL {
  const opened = sql`jsonb_strip_nulls(jsonb_build_object('kind', ${phase.kind}::text, 'attempt', ${phase.attempt}, 'startedAt', now(), 'traceId', ${phase.traceId ?? null}::text))`;
  const kept = PHASES_KEPT_AT_EACH_END;
  return sql`(select case when jsonb_array_length(p) > ${2 * kept}::int
      then jsonb_path_query_array(p, ${`$[0 to ${kept - 1}]`}::jsonpath) || jsonb_path_query_array(p, ${`$[last - ${kept - 1} to last]`}::jsonpath)
      else p end
    from (select ${closeLastPhase(phases, { outcome: "interrupted" })} || jsonb_build_array(${opened}) as p) as appended)`;
}

/** A wait row as the phase it is in the step's timeline. */
export const waitPhase = (wait: Omit<SagaWaitRow, "sagaId" | "stepIndex" | "signalId">): SagaPhase => ({
  kind: wait.kind,
  attempt: 0,
  startedAt: wait.startedAt,
  ...(wait.endedAt ? { endedAt: wait.endedAt } : {}),
  outcome: wait.outcome ?? "waiting",
  waitName: wait.name,
  dueAt: wait.dueAt,
});

/** A stored phase with its times as Dates. */
export const readPhase = ({ startedAt, endedAt, dueAt, ...rest }: StoredSagaPhase): SagaPhase => ({
  ...rest,
  startedAt: new Date(startedAt),
  ...(endedAt ? { endedAt: new Date(endedAt) } : {}),
  ...(dueAt ? { dueAt: new Date(dueAt) } : {}),
});

/**
 * A step's timeline: its stored attempts in the order they were written, with its waits
 * (oldest first) merged in where they began.
 */
export function timeline(stored: readonly StoredSagaPhase[], waits: readonly SagaPhase[]): SagaPhase[] {
  const pending = [...waits].sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime());
  const merged: SagaPhase[] = [];
  for (const phase of stored.map(readPhase)) {
    while (pending.length > 0 && pending[0]!.startedAt < phase.startedAt) merged.push(pending.shift()!);
    merged.push(phase);
  }
  return [...merged, ...pending];
}
