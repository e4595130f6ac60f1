/**
 * The child process of database-blips.test.ts: a service's database client under load, as
 * openDatabase builds it (postgres.js behind drizzle, its reconnect backoff), while the test terminates its backends
 * and restarts Postgres. An uncaught exception from the driver ends this process, which the
 * test sees in its exit code; nothing here catches one.
 * Usage: database-blips-load.ts <database url>. IPC: sends "ready"; on "finish" stops the
 * load, checks that the client works again and sends its report.
 */
import { sql as q } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { isDatabaseUnavailable } from "#platform/data/db-errors.js";
import { reconnectBackoff } from "#platform/data/db.js";

export interface BlipLoadReport {
  committed: number;
  failed: number;
  /** Error codes of the failures, with counts. */
  codes: Record<string, number>;
  /** Failures that isDatabaseUnavailable does not classify as the database being away. */
  unclassified: string[];
  /** Consecutive transactions that succeeded after the faults stopped. */
  recovered: number;
  /** From the end of the faults to the first of those transactions. */
  recoveredAfterMs: number;
}

const url = process.argv[2];
if (!url) throw new Error("usage: database-blips-load.ts <database url>");
const client = postgres(url, { max: 4, backoff: reconnectBackoff, onnotice: () => {}, connection: { application_name: "blip-load" } });
const db = drizzle(client);
await db.execute(q`create table if not exists blips (id bigserial primary key, worker int not null)`);

let running = true;
const report: BlipLoadReport = { committed: 0, failed: 0, codes: {}, unclassified: [], recovered: 0, recoveredAfterMs: 0 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A transaction with a write and a read: the shape of the services' own transactions. */
const transaction = (worker: number) =>
  db.transaction(async (tx) => {
    await tx.execute(q`insert into blips (worker) values (${worker})`);
    await tx.execute(q`select count(*) from blips where worker = ${worker}`);
  });

async function worker(id: number): Promise<void> {
  while (running) {
    try {
      await (id % 2 ? transaction(id) : db.execute(q`select pg_sleep(0.002)`));
      report.committed++;
    } catch (err) {
      report.failed++;
      const code = String((err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code ?? (err as Error).message);
      report.codes[code] = (report.codes[code] ?? 0) + 1;
      if (!isDatabaseUnavailable(err) && report.unclassified.length < 10) report.unclassified.push(`${code}: ${(err as Error).message}`);
      await sleep(5); // as a caller backing off, and so a refused connection does not spin
    }
  }
}

const workers = Array.from({ length: 8 }, (_, id) => worker(id));
process.send?.("ready");
process.once("message", async () => {
  running = false;
  await Promise.all(workers);
  // The faults are over: within 15 s, 20 transactions in a row must succeed again.
  const faultsEnded = Date.now();
  for (const deadline = faultsEnded + 15_000; report.recovered < 20 && Date.now() < deadline; ) {
    try {
      await transaction(-1);
      if (report.recovered++ === 0) report.recoveredAfterMs = Date.now() - faultsEnded;
    } catch {
      report.recovered = 0;
      await sleep(100);
    }
  }
  await client.end({ timeout: 5 });
  process.send?.(report, () => process.exit(0));
});
