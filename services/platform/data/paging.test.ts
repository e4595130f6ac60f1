import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgTable, timestamp, uuid } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/postgres-js";
import { connect, createTestDatabase } from "#tests/support/databases.js";
import { encodePageToken, keysetAfter, keysetOrder, pageRequest, readPage, type Keyset, type PageKey } from "./paging.js";

const rows = pgTable("paged", { id: uuid("id").primaryKey(), createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull() });

describe("page requests", () => {
  it("clamps the size, decodes the token, and names the field a bad one came in", () => {
    expect(pageRequest({ pageSize: 0, pageToken: "" }, "ListThings")).toEqual({ size: 20, after: undefined });
    expect(pageRequest({ pageSize: 1_000, pageToken: "" }, "ListThings").size).toBe(100);
    const key = { createdAt: new Date("2024-05-01T10:00:00.000Z"), id: randomUUID() };
    expect(pageRequest({ pageSize: 5, pageToken: encodePageToken(key) }, "ListThings")).toEqual({ size: 5, after: key });
    expect(() => pageRequest({ pageSize: -1, pageToken: "" }, "ListThings")).toThrow("page_size: must not be negative");
    expect(() => pageRequest({ pageSize: 5, pageToken: "garbage" }, "ListThings")).toThrow("page_token: is not a token returned by ListThings");
  });
});

describe("keyset paging against real Postgres", () => {
  let sql: ReturnType<typeof connect>;
  let db: ReturnType<typeof drizzle>;
  /** Seven rows, three of them created in the same millisecond, so the id breaks ties. */
  const stored: PageKey[] = [];

  beforeAll(async () => {
    sql = connect(await createTestDatabase());
    db = drizzle(sql);
    await sql`create table paged (id uuid primary key, created_at timestamptz(3) not null)`;
    const base = Date.parse("2024-05-01T10:00:00.000Z");
    for (const offsetMs of [0, 1, 1, 1, 2, 3, 4]) stored.push({ id: randomUUID(), createdAt: new Date(base + offsetMs) });
    await db.insert(rows).values(stored);
  });
  afterAll(async () => {
    await sql?.end();
  });

  const compare = (a: PageKey, b: PageKey) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

  /** Every page of two, following each page's token, as the ids they held. */
  async function pages(order: Keyset["order"]): Promise<string[][]> {
    const keyset: Keyset = { createdAt: rows.createdAt, id: rows.id, order };
    const read = (limit: number, after: PageKey | undefined) => db.select().from(rows).where(keysetAfter(keyset, after)).orderBy(...keysetOrder(keyset)).limit(limit);
    const seen: string[][] = [];
    let pageToken = "";
    for (let n = 0; n < 10; n++) {
      const page = await readPage(pageRequest({ pageSize: 2, pageToken }, "ListPaged"), read);
      seen.push(page.rows.map((row) => row.id));
      pageToken = page.nextPageToken;
      if (!pageToken) break;
    }
    return seen;
  }

  it("reads newest first, each row once, ties broken by id, the last page without a token", async () => {
    const expected = [...stored].sort(compare).reverse().map((row) => row.id);
    expect(await pages("newest-first")).toEqual([expected.slice(0, 2), expected.slice(2, 4), expected.slice(4, 6), expected.slice(6)]);
  });

  it("reads oldest first the same way", async () => {
    const expected = [...stored].sort(compare).map((row) => row.id);
    expect(await pages("oldest-first")).toEqual([expected.slice(0, 2), expected.slice(2, 4), expected.slice(4, 6), expected.slice(6)]);
  });
});
