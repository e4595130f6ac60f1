import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { startLocalPostgres, type LocalPostgres } from "#tools/infra/local-postgres.js";
import { freePort } from "#tools/infra/tcp.js";
import type { BlipLoadReport } from "./database-blips-load.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/*
 * postgres.js 3.4.9 throws `Cannot read properties of null (reading 'write')` from a
 * setImmediate when a query is sent on a connection whose backend just went away (a
 * transaction's ROLLBACK, say): no caller can catch it, and the process dies. Upstream
 * #1154 and #1208; patches/postgres+3.4.9.patch fixes it at install. Unpatched, the child
 * below dies within the first few terminations.
 */
describe("database blips", () => {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-blips-"));
  let pg: LocalPostgres | undefined;
  afterAll(async () => {
    await pg?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("a database client under load survives terminated backends and Postgres restarts, then works again", async () => {
    const dataDir = join(scratch, "postgres");
    const port = await freePort();
    const superuserPassword = "blips-superuser";
    pg = await startLocalPostgres({ dataDir, port, durable: false, superuserPassword });
    const url = pg.url;

    const child = fork(join(import.meta.dirname, "database-blips-load.ts"), [url], { execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "pipe", "ipc"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once("exit", (code, signal) => done({ code, signal })));
    const message = () => new Promise<unknown>((done) => child.once("message", done));
    await Promise.race([message(), exit]);
    const alive = () => child.exitCode === null && child.signalCode === null;
    expect(alive(), `the load process died at start:\n${stderr}`).toBe(true);

    // Terminated backends: 40 rounds, each ending every session the load holds.
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    let terminated = 0;
    for (let round = 0; round < 40 && alive(); round++) {
      await sleep(50);
      const killed = await admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'blip-load'`;
      terminated += killed.length;
    }
    await admin.end({ timeout: 1 });
    // Postgres restarts: a clean shutdown cuts every connection, then nothing listens a while.
    for (let restart = 0; restart < 3 && alive(); restart++) {
      await sleep(300);
      await pg.stop();
      await sleep(200);
      pg = await startLocalPostgres({ dataDir, port, durable: false, superuserPassword });
    }
    await sleep(300);

    expect(alive(), `the load process died during the faults:\n${stderr}`).toBe(true);
    const reported = message();
    child.send("finish");
    const report = (await Promise.race([reported, exit])) as BlipLoadReport;
    console.log(JSON.stringify({ terminated, ...report }));
    expect(await exit, stderr).toEqual({ code: 0, signal: null });
    expect(terminated).toBeGreaterThan(0);
    expect(report.failed, "the faults must have reached the client").toBeGreaterThan(0);
    expect(report.committed).toBeGreaterThan(0);
    expect(report.unclassified, "every failure reads as the database being away").toEqual([]);
    expect(report.recovered).toBe(20);
  }, 90_000);
});
