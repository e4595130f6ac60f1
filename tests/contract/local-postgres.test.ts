import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { freePort } from "#tools/infra/tcp.js";

const root = resolve(import.meta.dirname, "../..");
const localPostgres = pathToFileURL(join(root, "tools/infra/local-postgres.ts")).href;

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function gone(pid: number, withinMs: number): Promise<boolean> {
  for (const deadline = Date.now() + withinMs; Date.now() < deadline; ) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

/**
 * A Node process that starts a throwaway cluster as the benches and the chaos command do,
 * says where, and then only waits: it installs no signal handler, so a signal kills it
 * the way it kills any Node process.
 */
async function processWithPostgres(dataDir: string): Promise<{ child: ReturnType<typeof spawn>; postmasterPid: number }> {
  const port = await freePort();
  const program = `
    const { startLocalPostgres } = await import(${JSON.stringify(localPostgres)});
    await startLocalPostgres({ dataDir: ${JSON.stringify(dataDir)}, port: ${port}, superuserPassword: "signal-test", durable: false });
    process.stdout.write("ready\\n");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", program], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  const stderr: string[] = [];
  child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  await new Promise<void>((ready, fail) => {
    child.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && ready());
    child.once("exit", (code) => fail(new Error(`the child exited (${code}) before Postgres was up:\n${stderr.join("")}`)));
  });
  const postmasterPid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  return { child, postmasterPid };
}

describe("local Postgres (startLocalPostgres)", () => {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-local-postgres-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    it(`stops when the process that started it dies of ${signal}`, async () => {
      const dataDir = join(scratch, signal);
      const { child, postmasterPid } = await processWithPostgres(dataDir);
      try {
        expect(isAlive(postmasterPid)).toBe(true);
        const exited = new Promise((done) => child.once("exit", (_code, killedBy) => done(killedBy)));
        child.kill(signal);
        expect(await exited).toBe(signal); // died of the signal, no handler ran
        expect(await gone(postmasterPid, 10_000)).toBe(true);
      } finally {
        if (isAlive(postmasterPid)) process.kill(postmasterPid, "SIGQUIT"); // never leave one behind
      }
    });
  }

  it("moves a cluster with the former built-in superuser password and cleartext rules to the given password and SCRAM, once", async () => {
    const dataDir = join(scratch, "former");
    const port = await freePort();
    const start = (superuserPassword: string, log?: (line: string) => void) => startLocalPostgres({ dataDir, port, superuserPassword, durable: false, log });
    await (await start("postgres")).stop();
    // What initdb --auth=password wrote for every cluster before.
    writeFileSync(join(dataDir, "pg_hba.conf"), ["local all all password", "host all all 127.0.0.1/32 password", "host all all ::1/128 password"].join("\n"));
    const urlWith = (password: string) => `postgres://postgres:${password}@127.0.0.1:${port}/meshwork`;
    const query = async (url: string) => {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      try {
        return await sql<{ auth_method: string }[]>`select distinct auth_method from pg_hba_file_rules`;
      } finally {
        await sql.end({ timeout: 1 });
      }
    };

    const logged: string[] = [];
    const moved = await start("new-secret", (line) => logged.push(line));
    try {
      expect(moved.url).toBe(urlWith("new-secret"));
      expect((await query(moved.url)).map((rule) => rule.auth_method)).toEqual(["scram-sha-256"]);
      await expect(query(urlWith("postgres"))).rejects.toMatchObject({ code: "28P01" });
    } finally {
      await moved.stop();
    }
    expect(logged.filter((line) => line.includes("former built-in password"))).toHaveLength(1);

    await (await start("new-secret", (line) => logged.push(line))).stop();
    expect(logged.filter((line) => line.includes("former built-in password"))).toHaveLength(1); // once

    await expect(start("wrong-secret")).rejects.toThrow(/does not open the Postgres cluster/);
    expect(existsSync(join(dataDir, "postmaster.pid"))).toBe(false); // stopped, not left running
  });

  it.runIf(process.getuid?.() === 0)("as root, refuses a TMPDIR that another user could swap the binary copies out of", async () => {
    const shared = join(scratch, "shared-tmp");
    mkdirSync(shared);
    chmodSync(shared, 0o777); // writable by all, no sticky bit
    const before = process.env["TMPDIR"];
    process.env["TMPDIR"] = shared;
    try {
      const started = startLocalPostgres({ dataDir: join(scratch, "refused"), port: await freePort(), superuserPassword: "refused-test", durable: false });
      await expect(started).rejects.toThrow(/shared-tmp is writable by others \(mode 777\) without the sticky bit.*TMPDIR=\/tmp/);
    } finally {
      if (before === undefined) delete process.env["TMPDIR"];
      else process.env["TMPDIR"] = before;
    }
    expect(existsSync(join(shared, "meshwork-postgres"))).toBe(false);
  });
});
