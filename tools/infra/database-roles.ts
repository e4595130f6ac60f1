import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import postgres, { type TransactionSql } from "postgres";

export interface ServiceRole {
  /** The login role, named after the service; every identifier is quoted, so "order" is fine. */
  role: string;
  /** The one schema the role owns. */
  schema: string;
  password: string;
}

/**
 * Gives every service a Postgres role of its own that owns its schema and nothing else, in
 * the database `adminUrl` names. `adminUrl` is a superuser's, or a CREATEROLE role's that
 * owns the database. Safe to run at every start and concurrently: it changes only what is
 * not as it should be, and a transaction-scoped advisory lock serialises runs on one database.
 *
 * - Each role: LOGIN and no other attribute (re-asserted if someone added one); its password
 *   set at every run, so a rotated secret takes effect.
 * - The database: no privileges for PUBLIC; each role may CONNECT, use TEMPORARY tables, and
 *   CREATE, only because drizzle's migrator and the services' first migrations run
 *   `CREATE SCHEMA IF NOT EXISTS`, which Postgres refuses without CREATE on the database even
 *   when the schema exists. A superuser admin also installs an event trigger that refuses a
 *   service role any schema, extension or publication it would actually create (all that
 *   privilege allows), so each role still owns its schema alone.
 * - Schema `public`: no CREATE for PUBLIC. USAGE stays: no service keeps anything there, and
 *   revoking it would hide the functions of extensions an operator installs there.
 * - The role's schema: created owned by the role; if it exists owned by someone else (an
 *   older `.data/` or deployment, where the superuser owned everything), it moves to the
 *   role with its tables, sequences, views, functions and types, the drizzle journal
 *   included, rows intact. No privileges on it for PUBLIC.
 *
 * Roles belong to the cluster, grants to a database: provisioning another database of the
 * same cluster with the same roles grants them there too.
 */
export async function provisionServiceRoles(adminUrl: string, roles: readonly ServiceRole[]): Promise<void> {
  const verified = roles.map((role) => ({ ...role, verifier: scramVerifier(role.password) }));
  await provisioningTransaction(adminUrl, (tx) => provision(tx, verified));
}

/**
 * Runs `work` in one transaction through the admin URL, again (up to 10 times) when it lost a
 * race over a cluster-wide role with a run on another database of the same cluster.
 */
export async function provisioningTransaction(adminUrl: string, work: (tx: TransactionSql) => Promise<void>): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await sql.begin(work);
        return;
      } catch (err) {
        if (attempt >= 10 || !isRaceWithAnotherDatabase(err)) throw err;
        await sleep(Math.random() * 25 * attempt);
      }
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The admin URL's host, port, database and options, with the role's credentials. */
export function serviceDatabaseUrl(adminUrl: string, role: string, password: string): string {
  const url = new URL(adminUrl);
  url.username = encodeURIComponent(role);
  url.password = encodeURIComponent(password);
  return url.toString();
}

/**
 * The SCRAM-SHA-256 secret Postgres stores for `password`, in its own format. Postgres takes
 * it in ALTER ROLE … PASSWORD as it is, so the password itself never reaches the server, its
 * logs or pg_stat_activity, and the literal holds only base64, `$` and `:`, nothing to escape.
 */
export function scramVerifier(password: string): string {
  assertScramPassword(password);
  const salt = randomBytes(16);
  const iterations = 4096; // Postgres's default scram_iterations
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const hmac = (text: string) => createHmac("sha256", salted).update(text).digest();
  const storedKey = createHash("sha256").update(hmac("Client Key")).digest();
  const serverKey = hmac("Server Key");
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/**
 * Clients such as libpq normalise a password with SASLprep before SCRAM, postgres.js and
 * {@link scramVerifier} do not; for printable ASCII the two agree, so only that is accepted
 * (generated secrets are). It also keeps a password on the one line of initdb's --pwfile.
 */
export function assertScramPassword(password: string): void {
  if (!/^[\x20-\x7e]+$/.test(password)) throw new Error("a Postgres password must be non-empty printable ASCII");
}

const provisionLock = "meshwork:provision-service-roles";
const confinedAttributes = "login nosuperuser nocreatedb nocreaterole noreplication nobypassrls";
const ddlGuard = "meshwork_service_ddl_guard";

/** A double-quoted SQL identifier. */
export const id = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Roles live in the cluster, and the advisory lock covers one database only: a run on
 * another database of the same cluster can create or alter the same role at the same time.
 * Postgres then refuses the later transaction (a duplicate role, or "tuple concurrently
 * updated" on its pg_authid row); run again, it finds the role as the other left it.
 */
function isRaceWithAnotherDatabase(err: unknown): boolean {
  const { code, message } = err as { code?: string; message?: string };
  return code === "23505" || code === "42710" || code === "40P01" || (code === "XX000" && /tuple concurrently updated/.test(message ?? ""));
}

async function provision(tx: TransactionSql, roles: readonly (ServiceRole & { verifier: string })[]): Promise<void> {
  await tx`select pg_advisory_xact_lock(hashtext(${provisionLock}))`;
  const [admin] = await tx<{ database: string; superuser: boolean }[]>`
    select current_database() as database, rolsuper as superuser from pg_roles where rolname = current_user`;
  const { database, superuser } = admin!;
  // One order for every run, so that two runs on different databases wait for each other's
  // pg_authid rows instead of deadlocking.
  for (const role of [...roles].sort((a, b) => (a.role < b.role ? -1 : 1))) await confineRole(tx, role, superuser);
  await tx.unsafe(`revoke all on database ${id(database)} from public`);
  await tx.unsafe("revoke create on schema public from public");
  for (const { role, schema } of roles) {
    await tx.unsafe(`grant connect, temporary, create on database ${id(database)} to ${id(role)}`);
    await ownSchema(tx, role, schema);
  }
  if (superuser) await installDdlGuard(tx);
}

async function confineRole(tx: TransactionSql, { role, verifier }: { role: string; verifier: string }, adminIsSuperuser: boolean): Promise<void> {
  const [existing] = await tx<{ confined: boolean }[]>`
    select rolcanlogin and not (rolsuper or rolcreatedb or rolcreaterole or rolreplication or rolbypassrls) as confined
    from pg_roles where rolname = ${role}`;
  if (!existing) await tx.unsafe(`create role ${id(role)} ${confinedAttributes} password '${verifier}'`);
  else {
    if (!existing.confined) await tx.unsafe(`alter role ${id(role)} ${confinedAttributes}`);
    await tx.unsafe(`alter role ${id(role)} password '${verifier}'`);
  }
  // A role that is not a superuser may create a schema for, or give an object to, only a
  // role it can SET ROLE to; CREATEROLE alone does not give that.
  if (!adminIsSuperuser) await tx.unsafe(`grant ${id(role)} to current_user`);
}

async function ownSchema(tx: TransactionSql, role: string, schema: string): Promise<void> {
  const [existing] = await tx`select 1 from pg_namespace where nspname = ${schema}`;
  if (!existing) await tx.unsafe(`create schema ${id(schema)} authorization ${id(role)}`);
  else for (const { statement } of await ownershipMoves(tx, role, schema)) await tx.unsafe(statement);
  await tx.unsafe(`revoke all on schema ${id(schema)} from public`);
}

/**
 * ALTER … OWNER statements giving `role` the schema and every object in it that someone
 * else owns. Left out, because they follow another object's owner: indexes, TOAST tables
 * and row types (their table's), sequences a column owns (serial, identity: their table's),
 * array types (their element type's), multiranges (their range's), and extension members.
 */
function ownershipMoves(tx: TransactionSql, role: string, schema: string) {
  return tx<{ statement: string }[]>`
    with target as (select oid from pg_roles where rolname = ${role}),
    namespace as (select oid, nspname, nspowner from pg_namespace where nspname = ${schema}),
    objects as (
      select 'schema' as kind, format('%I', n.nspname) as name, n.nspowner as owner, 'pg_namespace'::regclass as catalog, n.oid
      from namespace n
      union all
      select case c.relkind when 'S' then 'sequence' when 'v' then 'view' when 'm' then 'materialized view' when 'f' then 'foreign table' else 'table' end,
             format('%I.%I', n.nspname, c.relname), c.relowner, 'pg_class'::regclass, c.oid
      from pg_class c join namespace n on c.relnamespace = n.oid
      where c.relkind in ('r', 'p', 'v', 'm', 'f')
         or (c.relkind = 'S' and not exists (
               select 1 from pg_depend d
               where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')))
      union all
      select case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' else 'function' end,
             format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), p.proowner, 'pg_proc'::regclass, p.oid
      from pg_proc p join namespace n on p.pronamespace = n.oid
      union all
      select case t.typtype when 'd' then 'domain' else 'type' end, format('%I.%I', n.nspname, t.typname), t.typowner, 'pg_type'::regclass, t.oid
      from pg_type t join namespace n on t.typnamespace = n.oid
      where t.typtype <> 'm'
        and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
        and not exists (select 1 from pg_type e where e.typarray = t.oid)
    )
    select format('alter %s %s owner to %I', o.kind, o.name, ${role}::text) as statement
    from objects o
    where o.owner <> (select oid from target)
      and not exists (select 1 from pg_depend d where d.classid = o.catalog and d.objid = o.oid and d.deptype = 'e')
    order by o.kind = 'schema' desc`;
}

/**
 * The event trigger that keeps a service role from using CREATE on the database for
 * anything but drizzle's no-op `CREATE SCHEMA IF NOT EXISTS` (which creates nothing, so
 * reports no command). Superusers and CREATEROLE admins pass. Event triggers are for
 * superusers only; the function's search_path is pinned so no schema can shadow pg_roles.
 */
async function installDdlGuard(tx: TransactionSql): Promise<void> {
  await tx.unsafe(`
    create or replace function public.${ddlGuard}() returns event_trigger language plpgsql set search_path = pg_catalog as $guard$
    begin
      if exists (select 1 from pg_event_trigger_ddl_commands())
         and not exists (select 1 from pg_roles where rolname = current_user and (rolsuper or rolcreaterole)) then
        raise exception 'permission denied: a service role may not % in this database', lower(tg_tag) using errcode = '42501';
      end if;
    end
    $guard$`);
  const [installed] = await tx`select 1 from pg_event_trigger where evtname = ${ddlGuard}`;
  if (!installed) {
    await tx.unsafe(
      `create event trigger ${ddlGuard} on ddl_command_end when tag in ('CREATE SCHEMA', 'CREATE EXTENSION', 'CREATE PUBLICATION') execute function public.${ddlGuard}()`,
    );
  }
}
