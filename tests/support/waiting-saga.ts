/**
 * A saga that waits, for tests that kill the process driving it: its tables and definition,
 * and, run as a script (`tsx tests/support/waiting-saga.ts <database-url> <aggregate-id> <timer|signal>`),
 * a process that starts one, drives it until it waits, says "waiting" and stays up until killed.
 */
import { resolve } from "node:path";
import { pgSchema } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { createSagaRunner, type SagaDefinition } from "#platform/saga/saga-runner.js";
import { createSagaTables } from "#platform/saga/tables.js";
import { silentLogger } from "./silent-logger.js";

export const waitingSagaSchema = pgSchema("saga_kill_test");
export const waitingSagaTables = createSagaTables(waitingSagaSchema);

export interface WaitingPayload {
  kind: "timer" | "signal";
}

/** How long the timer saga sleeps: long enough to kill its process first. */
export const TIMER_MS = 3_000;

/** A step that waits on a timer or for the signal "go", then one more step; `effect` records each step's work. */
export function waitingSaga(effect: (what: string) => void): SagaDefinition<WaitingPayload> {
  return {
    type: "waiting",
    version: 1,
    steps: [
      {
        name: "wait",
        async run({ kind }, ctx) {
          effect("wait");
          if (kind === "timer") await ctx.sleep("hold", TIMER_MS);
          else effect(`signalled ${JSON.stringify(await ctx.awaitSignal("go", { timeoutMs: 60_000 }))}`);
          effect("waited");
        },
        async compensate() {
          effect("undo-wait");
        },
      },
      {
        name: "done",
        async run() {
          effect("done");
        },
      },
    ],
    onCompensated: async () => {},
  };
}

/** The policy both the killed process and its successor drive with: a quick sweep. */
export const waitingSagaPolicy = { stepTimeoutMs: 2_000, leaseMs: 10_000, maxBackoffMs: 100, sweepMs: 200 };

async function main([url, aggregateId, kind]: string[]): Promise<void> {
  const sql = postgres(url!, { max: 2, onnotice: () => {} });
  const db = drizzle(sql);
  const runner = createSagaRunner<WaitingPayload>({ db, tables: waitingSagaTables, definition: waitingSaga(() => {}), logger: silentLogger, policy: waitingSagaPolicy });
  const payload = { kind: kind as WaitingPayload["kind"] };
  runner.drive(await runner.create(db, aggregateId!, payload), payload);
  for (let i = 0; i < 500; i++) {
    const [row] = await sql`select state from saga_kill_test.sagas where aggregate_id = ${aggregateId!}`;
    if (row?.["state"] === "waiting") {
      process.stdout.write("waiting\n");
      // Up until killed: the test means to kill a live process mid-wait.
      setInterval(() => {}, 60_000);
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the saga did not reach its wait");
}

if (process.argv[1] && resolve(process.argv[1]) === import.meta.filename) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
