import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deployable } from "#mesh";
import { createLegacyDatabase, testLegacyPasswords, type LegacyDatabase } from "#tests/support/legacy-databases.js";
import { productsTableSql } from "../../legacy/oldshop/src/schema.js";
import { createTestDatabase } from "#tests/support/databases.js";
import { provisionLegacyDatabase } from "./legacy-database.js";

/** A replication connection (replication=database) as the catalog's reader opens one; resolves its IDENTIFY_SYSTEM answer or rejects. */
async function replicate(url: string, command: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url, replication: "database" } as pg.ClientConfig);
  await client.connect();
  try {
    return (await client.query(command)).rows;
  } finally {
    await client.end();
  }
}

const refusal = (promise: Promise<unknown>) => promise.then(() => "allowed", (err: { code?: string }) => err.code ?? String(err));

describe("the old shop's own cluster, provisioned for the catalog's change capture", () => {
  let db: LegacyDatabase;
  let oldshop: postgres.Sql;
  let cdc: postgres.Sql;
  let admin: postgres.Sql;

  beforeAll(async () => {
    db = await createLegacyDatabase();
    [oldshop, cdc, admin] = [db.oldshopUrl, db.cdcUrl, db.adminUrl].map((url) => postgres(url, { max: 1, onnotice: () => {} })) as [postgres.Sql, postgres.Sql, postgres.Sql];
    // The table as the old shop creates it at start, after provisioning: default privileges must cover it.
    await oldshop.unsafe(productsTableSql);
    await oldshop`insert into oldshop.products (sku, title, price, currency) values ('MW-MUG-001', 'Meshwork mug', '12.99', 'USD')`;
  });
  afterAll(async () => {
    await Promise.all([oldshop, cdc, admin].map((sql) => sql?.end()));
  });

  it("publishes the old shop's table, created after the publication", async () => {
    expect(await admin`select schemaname, tablename from pg_publication_tables where pubname = 'oldshop_catalog'`).toEqual([{ schemaname: "oldshop", tablename: "products" }]);
    expect(await admin`show wal_level`).toEqual([{ wal_level: "logical" }]);
  });

  it("lets catalog_cdc read the table and replicate, and nothing else", async () => {
    expect(await cdc`select sku, price from oldshop.products`).toEqual([{ sku: "MW-MUG-001", price: "12.99" }]);
    expect(await replicate(db.cdcUrl, "IDENTIFY_SYSTEM")).toHaveLength(1);
    expect(await refusal(cdc`insert into oldshop.products (sku, title, price, currency) values ('X', 'x', '1', 'USD')`)).toBe("42501");
    expect(await refusal(cdc`update oldshop.products set price = 0`)).toBe("42501");
    expect(await refusal(cdc`delete from oldshop.products`)).toBe("42501");
    expect(await refusal(cdc.unsafe("create table oldshop.evil (x int)"))).toBe("42501");
    expect(await refusal(cdc.unsafe("create table public.evil (x int)"))).toBe("42501");
    expect(await refusal(cdc.unsafe("create schema evil"))).toBe("42501");
    const [row] = await admin`select rolreplication, rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = 'catalog_cdc'`;
    expect(row).toEqual({ rolreplication: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false });
  });

  it("gives the old shop its schema but no replication", async () => {
    expect(await refusal(replicate(db.oldshopUrl, "IDENTIFY_SYSTEM"))).toBe("42501"); // must be a replication role
    const [row] = await admin`select rolreplication from pg_roles where rolname = 'oldshop'`;
    expect(row).toEqual({ rolreplication: false });
    const [owner] = await admin`select nspowner::regrole::text as owner from pg_namespace where nspname = 'oldshop'`;
    expect(owner).toEqual({ owner: "oldshop" });
  });

  it("can run again: nothing changes but the passwords, and the rows stay", async () => {
    await provisionLegacyDatabase(db.adminUrl, deployable("oldshop"), testLegacyPasswords);
    expect(await cdc`select count(*)::int as n from oldshop.products`).toEqual([{ n: 1 }]);
    expect(await admin`select count(*)::int as n from pg_publication where pubname = 'oldshop_catalog'`).toEqual([{ n: 1 }]);
  });
});

describe("provisioning a legacy cluster without logical replication", () => {
  it("refuses, naming wal_level", async () => {
    const plain = await createTestDatabase(); // the mesh's test cluster: wal_level=replica
    await expect(provisionLegacyDatabase(plain, deployable("oldshop"), testLegacyPasswords)).rejects.toThrow(/wal_level=logical/);
    const admin = postgres(plain, { max: 1, onnotice: () => {} });
    expect(await admin`select rolname from pg_roles where rolname in ('oldshop', 'catalog_cdc')`).toEqual([]); // nothing made before the refusal
    await admin.end();
  });
});
