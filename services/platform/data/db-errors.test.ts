import { sql as drizzleSql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { createTestDatabase } from "#tests/support/databases.js";
import { freePort } from "#tools/infra/tcp.js";
import { isDatabaseUnavailable } from "./db-errors.js";

const caught = (work: () => Promise<unknown>) => work().then(() => undefined, (err: unknown) => err);

describe("isDatabaseUnavailable", () => {
  const failure = (code: string) => Object.assign(new Error(`failed with ${code}`), { code });

  it("tells an outage from a mistake by its code, through drizzle's wrapper", () => {
    const outages = ["CONNECTION_CLOSED", "CONNECT_TIMEOUT", "ECONNREFUSED", "ECONNABORTED", "08006", "57P01", "57P03", "53300"];
    const mistakes = ["42P01", "23505", "57P04", "57014", "ENOTSUP"];
    const wrapped = (code: string) => new Error("Failed query: select 1", { cause: failure(code) });
    expect(outages.filter((code) => !isDatabaseUnavailable(wrapped(code)))).toEqual([]);
    expect(mistakes.filter((code) => isDatabaseUnavailable(wrapped(code)))).toEqual([]);
    expect([isDatabaseUnavailable(new Error("no code")), isDatabaseUnavailable("CONNECTION_CLOSED"), isDatabaseUnavailable(undefined)]).toEqual([false, false, false]);
  });

  it("is true for a refused connection, through drizzle's wrapper", async () => {
    const sql = postgres(`postgres://postgres@127.0.0.1:${await freePort()}/none`, { max: 1, connect_timeout: 2, onnotice: () => {} });
    const err = await caught(() => drizzle(sql).execute(drizzleSql`select 1`));
    await sql.end();
    expect(err).toBeInstanceOf(Error);
    expect(isDatabaseUnavailable(err)).toBe(true);
  });

  it("is true for a connection the server terminated, false for a query's own mistake", async () => {
    const url = await createTestDatabase();
    const victim = postgres(url, { max: 1, onnotice: () => {} });
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const [{ pid }] = (await victim`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
      const killed = caught(() => victim`select pg_sleep(5)`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await admin`select pg_terminate_backend(${pid})`;
      expect(isDatabaseUnavailable(await killed)).toBe(true);
      const mistake = await caught(() => drizzle(admin).execute(drizzleSql`select * from no_such_table`));
      expect(mistake).toBeInstanceOf(Error);
      expect(isDatabaseUnavailable(mistake)).toBe(false);
    } finally {
      await victim.end({ timeout: 1 });
      await admin.end({ timeout: 1 });
    }
  });
});
