import { sql } from "drizzle-orm";
import { boolean, check, index, integer, jsonb, pgSchema, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";

type Schema = ReturnType<typeof pgSchema>;

export const sagaStates = ["running", "compensating", "waiting", "completed", "compensated", "parked"] as const;
export type SagaState = (typeof sagaStates)[number];
export const terminalSagaStates: readonly SagaState[] = ["completed", "compensated"];

export const stepStates = ["started", "succeeded", "failed", "compensated"] as const;
export type StepState = (typeof stepStates)[number];

export const sagaPhaseKinds = ["attempt", "compensation", "timer", "signal"] as const;
export type SagaPhaseKind = (typeof sagaPhaseKinds)[number];
export const sagaPhaseOutcomes = ["succeeded", "failed", "retrying", "interrupted", "waiting", "fired", "signalled", "timed-out"] as const;
export type SagaPhaseOutcome = (typeof sagaPhaseOutcomes)[number];

/** One bar of a step's timeline: an attempt of it or of its compensation, or a wait inside it. */
export interface SagaPhase {
  kind: SagaPhaseKind;
  /** 1 for the first attempt of the step or of its compensation; 0 for waits. */
  attempt: number;
  startedAt: Date;
  /** Undefined while the phase is under way. */
  endedAt?: Date;
  /** Undefined while an attempt runs. */
  outcome?: SagaPhaseOutcome;
  error?: string;
  /** For a retrying attempt: how long the saga waited before the next. */
  backoffMs?: number;
  /** The trace the attempt ran in, where it had one. */
  traceId?: string;
  /** For waits: the timer's or the signal's name. */
  waitName?: string;
  /** For waits: when the timer fires or the signal wait times out. */
  dueAt?: Date;
}

/** A phase as the step row stores it, in JSON. */
export type StoredSagaPhase = Omit<SagaPhase, "startedAt" | "endedAt" | "dueAt"> & { startedAt: string; endedAt?: string; dueAt?: string };

export const waitKinds = ["timer", "signal"] as const;
export type WaitKind = (typeof waitKinds)[number];

/**
 * Saga instances, their steps, the waits inside steps and the signals delivered to them, as
 * rows in the owning service's schema. Memory holds nothing that a restart would need: the
 * lease columns say who drives a saga now, and an expired lease lets any replica resume it;
 * a waiting saga holds no lease at all, only the time it must be woken.
 */
export function createSagaTables(schema: Schema) {
  const sagas = schema.table(
    "sagas",
    {
      id: uuid("id").primaryKey(),
      type: text("type").notNull(),
      /** The definition's version the saga started on; it finishes on it. */
      version: integer("version").notNull().default(1),
      /** The business entity the saga is about, e.g. the order id. */
      aggregateId: text("aggregate_id").notNull().unique(),
      state: text("state", { enum: sagaStates }).notNull().default("running"),
      /** Everything the steps need, captured when the saga starts. */
      payload: jsonb("payload").$type<Record<string, unknown>>().notNull(),
      /** Why the saga compensates, once it does; shown to the customer. */
      failureReason: text("failure_reason"),
      /** The last error of a step or compensation, for operators. */
      lastError: text("last_error"),
      /** The step or compensation being attempted, e.g. "charge" or "charge (compensation)". */
      currentStep: text("current_step"),
      /** Attempts of the current step or compensation, the one under way included. */
      attempts: integer("attempts").notNull().default(0),
      /** When a failed attempt will be tried again; null while an attempt runs or none is due. */
      nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true }),
      cancelRequested: boolean("cancel_requested").notNull().default(false),
      /** While waiting: when the sweep must resume it (a timer's due time, a signal wait's timeout, or now once woken). */
      wakeAt: timestamp("wake_at", { withTimezone: true, precision: 3 }),
      /** While waiting on a signal: its name, so that delivering it wakes the saga. */
      waitingFor: text("waiting_for"),
      /**
       * Signals delivered so far. A driver about to suspend on a signal compares it with the
       * count it read with the signals: a signal delivered in between changed it (the two
       * statements meet on this row's lock), so the driver looks again instead of sleeping.
       */
      signalsReceived: integer("signals_received").notNull().default(0),
      leaseOwner: text("lease_owner"),
      leaseExpiresAt: timestamp("lease_expires_at", { withTimezone: true }),
      // Millisecond precision, so a page token built from a JS Date matches the row exactly.
      createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
      updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [
      index("sagas_unfinished_idx").on(t.createdAt).where(sql`${t.state} in ('running', 'compensating')`),
      // The sweep finds waiting sagas by when they are due.
      index("sagas_waking_idx").on(t.wakeAt).where(sql`${t.state} = 'waiting'`),
      // The retention sweep finds finished sagas by age.
      index("sagas_finished_idx").on(t.updatedAt).where(sql`${t.state} in ('completed', 'compensated')`),
      // Operators list sagas by state, oldest first, a page at a time.
      index("sagas_state_created_idx").on(t.state, t.createdAt, t.id),
      check("sagas_state_valid", sql`${t.state} in ('running', 'compensating', 'waiting', 'completed', 'compensated', 'parked')`),
    ],
  );
  const sagaSteps = schema.table(
    "saga_steps",
    {
      sagaId: uuid("saga_id")
        .notNull()
        .references(() => sagas.id),
      stepIndex: integer("step_index").notNull(),
      name: text("name").notNull(),
      state: text("state", { enum: stepStates }).notNull(),
      attempts: integer("attempts").notNull().default(0),
      lastError: text("last_error"),
      /** The step's attempts and its compensation's, oldest first; bounded (see saga-statements.ts). */
      phases: jsonb("phases").$type<StoredSagaPhase[]>().notNull().default(sql`'[]'::jsonb`),
      updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [
      primaryKey({ columns: [t.sagaId, t.stepIndex] }),
      check("saga_steps_state_valid", sql`${t.state} in ('started', 'succeeded', 'failed', 'compensated')`),
    ],
  );
  /**
   * A durable timer or a signal wait inside a step, by the name the step gave it. It outlives
   * the process: a re-run of the step finds it and goes on from it, with its clock unchanged.
   * Deleted with its saga (retention deletes sagas, not waits).
   */
  const sagaWaits = schema.table(
    "saga_waits",
    {
      sagaId: uuid("saga_id")
        .notNull()
        .references(() => sagas.id, { onDelete: "cascade" }),
      stepIndex: integer("step_index").notNull(),
      name: text("name").notNull(),
      kind: text("kind", { enum: waitKinds }).notNull(),
      startedAt: timestamp("started_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
      /** When the timer fires, or the signal wait times out. */
      dueAt: timestamp("due_at", { withTimezone: true, precision: 3 }).notNull(),
      endedAt: timestamp("ended_at", { withTimezone: true, precision: 3 }),
      /** fired, signalled, timed-out or interrupted (the saga compensated meanwhile); null while open. */
      outcome: text("outcome", { enum: ["fired", "signalled", "timed-out", "interrupted"] }),
      /** The signal a signalled wait took: no later wait takes it again, and a re-run of the step reads it. */
      signalId: text("signal_id"),
    },
    (t) => [
      primaryKey({ columns: [t.sagaId, t.stepIndex, t.name] }),
      check("saga_waits_kind_valid", sql`${t.kind} in ('timer', 'signal')`),
      check("saga_waits_outcome_valid", sql`${t.outcome} in ('fired', 'signalled', 'timed-out', 'interrupted')`),
    ],
  );
  /**
   * Signals delivered to a saga, once each by the sender's id. Kept whether or not a step
   * waits for one yet: a step that asks later finds it. Deleted with its saga.
   */
  const sagaSignals = schema.table(
    "saga_signals",
    {
      sagaId: uuid("saga_id")
        .notNull()
        .references(() => sagas.id, { onDelete: "cascade" }),
      signalId: text("signal_id").notNull(),
      name: text("name").notNull(),
      payload: jsonb("payload").$type<Record<string, unknown>>().notNull(),
      receivedAt: timestamp("received_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
      /** When a waiting step took it; null until one does. */
      consumedAt: timestamp("consumed_at", { withTimezone: true, precision: 3 }),
    },
    (t) => [primaryKey({ columns: [t.sagaId, t.signalId] })],
  );
  return { sagas, sagaSteps, sagaWaits, sagaSignals };
}

/** The tables the saga runner works on. */
export type SagaRunnerTables = ReturnType<typeof createSagaTables>;
/** The saga and step tables: what retention trims, the waits and signals going with their saga. */
export type SagaTables = Pick<SagaRunnerTables, "sagas" | "sagaSteps">;
export type SagaRow = SagaRunnerTables["sagas"]["$inferSelect"];
export type SagaStepRow = SagaRunnerTables["sagaSteps"]["$inferSelect"];
export type SagaWaitRow = SagaRunnerTables["sagaWaits"]["$inferSelect"];
export type SagaSignalRow = SagaRunnerTables["sagaSignals"]["$inferSelect"];
