import postgres, { type Sql } from "postgres";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import type { Logger } from "./logger.js";

export interface Database<TSchema extends Record<string, unknown>> {
  readonly sql: Sql;
  readonly db: PostgresJsDatabase<TSchema>;
  close(): Promise<void>;
}

export interface DatabaseOptions<TSchema extends Record<string, unknown>> {
  url: string;
  /** The Postgres schema this service owns; its migration journal lives there too. */
  schemaName: string;
  /** drizzle table definitions, for relational queries. */
  tables: TSchema;
  /** Folder of drizzle-kit migrations, applied at start. */
  migrationsFolder: string;
  logger: Logger;
  /** Pool size; a few connections ride Postgres group commit well on small machines. */
  maxConnections?: number;
}

/**
 * Opens the service's pool and brings its schema up to date. Migrations run under a
 * Postgres advisory lock named after the schema, so replicas starting together apply each
 * migration once.
 */
export async function openDatabase<TSchema extends Record<string, unknown>>(options: DatabaseOptions<TSchema>): Promise<Database<TSchema>> {
  const { logger, schemaName } = options;
  const sql = postgres(options.url, {
    max: options.maxConnections ?? 10,
    onnotice: (notice) => logger.debug({ notice: notice["message"] }, "postgres notice"),
    connection: { application_name: schemaName },
  });
  const db = drizzle(sql, { schema: options.tables });
  try {
    await migrateUnderLock(sql, db, options);
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }
  return { sql, db, close: () => sql.end({ timeout: 5 }) };
}

async function migrateUnderLock<TSchema extends Record<string, unknown>>(
  sql: Sql,
  db: PostgresJsDatabase<TSchema>,
  { schemaName, migrationsFolder, logger }: DatabaseOptions<TSchema>,
): Promise<void> {
  const lockKey = `meshwork:migrate:${schemaName}`;
  const lock = await sql.reserve();
  try {
    await lock`select pg_advisory_lock(hashtext(${lockKey}))`;
    const started = Date.now();
    await migrate(db, { migrationsFolder, migrationsSchema: schemaName, migrationsTable: "__drizzle_migrations" });
    logger.info({ schema: schemaName, ms: Date.now() - started }, "migrations applied");
  } finally {
    await lock`select pg_advisory_unlock(hashtext(${lockKey}))`.catch(() => undefined);
    lock.release();
  }
}
