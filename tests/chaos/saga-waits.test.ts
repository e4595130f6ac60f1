import { spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { drizzle } from "drizzle-orm/postgres-js";
import { generateDrizzleJson, generateMigration } from "drizzle-kit/api";
import { createSagaRunner } from "#platform/saga/saga-runner.js";
import { connect, createTestDatabase } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { silentLogger } from "../support/silent-logger.js";
import { TIMER_MS, waitingSaga, waitingSagaPolicy, waitingSagaSchema, waitingSagaTables, type WaitingPayload } from "../support/waiting-saga.js";

const fixture = resolve(import.meta.dirname, "../support/waiting-saga.ts");

/**
 * A wait is rows, not a process: a saga suspended on a timer or a signal survives SIGKILL
 * of the process that drove it there, and a runner started afterwards finishes it.
 */
describe("a waiting saga survives SIGKILL of its process", () => {
  let url: string;
  let sql: ReturnType<typeof connect>;

  beforeAll(async () => {
    url = await createTestDatabase();
    sql = connect(url);
    for (const statement of await generateMigration(generateDrizzleJson({}), generateDrizzleJson({ schema: waitingSagaSchema, ...waitingSagaTables }))) await sql.unsafe(statement);
  });
  afterAll(() => sql?.end());

  /** Runs the fixture until its saga waits, then kills it with SIGKILL by its pid. */
  async function killMidWait(aggregateId: string, kind: WaitingPayload["kind"]) {
    const child = spawn(process.execPath, ["--import", "tsx", fixture, url, aggregateId, kind], { cwd: resolve(import.meta.dirname, "../.."), stdio: ["ignore", "pipe", "pipe"] });
    const exited = once(child, "exit");
    let output = "";
    child.stderr.on("data", (chunk: Buffer) => void (output += chunk.toString()));
    try {
      await new Promise<void>((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`the fixture did not report its saga waiting: ${output}`)), 30_000);
        child.stdout.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("waiting")) {
            clearTimeout(timer);
            ok();
          }
        });
        child.on("exit", (code) => fail(new Error(`the fixture exited (${code}) before its saga waited: ${output}`)));
      });
    } finally {
      process.kill(child.pid!, "SIGKILL");
      const [, signal] = await exited;
      expect(signal).toBe("SIGKILL");
    }
  }

  const sagaRow = async (aggregateId: string) =>
    (await sql`select id, state, lease_owner, (select count(*)::int from saga_kill_test.saga_waits w where w.saga_id = s.id and w.ended_at is null) as open_waits
      from saga_kill_test.sagas s where aggregate_id = ${aggregateId}`)[0];

  /** A runner in this process, as a restarted replica would start it. */
  function successor() {
    const effects: string[] = [];
    const runner = createSagaRunner<WaitingPayload>({ db: drizzle(sql), tables: waitingSagaTables, definition: waitingSaga((what) => effects.push(what)), logger: silentLogger, policy: waitingSagaPolicy });
    return { runner, effects };
  }

  it("a durable timer fires after the process is gone, on time and once", async () => {
    await killMidWait("timer-killed", "timer");
    expect(await sagaRow("timer-killed")).toMatchObject({ state: "waiting", lease_owner: null, open_waits: 1 });
    const { runner, effects } = successor();
    try {
      await runner.startSweeping();
      await eventually(async () => expect((await sagaRow("timer-killed"))?.["state"]).toBe("completed"), 20_000);
      // On time by the wait's own row: it ended no sooner than TIMER_MS after it began (the
      // time the fixture took to start up is no part of it).
      const [wait] = await sql`select extract(epoch from w.ended_at - w.started_at) * 1000 as held_ms, w.ended_at >= w.due_at as after_due
        from saga_kill_test.saga_waits w join saga_kill_test.sagas s on s.id = w.saga_id where s.aggregate_id = 'timer-killed'`;
      expect(Number(wait!["held_ms"])).toBeGreaterThanOrEqual(TIMER_MS);
      expect(wait!["after_due"]).toBe(true);
      expect(effects).toEqual(["wait", "waited", "done"]);
      const saga = (await runner.get("timer-killed"))!;
      expect(saga.steps[0]!.phases.map((p) => `${p.kind}:${p.outcome}`)).toEqual(["attempt:waiting", "timer:fired", "attempt:succeeded"]);
    } finally {
      await runner.stop();
    }
  });

  it("a signal wait takes a signal delivered after the process is gone", async () => {
    await killMidWait("signal-killed", "signal");
    expect(await sagaRow("signal-killed")).toMatchObject({ state: "waiting", lease_owner: null, open_waits: 1 });
    const { runner, effects } = successor();
    try {
      await runner.startSweeping();
      // Nothing wakes it but the signal.
      await new Promise((r) => setTimeout(r, 3 * waitingSagaPolicy.sweepMs));
      expect((await sagaRow("signal-killed"))?.["state"]).toBe("waiting");
      expect(await runner.deliverSignal({ aggregateId: "signal-killed", name: "go", signalId: "go-1", payload: { ok: true } })).toBe("delivered");
      await eventually(async () => expect((await sagaRow("signal-killed"))?.["state"]).toBe("completed"), 20_000);
      expect(effects).toEqual(["wait", 'signalled {"ok":true}', "waited", "done"]);
    } finally {
      await runner.stop();
    }
  });
});
