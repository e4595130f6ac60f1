import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { createTestDatabase } from "../support/databases.js";

const settledWithin = <T>(work: Promise<T>, ms: number) =>
  Promise.race([
    work.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    new Promise<"still waiting">((done) => setTimeout(() => done("still waiting"), ms)),
  ]);

/**
 * The driver patch (patches/postgres+3.4.9.patch) where postgres.js loads the array types
 * on a new connection. The reconnect races of that code are covered by database-blips;
 * this is the other way that query fails: an error answer while the connection stays up.
 */
describe("postgres.js, patched: the array-types query of a new connection fails", () => {
  it("settles the waiting query with that error, and no connection serves queries without array types", async () => {
    const url = new URL(await createTestDatabase());
    const admin = postgres(url.toString(), { max: 1, onnotice: () => {} });
    const role = `types_probe_${randomBytes(4).toString("hex")}`;
    // The types query reads pg_catalog.pg_type; without that privilege it gets an error
    // answer on a healthy connection, as it would from a statement_timeout.
    await admin.unsafe(`create role ${role} login password 'probe'`);
    await admin.unsafe(`revoke select on pg_catalog.pg_type from public`);
    const probeUrl = new URL(url);
    [probeUrl.username, probeUrl.password] = [role, "probe"];
    const sql = postgres(probeUrl.toString(), { max: 1, onnotice: () => {} });
    try {
      const first = await settledWithin(sql`select 1 as one`, 10_000);
      expect(first).toMatchObject({ error: { code: "42501" } }); // permission denied for table pg_type

      await admin.unsafe(`grant select on pg_catalog.pg_type to public`);
      const [row] = await sql<{ xs: unknown }[]>`select array[1, 2]::int4[] as xs`;
      expect(row?.xs).toEqual([1, 2]); // parsed, not the text "{1,2}"
    } finally {
      await sql.end({ timeout: 1 });
      await admin.unsafe(`drop role ${role}`);
      await admin.end({ timeout: 1 });
    }
  });
});
