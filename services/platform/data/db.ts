import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import postgres, { type Sql } from "postgres";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import type { SQL } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import type { Logger } from "../process/logger.js";

/**
 * What statements run on: a drizzle database or a transaction in it, over any service's
 * schema. The kit's and the services' functions that take either are typed with it.
 */
export type SqlExecutor = PgDatabase<PgQueryResultHKT, Record<string, unknown>>;

/**
 * The rows of a statement written in drizzle's `sql` (a CTE drizzle's builders cannot express),
 * typed as its SELECT list names them, on a database or a transaction.
 */
export async function rowsOf<T>(db: { execute(statement: SQL): PromiseLike<unknown> }, statement: SQL): Promise<T[]> {
  return [...((await db.execute(statement)) as Iterable<T>)];
}

export interface Database<TSchema extends Record<string, unknown>> {
  readonly sql: Sql;
  readonly db: PostgresJsDatabase<TSchema>;
  close(): Promise<void>;
}

export interface DatabaseOptions<TSchema extends Record<string, unknown>> {
  url: string;
  /** The Postgres schema this service owns; its migration journal lives there too. */
  schemaName: string;
  /** How its connections name themselves to Postgres (application_name): the service's name; the schema's if unset. */
  applicationName?: string;
  /** drizzle table definitions, for relational queries. */
  tables: TSchema;
  /** Folder of drizzle-kit migrations, applied at start. */
  migrationsFolder: string;
  logger: Logger;
  /** Pool size; a few connections ride Postgres group commit well on small machines. */
  maxConnections?: number;
}

/**
 * Seconds a pool connection waits before reconnecting after a failure (postgres.js's
 * `backoff`, given how many failures the pool has seen since its last good connect). The
 * driver's default grows 3× per failure up to 20 s, so after a Postgres restart under load
 * queries stalled for 15 s once Postgres was back; this doubles from 50 ms up to 1 s, jittered.
 */
export const reconnectBackoff = (failures: number): number => Math.min(0.05 * 2 ** failures, 1) * (0.5 + Math.random() / 2);

/**
 * The line patches/postgres+3.4.9.patch adds to postgres.js. Without that patch a Postgres
 * restart can crash a service (`Cannot read properties of null (reading 'write')`, upstream
 * #1154 and #1208), so no pool opens on a driver that lacks it: say after
 * `npm ci --ignore-scripts`, which skips the postinstall that applies patches/.
 */
export const driverPatchMarker = "// meshwork-patched: postgres+3.4.9.patch rev 2";

/**
 * Throws, saying how to repair the install, unless `connectionSource` (by default the
 * installed postgres.js's connection.js, the one this module loads) carries the patch.
 */
export function assertDriverPatched(connectionSource = installedDriverSource()): void {
  let source: string;
  try {
    source = readFileSync(connectionSource, "utf8");
  } catch (err) {
    throw new Error(`cannot check the database driver for its patch: ${(err as Error).message}`);
  }
  if (!source.includes(driverPatchMarker)) {
    throw new Error(
      `the installed postgres.js (${connectionSource}) lacks the fix in patches/postgres+3.4.9.patch, and would crash on a Postgres restart: ` +
        "run `npm ci` or `npm install` (without --ignore-scripts), whose postinstall applies patches/",
    );
  }
}

/** The ESM build's connection.js; require.resolve names the CommonJS entry, <package>/cjs/src/index.js. */
const installedDriverSource = () => join(dirname(createRequire(import.meta.url).resolve("postgres")), "../../src/connection.js");

let driverChecked = false;

/**
 * Opens the service's pool and brings its schema up to date. Migrations run under a
 * Postgres advisory lock named after the schema, so replicas starting together apply each
 * migration once. Fails at once on a driver without its patch ({@link assertDriverPatched}).
 */
export async function openDatabase<TSchema extends Record<string, unknown>>(options: DatabaseOptions<TSchema>): Promise<Database<TSchema>> {
  const { logger, schemaName } = options;
  if (!driverChecked) {
    assertDriverPatched(); // once per process: one small file read
    driverChecked = true;
  }
  const sql = postgres(options.url, {
    max: options.maxConnections ?? 10,
    backoff: reconnectBackoff,
    onnotice: (notice) => logger.debug({ notice: notice["message"] }, "postgres notice"),
    connection: { application_name: options.applicationName ?? schemaName },
  });
  const db = drizzle(sql, { schema: options.tables });
  try {
    await migrateUnderLock(db, options);
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }
  return { sql, db, close: () => sql.end({ timeout: 5 }) };
}

async function migrateUnderLock<TSchema extends Record<string, unknown>>(
  db: PostgresJsDatabase<TSchema>,
  { url, schemaName, applicationName, migrationsFolder, logger }: DatabaseOptions<TSchema>,
): Promise<void> {
  const lockKey = `meshwork:migrate:${schemaName}`;
  // The session lock lives on a client of its own, not on a connection reserved from the
  // pool: postgres.js 3.4.9 puts a reserved connection whose backend died back into the
  // pool on release, dead, where it fails every query sent to it from then on.
  const lock = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: `${applicationName ?? schemaName}-migrate` } });
  try {
    await lock`select pg_advisory_lock(hashtext(${lockKey}))`;
    const started = Date.now();
    await migrate(db, { migrationsFolder, migrationsSchema: schemaName, migrationsTable: "__drizzle_migrations" });
    logger.info({ schema: schemaName, ms: Date.now() - started }, "migrations applied");
  } finally {
    await lock.end({ timeout: 5 }); // ending the session releases its advisory lock
  }
}
