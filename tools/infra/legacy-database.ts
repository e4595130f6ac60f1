import postgres from "postgres";
import { id, provisionServiceRoles, provisioningTransaction, scramVerifier, serviceDatabaseUrl } from "./database-roles.js";

/**
 * Server settings of a legacy app's own cluster: logical replication, which change data
 * capture needs, and room for a few slots and their senders.
 */
export const legacyClusterSettings: Readonly<Record<string, string>> = { wal_level: "logical", max_replication_slots: "10", max_wal_senders: "10" };

/** A legacy deployable as the manifest has it: its name (its role's), its schema, and who captures its changes. */
export interface LegacyDeployable {
  name: string;
  legacy: { schema: string; capturedBy: string };
}

/** The login role `capturedBy`'s change data capture reads the legacy schema with, e.g. catalog_cdc. */
export const captureRole = (legacy: LegacyDeployable) => `${legacy.legacy.capturedBy}_cdc`;
/** The publication the capture subscribes to, e.g. oldshop_catalog. */
export const capturePublication = (legacy: LegacyDeployable) => `${legacy.name}_${legacy.legacy.capturedBy}`;

export interface LegacyDatabaseUrls {
  /** The legacy app's own role: owns its schema, nothing else, no replication. */
  appUrl: string;
  /** The capture's role: replication, and SELECT on the legacy schema's tables, nothing else. */
  captureUrl: string;
}

/**
 * Provisions the legacy app's database on its own cluster, through that cluster's admin URL
 * (a superuser's: publications for a whole schema need one), so the legacy code stays as it
 * is and the capture gets nothing over the mesh's data:
 *
 * - the app's role, named after it, owning its schema (as the mesh's services own theirs);
 * - the capture's role, LOGIN REPLICATION, with CONNECT on the database, USAGE on the schema,
 *   SELECT on its tables, now and (default privileges) on those the app creates later; no
 *   CREATE anywhere, no write;
 * - a publication FOR TABLES IN SCHEMA, so it exists before the app has created its table.
 *
 * Safe at every start and on many databases of one cluster at once (the test suites'); the
 * passwords are set at every run. The capture's replication slot is its own to create.
 */
export async function provisionLegacyDatabase(adminUrl: string, legacy: LegacyDeployable, passwords: { app: string; capture: string }): Promise<LegacyDatabaseUrls> {
  const { schema } = legacy.legacy;
  const [app, capture, publication] = [legacy.name, captureRole(legacy), capturePublication(legacy)];
  await assertLogicalReplication(adminUrl, legacy);
  await provisionServiceRoles(adminUrl, [{ role: app, schema, password: passwords.app }]);
  const verifier = scramVerifier(passwords.capture);
  await provisioningTransaction(adminUrl, async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${`meshwork:provision-legacy:${legacy.name}`}))`;
    const attributes = "login replication nosuperuser nocreatedb nocreaterole nobypassrls";
    const [existing] = await tx`select 1 from pg_roles where rolname = ${capture}`;
    await tx.unsafe(`${existing ? "alter" : "create"} role ${id(capture)} ${attributes} password '${verifier}'`);
    const [{ database }] = [...(await tx<{ database: string }[]>`select current_database() as database`)] as [{ database: string }];
    await tx.unsafe(`revoke all on database ${id(database)} from ${id(capture)}`);
    await tx.unsafe(`grant connect on database ${id(database)} to ${id(capture)}`);
    await tx.unsafe(`grant usage on schema ${id(schema)} to ${id(capture)}`);
    await tx.unsafe(`grant select on all tables in schema ${id(schema)} to ${id(capture)}`);
    await tx.unsafe(`alter default privileges for role ${id(app)} in schema ${id(schema)} grant select on tables to ${id(capture)}`);
    const [published] = await tx`select 1 from pg_publication where pubname = ${publication}`;
    if (!published) await tx.unsafe(`create publication ${id(publication)} for tables in schema ${id(schema)}`);
  });
  return { appUrl: serviceDatabaseUrl(adminUrl, app, passwords.app), captureUrl: serviceDatabaseUrl(adminUrl, capture, passwords.capture) };
}

/** Said before anything is created, not later as a replication error in the capturer's log: an OLDSHOP_DATABASE_URL cluster may lack it. */
async function assertLogicalReplication(adminUrl: string, legacy: LegacyDeployable): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ wal_level: string }[]>`show wal_level`;
    if (row?.wal_level !== "logical") throw new Error(`${legacy.name}'s Postgres cluster runs with wal_level=${row?.wal_level}; ${legacy.legacy.capturedBy}'s change data capture needs wal_level=logical`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
