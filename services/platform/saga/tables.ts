import { sql } from "drizzle-orm";
import { boolean, check, index, integer, jsonb, pgSchema, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";

type Schema = ReturnType<typeof pgSchema>;

export const sagaStates = ["running", "compensating", "completed", "compensated", "parked"] as const;
export type SagaState = (typeof sagaStates)[number];
export const terminalSagaStates: readonly SagaState[] = ["completed", "compensated"];

export const stepStates = ["started", "succeeded", "failed", "compensated"] as const;
export type StepState = (typeof stepStates)[number];

/**
 * Saga instances and their steps, as rows in the owning service's schema. Memory holds
 * nothing that a restart would need: the lease columns say who drives a saga now, and an
 * expired lease lets any replica resume it.
 */
export function createSagaTables(schema: Schema) {
  const sagas = schema.table(
    "sagas",
    {
      id: uuid("id").primaryKey(),
      type: text("type").notNull(),
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
      leaseOwner: text("lease_owner"),
      leaseExpiresAt: timestamp("lease_expires_at", { withTimezone: true }),
      // Millisecond precision, so a page token built from a JS Date matches the row exactly.
      createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
      updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [
      index("sagas_unfinished_idx").on(t.createdAt).where(sql`${t.state} in ('running', 'compensating')`),
      // The retention sweep finds finished sagas by age.
      index("sagas_finished_idx").on(t.updatedAt).where(sql`${t.state} in ('completed', 'compensated')`),
      // Operators list sagas by state, oldest first, a page at a time.
      index("sagas_state_created_idx").on(t.state, t.createdAt, t.id),
      check("sagas_state_valid", sql`${t.state} in ('running', 'compensating', 'completed', 'compensated', 'parked')`),
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
      updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [
      primaryKey({ columns: [t.sagaId, t.stepIndex] }),
      check("saga_steps_state_valid", sql`${t.state} in ('started', 'succeeded', 'failed', 'compensated')`),
    ],
  );
  return { sagas, sagaSteps };
}

export type SagaTables = ReturnType<typeof createSagaTables>;
export type SagaRow = SagaTables["sagas"]["$inferSelect"];
export type SagaStepRow = SagaTables["sagaSteps"]["$inferSelect"];
