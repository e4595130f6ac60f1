import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "#platform/data/db.js";
import { provisionServiceRoles, serviceDatabaseUrl } from "#tools/infra/database-roles.js";
import { connect, createServiceDatabases, createTestDatabase, serviceSchemas, testRolePassword } from "../support/databases.js";
import { silentLogger } from "../support/silent-logger.js";

const migrations = (service: string) => resolve(import.meta.dirname, `../../services/${service}/migrations`);

/** Every migration payment has, as its journal lists them. */
const paymentMigrations = (JSON.parse(readFileSync(resolve(migrations("payment"), "meta/_journal.json"), "utf8")) as { entries: unknown[] }).entries.length;

/** Opens (and so migrates) a service's database at `url` as `openDatabase` does at start, then closes it. */
async function migrate(url: string, service: "inventory" | "payment" | "order") {
  const database = await openDatabase({ url, schemaName: serviceSchemas[service], tables: {}, migrationsFolder: migrations(service), logger: silentLogger });
  await database.close();
}

/** Runs `statement` alone on a connection of its own as the URL's role. */
async function run(url: string, statement: string) {
  const sql = connect(url);
  try {
    return await sql.unsafe(statement);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

const probeName = (purpose: string) => `${purpose}_${randomBytes(4).toString("hex")}`;

describe("a service's own Postgres role (provisionServiceRoles)", () => {
  let adminUrl: string;
  let urls: Awaited<ReturnType<typeof createServiceDatabases>>["urls"];
  let admin: ReturnType<typeof connect>;
  let payment: ReturnType<typeof connect>;

  beforeAll(async () => {
    ({ adminUrl, urls } = await createServiceDatabases());
    // The other services' schemas as their own migrations, run as their own roles, leave them.
    await Promise.all([migrate(urls.order, "order"), migrate(urls.inventory, "inventory")]);
    admin = connect(adminUrl);
    payment = connect(urls.payment);
  });
  afterAll(async () => {
    await payment?.end({ timeout: 1 });
    await admin?.end({ timeout: 1 });
  });

  it("is a login role with no other attribute", async () => {
    const [attributes] = await admin`
      select rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls from pg_roles where rolname = 'payment'`;
    expect(attributes).toEqual({ rolcanlogin: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolreplication: false, rolbypassrls: false });
  });

  it("reads nothing of another service's schema", async () => {
    // The tables are there: the superuser sees them, empty.
    expect(await admin`select (select count(*) from orders.orders)::int as orders, (select count(*) from inventory.products)::int as products`).toEqual([
      { orders: 0, products: 0 },
    ]);
    await expect(payment`select * from orders.orders`).rejects.toMatchObject({ code: "42501" });
    await expect(payment`select * from inventory.products`).rejects.toMatchObject({ code: "42501" });
    await expect(payment`insert into orders.outbox default values`).rejects.toMatchObject({ code: "42501" });
  });

  it("runs no program on the database server and creates no roles", async () => {
    await expect(payment.unsafe("copy (select 1) to program 'id'")).rejects.toMatchObject({ code: "42501" });
    await expect(payment.unsafe(`create role ${probeName("intruder")}`)).rejects.toMatchObject({ code: "42501" });
  });

  it("creates nothing outside its own schema: no table in public, no schema, no extension", async () => {
    await expect(payment.unsafe("create table public.x (id int)")).rejects.toMatchObject({ code: "42501" });
    await expect(payment.unsafe("create schema elsewhere")).rejects.toMatchObject({ code: "42501" });
    await expect(payment.unsafe("create extension citext")).rejects.toMatchObject({ code: "42501" });
    expect(await admin`select nspname from pg_namespace where nspname = 'elsewhere' union all select extname from pg_extension where extname = 'citext'`).toEqual([]);
  });

  it("works in its own schema", async () => {
    await payment.unsafe("create table payment.scratch (id int primary key, note text)");
    await payment`insert into payment.scratch values (1, 'mine')`;
    expect(await payment`select id, note from payment.scratch`).toEqual([{ id: 1, note: "mine" }]);
  });

  it("applies its service's migrations as itself, and owns what they make", async () => {
    await migrate(urls.payment, "payment");
    expect(await payment`select count(*)::int as applied from payment.__drizzle_migrations`).toEqual([{ applied: paymentMigrations }]);
    const owners = await admin<{ tableowner: string }[]>`select distinct tableowner from pg_tables where schemaname = 'payment'`;
    expect(owners.map((row) => row.tableowner)).toEqual(["payment"]);
    expect(await payment`select count(*)::int as payments from payment.payments`).toEqual([{ payments: 0 }]);
  });

  it("moves a schema the superuser made and filled (an older .data/) to the role, rows and journal intact", async () => {
    const oldUrl = await createTestDatabase();
    await migrate(oldUrl, "payment"); // as the superuser, as every service ran before
    await run(
      oldUrl,
      `insert into payment.voided_orders (order_id, reason) values ('o-1', 'before the move');
       create type payment.legacy_state as enum ('a', 'b');
       create domain payment.legacy_amount as int check (value >= 0);
       create type payment.legacy_pair as (x int, y int);
       create sequence payment.legacy_seq;
       create view payment.legacy_view as select order_id from payment.voided_orders;
       create materialized view payment.legacy_counts as select count(*) as n from payment.voided_orders;
       create function payment.legacy_double(x int) returns int language sql as 'select x * 2';
       create procedure payment.legacy_noop() language sql as 'select 1';
       create aggregate payment.legacy_sum(int) (sfunc = int4pl, stype = int);`,
    );
    await provisionServiceRoles(oldUrl, [{ role: "payment", schema: "payment", password: testRolePassword("payment") }]);

    const notOwned = await run(
      oldUrl,
      `select 'schema' as kind, nspname::text as name from pg_namespace where nspname = 'payment' and nspowner::regrole::text <> 'payment'
       union all select 'class', relname::text from pg_class where relnamespace = 'payment'::regnamespace and relowner::regrole::text <> 'payment'
       union all select 'proc', proname::text from pg_proc where pronamespace = 'payment'::regnamespace and proowner::regrole::text <> 'payment'
       union all select 'type', typname::text from pg_type where typnamespace = 'payment'::regnamespace and typowner::regrole::text <> 'payment'`,
    );
    expect(notOwned).toEqual([]);

    const paymentUrl = serviceDatabaseUrl(oldUrl, "payment", testRolePassword("payment"));
    await migrate(paymentUrl, "payment"); // the journal moved too: nothing to apply, and no error
    const sql = connect(paymentUrl);
    try {
      await sql`insert into payment.voided_orders (order_id, reason) values ('o-2', 'after the move')`;
      expect(await sql`select order_id, reason from payment.voided_orders order by order_id`).toEqual([
        { order_id: "o-1", reason: "before the move" },
        { order_id: "o-2", reason: "after the move" },
      ]);
      expect(await sql`select count(*)::int as applied from payment.__drizzle_migrations`).toEqual([{ applied: paymentMigrations }]);
      await sql`refresh materialized view payment.legacy_counts`;
      const [row] = await sql`
        select payment.legacy_double(21) as doubled, nextval('payment.legacy_seq')::int as next,
               (select count(*)::int from payment.legacy_view) as viewed, (select n::int from payment.legacy_counts) as counted,
               (select payment.legacy_sum(x) from (values (1), (2)) as v(x)) as summed, 'b'::payment.legacy_state::text as state`;
      expect(row).toEqual({ doubled: 42, next: 1, viewed: 2, counted: 2, summed: 3, state: "b" });
      await sql`call payment.legacy_noop()`;
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("provisions again, concurrently, and in more databases of the same cluster", async () => {
    const roles = (Object.keys(serviceSchemas) as (keyof typeof serviceSchemas)[]).map((service) => ({
      role: service,
      schema: serviceSchemas[service],
      password: testRolePassword(service),
    }));
    const [, , ...more] = await Promise.all([
      provisionServiceRoles(adminUrl, roles),
      provisionServiceRoles(adminUrl, roles),
      createServiceDatabases(),
      createServiceDatabases(),
      createServiceDatabases(),
    ]);
    for (const url of [urls.payment, ...more.map((databases) => databases.urls.payment)]) {
      expect(await run(url, "select current_user as role, current_schema() as schema")).toEqual([{ role: "payment", schema: "payment" }]);
    }
    expect(await payment`select id from payment.scratch`).toEqual([{ id: 1 }]); // still there
  });

  it("takes a rotated password, and takes back an attribute someone added", async () => {
    const role = probeName("rotation");
    await provisionServiceRoles(adminUrl, [{ role, schema: role, password: "first-secret" }]);
    expect(await run(serviceDatabaseUrl(adminUrl, role, "first-secret"), "select current_user as role")).toEqual([{ role }]);

    await admin.unsafe(`alter role ${role} createdb`);
    await provisionServiceRoles(adminUrl, [{ role, schema: role, password: "second-secret" }]);
    await expect(run(serviceDatabaseUrl(adminUrl, role, "first-secret"), "select 1")).rejects.toMatchObject({ code: "28P01" });
    expect(await run(serviceDatabaseUrl(adminUrl, role, "second-secret"), "select current_user as role")).toEqual([{ role }]);
    expect(await admin`select rolcreatedb from pg_roles where rolname = ${role}`).toEqual([{ rolcreatedb: false }]);
  });

  it("works for an admin that is no superuser: a CREATEROLE role owning the database", async () => {
    const delegate = probeName("createrole_admin");
    const database = probeName("delegated");
    await admin.unsafe(`create role ${delegate} login createrole password 'delegate-secret'`);
    await admin.unsafe(`create database ${database} owner ${delegate}`);
    const delegateUrl = new URL(serviceDatabaseUrl(adminUrl, delegate, "delegate-secret"));
    delegateUrl.pathname = `/${database}`;

    const role = probeName("delegated_service");
    const provision = () => provisionServiceRoles(delegateUrl.toString(), [{ role, schema: role, password: "service-secret" }]);
    await provision();
    await provision(); // again: the second run finds everything in place
    const url = serviceDatabaseUrl(delegateUrl.toString(), role, "service-secret");
    await run(url, `create table ${role}.t (id int)`);
    await run(url, `insert into ${role}.t values (7)`);
    expect(await run(url, `select id from ${role}.t`)).toEqual([{ id: 7 }]);
    await expect(run(url, "create table public.x (id int)")).rejects.toMatchObject({ code: "42501" });
  });
});
